"""Damaged update-ratio events drop only their own rows, with a warning naming the step.

Each case is one tag: a good event at step 0, the damaged one at step 40, a good
one at step 80, written by hand (tests/event_files.py). Read through the route
without HTTP (`UpdateRatioRoutes.update_ratios`) and through TensorBoard's own
WSGI app (werkzeug's test client).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.context import RequestContext
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from deepscope.tb_plugin import series
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.route_context import RouteContext
from deepscope.tb_plugin.update_ratio_routes import UpdateRatioRoutes
from tests.damaged_update_ratios import BAD_STEP, CASES, GOOD, NAMES, write_damaged_update_ratios
from tests.route_helpers import multiplexer_provider

EPS = np.finfo(np.float32).eps


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("damaged-update-ratios")
    write_damaged_update_ratios(logdir / "damaged")
    return logdir


@pytest.fixture(scope="module")
def provider(logdir):
    return multiplexer_provider(logdir)[1]


@pytest.fixture(scope="module")
def routes(provider) -> UpdateRatioRoutes:
    return UpdateRatioRoutes(RouteContext(provider, series.SeriesCatalog(provider), 0))


@pytest.fixture(scope="module")
def client(provider) -> werkzeug_test.Client:
    plugin = DeepscopePlugin(
        base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    )
    return werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider))


def _assert_only_the_good_rows(steps, values, names):
    assert list(steps) == [0, 80]
    assert list(names) == NAMES
    np.testing.assert_allclose(
        np.asarray(values, dtype=np.float32), np.float32([GOOD[0], GOOD[80]]), rtol=EPS, atol=0
    )


@pytest.mark.parametrize("tag", list(CASES))
def test_a_damaged_event_drops_its_own_rows_with_a_warning_naming_the_step(routes, tag):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", tag)
    _assert_only_the_good_rows(ratios.steps, ratios.values, ratios.names)
    assert not ratios.no_update.any() and not ratios.zero_weight.any()
    (warning,) = ratios.warnings
    assert "1 event(s) (first at step 40) are malformed and left out" in warning
    assert f"step {BAD_STEP}: {CASES[tag][1]}" in warning
    assert "restarted run" not in warning


@pytest.mark.parametrize("fmt", ["json", "base64"])
@pytest.mark.parametrize("tag", list(CASES))
def test_through_http_a_damaged_event_is_a_warning_not_a_5xx(client, tag, fmt):
    response = client.get(
        "/data/plugin/deepscope/update_ratios",
        query_string={"run": "damaged", "tag": tag, "format": fmt},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    body = json.loads(response.get_data(as_text=True))
    if fmt == "base64":
        import base64

        values = np.frombuffer(base64.b64decode(body["values"]["base64"]), "<f4")
        values = values.reshape(body["values"]["shape"])
        assert body["no_update"] == []
    else:
        values = body["values"]
    _assert_only_the_good_rows(body["steps"], values, body["names"])
    assert body["wall_times"] == [100.0, 180.0]
    (warning,) = body["warnings"]
    assert f"step {BAD_STEP}: {CASES[tag][1]}" in warning


@pytest.mark.parametrize("tag", ["restarted", "restarted_longer"])
def test_other_names_keep_the_restarted_run_warning(routes, tag):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", tag)
    _assert_only_the_good_rows(ratios.steps, ratios.values, ratios.names)
    (warning,) = ratios.warnings
    assert "1 step(s) (first: 40)" in warning and "restarted run" in warning
    assert "malformed" not in warning


def test_no_names_anywhere_is_that_events_error(routes):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", "nameless")
    assert list(ratios.steps) == [0, 80] and ratios.names == ["x"]
    np.testing.assert_allclose(ratios.values, np.float32([[0.5], [0.5]]), rtol=EPS)
    (warning,) = ratios.warnings
    assert "step 40: no parameter names" in warning


def test_many_damaged_events_spell_out_five_and_count_the_rest(routes):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", "many")
    assert list(ratios.steps) == [0]
    (warning,) = ratios.warnings
    assert warning.startswith("7 event(s) (first at step 10) are malformed")
    for step in range(10, 15):
        assert f"step {step}: " in warning
    assert "step 15: " not in warning and warning.endswith("; and 2 more")


def test_a_damaged_event_at_the_step_of_a_good_one_drops_only_itself(routes):
    ratios = routes.update_ratios(RequestContext(), "", "damaged", "twice_at_one_step")
    assert list(ratios.steps) == [0, BAD_STEP]
    np.testing.assert_allclose(ratios.values, np.float32([GOOD[0], GOOD[80]]), rtol=EPS, atol=0)
    assert list(ratios.wall_times) == [100.0, 140.0]
    (warning,) = ratios.warnings
    assert f"step {BAD_STEP}: ratio -0.2 of parameter 'b' is negative" in warning
