"""Damaged blob steps and unreadable names through a real `tensorboard`, on both loaders.

The log dir is tests/unit/test_blob_steps.py's: every blob kind with good,
damaged (bytes that are no `*Step`) and blob-less steps, the same under a tag
holding '"' (which tensorboard-data-server 0.7.2 cannot parse back from its own
blob keys), a correlation step with a flipped exponent bit (ρ = 32768: the
data server does not check record checksums), and a seeded fuzz of each kind's
payload (run "fuzz"). No route may answer 5xx; a
damaged step is that step's error; the unreadable name is a 400 saying why
and what to do under `--load_fast=true`, and is served under `--load_fast=false`.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests.conftest import get, wait_until
from tests.route_helpers import LOADERS
from tests.unit.test_blob_steps import (
    ALL_STEPS,
    BLOB_KINDS,
    DAMAGED_STEP,
    EMPTY_STEP,
    FAST_LOADER_TAG,
    GOOD_STEPS,
    fuzzed_payloads,
    write_blob_log,
)


@pytest.fixture(scope="module")
def blob_log(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("blob-damage")
    write_blob_log(logdir)
    return logdir


@pytest.fixture(scope="module", params=LOADERS)
def served(request, blob_log, tensorboard_server):
    base = tensorboard_server(blob_log, request.param) + "/data/plugin/deepscope/"

    def loaded():
        status, body = get(base + "tags")
        tags = json.loads(body) if status == 200 else {}
        complete = len(tags.get("alpha", {})) == 2 * len(BLOB_KINDS) + 1
        return complete and "flip" in tags and len(tags.get("fuzz", {})) == len(BLOB_KINDS)

    wait_until(loaded, timeout=60, what="every series listed")
    return base, request.param


def _get(base: str, route: str, **query) -> tuple[int, bytes]:
    return get(f"{base}{route}?{urlencode(query)}")


def _routes(kind) -> list[str]:
    from deepscope.tb_plugin.route_context import RouteContext

    return [f"{kind.name}_steps", *kind.load_routes()(RouteContext(None, None, None)).step_routes()]


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.name) for k in BLOB_KINDS])
def test_damaged_steps_are_their_steps_error_and_no_route_answers_5xx(served, kind):
    base, _ = served
    for route in _routes(kind):
        for step in ALL_STEPS:
            status, body = _get(base, route, run="alpha", tag=kind.name, step=step)
            assert status < 500, (route, step, body)
            if status == 400 and b"cross-network series only" in body:
                continue  # correlation_matching of a within-layer series
            assert status == 200, (route, step, body)
            if route.endswith("_steps"):
                assert json.loads(body)["steps"] == ALL_STEPS
                continue
            error = json.loads(body)["error"]
            if step in GOOD_STEPS:
                assert error is None, (route, step, error)
            else:
                assert ("damaged step" if step == DAMAGED_STEP else "holds no blob") in error
    assert EMPTY_STEP in ALL_STEPS


def test_a_flipped_byte_is_that_steps_error(served):
    base, _ = served
    status, body = _get(base, "correlation_matrix", run="flip", tag="c", step=1)
    assert status == 200 and "|ρ| = 32768, beyond 1" in json.loads(body)["error"]


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.name) for k in BLOB_KINDS])
def test_a_name_the_fast_data_server_cannot_read(served, kind):
    base, load_fast = served
    tag = f"{kind.name}/{FAST_LOADER_TAG}"
    for route in _routes(kind)[1:]:
        status, body = _get(base, route, run="alpha", tag=tag, step=5)
        if status == 400 and b"cross-network series only" in body:
            continue
        if load_fast:  # every blob read fails: say why and what to do
            text = body.decode()
            assert status == 400 and "--load_fast=false" in text and "Rename" in text, text
        else:  # the Python loader reads it
            assert status == 200 and json.loads(body)["error"] is None, body


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.name) for k in BLOB_KINDS])
def test_fuzzed_payloads_never_answer_5xx(served, kind):
    base, _ = served
    count = len(fuzzed_payloads(kind))
    status, body = _get(base, f"{kind.name}_steps", run="fuzz", tag=kind.name)
    assert status == 200 and len(json.loads(body)["steps"]) == count, body
    for route in _routes(kind)[1:]:
        for step in range(count):
            status, body = _get(base, route, run="fuzz", tag=kind.name, step=step)
            assert status < 500, (route, step, body)
    if kind.name == "spectrum":
        for route in ("spectrum_metrics", "spectrum_evolution"):
            status, body = _get(base, route, run="fuzz", tag=kind.name)
            assert status == 200, (route, body)
