"""The plugin's core through a real `tensorboard`, both loaders: damaged update-ratio
events are warnings (never a 5xx), unreadable series are listed with why, `/kinds` is the
registry, echoed values are capped.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from deepscope import kinds
from tests.conftest import get, wait_until
from tests.damaged_update_ratios import BAD_STEP, CASES, write_damaged_update_ratios
from tests.route_helpers import LOADERS
from tests.unreadable_series import UNREADABLE, write_unreadable_series

ROUTE = "/data/plugin/deepscope"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("plugin-core-served")
    write_damaged_update_ratios(logdir / "damaged")
    write_unreadable_series(logdir / "unreadable")
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def base(request, logdir, tensorboard_server):
    base = tensorboard_server(logdir, load_fast=request.param)

    def everything_listed():
        status, body = get(f"{base}{ROUTE}/tags")
        if status != 200:
            return False
        tags = json.loads(body)
        return set(CASES) <= set(tags.get("damaged", {})) and len(
            tags.get("unreadable", {})
        ) == len(UNREADABLE)

    wait_until(everything_listed, timeout=120, what="every series to be listed")
    return base


def _get(base: str, route: str, **query) -> tuple[int, str]:
    status, body = get(f"{base}{ROUTE}/{route}?{urlencode(query, doseq=True)}")
    return status, body.decode("utf-8")


@pytest.mark.parametrize("tag", list(CASES))
def test_a_damaged_event_is_a_warning_naming_its_step(base, tag):
    for fmt in ("json", "base64"):
        status, text = _get(base, "update_ratios", run="damaged", tag=tag, format=fmt)
        assert status == 200, text
        body = json.loads(text)
        assert body["steps"] == [0, 80]
        (warning,) = body["warnings"]
        assert f"step {BAD_STEP}: {CASES[tag][1]}" in warning


@pytest.mark.parametrize("tag", list(UNREADABLE))
def test_unreadable_series_are_listed_with_why(base, tag):
    _, _, kind, says = UNREADABLE[tag]
    status, text = _get(base, "tags")
    entry = json.loads(text)["unreadable"][tag]
    assert entry["kind"] == kind
    assert says in entry["error"]


def test_kinds_is_the_registry(base):
    status, text = _get(base, "kinds")
    assert status == 200
    assert [entry["name"] for entry in json.loads(text)] == [kind.name for kind in kinds.KINDS]


def test_a_long_tag_is_echoed_capped(base):
    status, text = _get(base, "update_ratios", run="damaged", tag="t" * 20_000)
    assert status == 404
    assert len(text) < 2000
    assert "more characters)" in text
