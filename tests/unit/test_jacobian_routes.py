"""The `jacobian` and `jacobian_spectrum` routes, in process through TensorBoard's multiplexer
data provider and its own WSGI app.

Log dirs are written with `add_jacobian_singular_values` from numpy-made spectra
(tests/jacobian_data.py), and damaged events by hand. Every number served is compared with
a reference computed here with numpy from what was logged: the mean and population spread
over samples of σ_max, of the smallest stored value, of the mean squared singular value and
of log|det J|, float32 as stored.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.jacobian_routes import decode_step
from deepscope.tb_plugin.tensor_kind import MalformedEvent
from tests import jacobian_data as data
from tests.kind_cases.jacobian import MAPS, SAMPLES, spectra
from tests.route_helpers import multiplexer_provider, number

EPS32 = float(np.finfo(np.float32).eps)


def _damaged_run(name: str) -> str:
    return "damaged-" + name.replace(" ", "-")


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("jacobian")
    synthetic = data.log_synthetic(logdir)
    for name, (build, _) in data.DAMAGED.items():
        with data.writer(logdir / _damaged_run(name)) as w:
            good = spectra("damaged", 0)
            w.add_jacobian_singular_values(data.TAG, good, global_step=0, walltime=10.0)
            w.file_writer.add_summary(build(data.TAG), 1, 11.0)
            w.add_jacobian_singular_values(data.TAG, good, global_step=2, walltime=12.0)
    with data.writer(logdir / "map-error") as w:
        found = spectra("map-error", 0)
        w.add_jacobian_singular_values(
            data.TAG, {"": found[""], "fc1": RuntimeError("out of memory")}, global_step=5
        )
        w.add_update_ratios("update", {"fc.weight": 1e-3}, global_step=0)
    return logdir, synthetic


@pytest.fixture(scope="module")
def client(logged):
    provider = multiplexer_provider(logged[0])[1]
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


def get(client, route: str, **query):
    response = client.get(f"/data/plugin/deepscope/{route}", query_string=query)
    return response.status_code, response.get_data(as_text=True)


def get_json(client, route: str, **query) -> dict:
    status, body = get(client, route, **query)
    assert status == 200, body
    return json.loads(body)


def _matrix(rows) -> np.ndarray:
    return np.array([[number(v) for v in row] for row in rows], dtype=np.float64)


def _reference(found: dict, name: str) -> dict[str, tuple[float, float]]:
    s = found[name]
    sv = np.asarray(s.singular_values, np.float32).astype(np.float64)
    per_sample = {
        "sigma_max": sv[:, 0],
        "sigma_min": sv[:, -1],
        "mean_squared": np.asarray(s.mean_squared, np.float32).astype(np.float64),
        "log_abs_det": np.asarray(s.log_abs_det, np.float32).astype(np.float64),
    }
    return {k: (float(np.mean(v)), float(np.std(v))) for k, v in per_sample.items()}


def test_series_summaries_are_the_means_and_spreads_over_samples(client, logged):
    _, synthetic = logged
    body = get_json(client, "jacobian", run="synthetic", tag=data.TAG)
    assert body["steps"] == list(data.SYNTHETIC_STEPS)
    assert body["maps"] == list(MAPS) and body["output"] == "logits"
    assert body["dims"] == {"": [8, 3], "fc1": [16, 16]}
    assert body["warnings"] == [] and body["errors"] == []
    np.testing.assert_allclose(body["wall_times"], [1000.0 + s for s in data.SYNTHETIC_STEPS])
    assert body["full"] == [[True, False]] * 3
    for summary in ("sigma_max", "sigma_min", "mean_squared", "log_abs_det"):
        for which, index in (("mean", 0), ("std", 1)):
            got = _matrix(body[summary][which])
            want = np.array(
                [[_reference(synthetic[s], m)[summary][index] for m in MAPS] for s in synthetic]
            )
            scale = np.nanmax(np.abs(want)) if np.any(np.isfinite(want)) else 1.0
            np.testing.assert_allclose(got, want, rtol=0, atol=16 * EPS32 * scale, equal_nan=True)
    # The network's map (8 → 3) is not square: its log|det| is NaN, spelled so.
    assert body["log_abs_det"]["mean"][0][0] == "NaN"


def test_name_picks_maps(client, logged):
    body = get_json(client, "jacobian", run="synthetic", tag=data.TAG, name="fc1")
    assert body["maps"] == ["fc1"] and body["dims"] == {"fc1": [16, 16]}
    assert len(body["sigma_max"]["mean"][0]) == 1
    status, text = get(client, "jacobian", run="synthetic", tag=data.TAG, name="fc9")
    assert status == 404 and "has no map 'fc9'" in text and "fc1" in text


def test_one_step_serves_each_map_and_sample(client, logged):
    _, synthetic = logged
    newest = get_json(client, "jacobian_spectrum", run="synthetic", tag=data.TAG)
    assert newest["step"] == 20 and newest["steps"] == list(data.SYNTHETIC_STEPS)
    body = get_json(client, "jacobian_spectrum", run="synthetic", tag=data.TAG, step=10)
    assert body["step"] == 10 and body["error"] is None and body["output"] == "logits"
    assert [m["name"] for m in body["maps"]] == list(MAPS)
    for entry in body["maps"]:
        want = synthetic[10][entry["name"]]
        assert (entry["input_dim"], entry["output_dim"]) == (want.input_dim, want.output_dim)
        assert entry["full"] is want.full
        got = _matrix(entry["singular_values"])
        k = want.singular_values.shape[1]
        np.testing.assert_allclose(got[:, :k], want.singular_values, rtol=2 * EPS32, atol=0)
        assert np.all(np.isnan(got[:, k:]))  # the padding of the narrower map
        assert len(entry["mean_squared"]) == SAMPLES
        np.testing.assert_allclose(entry["mean_squared"], want.mean_squared, rtol=2 * EPS32)


def test_one_step_errors(client):
    status, text = get(client, "jacobian_spectrum", run="synthetic", tag=data.TAG, step=11)
    assert status == 404 and "has no step 11" in text and "0, 10, 20" in text
    status, text = get(client, "jacobian_spectrum", run="synthetic", tag=data.TAG, step="x")
    assert status == 400 and "step must be an integer" in text
    status, text = get(client, "jacobian_spectrum", run="map-error", tag="update")
    assert status == 400
    status, text = get(client, "jacobian", run="nope", tag=data.TAG)
    assert status == 404


@pytest.mark.parametrize("damage", list(data.DAMAGED))
def test_a_damaged_event_drops_its_own_step_with_a_warning_naming_it(client, damage):
    _, reason = data.DAMAGED[damage]
    run = _damaged_run(damage)
    body = get_json(client, "jacobian", run=run, tag=data.TAG)
    assert body["steps"] == [0, 2] and body["maps"] == list(MAPS)
    (warning,) = body["warnings"]
    assert "1 event(s) (first at step 1) are malformed" in warning
    assert "step 1: " in warning and reason in warning, warning
    step = get_json(client, "jacobian_spectrum", run=run, tag=data.TAG, step=1)
    assert step["step"] == 1 and reason in step["error"] and step["maps"] == []
    assert step["steps"] == [0, 1, 2]
    good = get_json(client, "jacobian_spectrum", run=run, tag=data.TAG, step=2)
    assert good["error"] is None and len(good["maps"]) == 2


def test_a_map_that_failed_is_its_own_error(client):
    body = get_json(client, "jacobian", run="map-error", tag=data.TAG)
    assert body["maps"] == ["", "fc1"]
    assert body["errors"] == [[5, "fc1", "RuntimeError: out of memory"]]
    assert body["sigma_max"]["mean"][0][1] is None  # not measured
    assert math.isfinite(number(body["sigma_max"]["mean"][0][0]))
    step = get_json(client, "jacobian_spectrum", run="map-error", tag=data.TAG)
    failed = step["maps"][1]
    assert failed == {"name": "fc1", "error": "RuntimeError: out of memory"}


def test_decode_step_checks_without_http():
    from deepscope.writer.jacobian import jacobian_pb

    payload = jacobian_pb("t", spectra("x", 3)).value[0].tensor.string_val[0]
    decoded = decode_step(np.array(payload, dtype=object))
    assert decoded.maps == MAPS and decoded.singular_values.shape == (2, SAMPLES, 4)
    with pytest.raises(MalformedEvent, match="not a serialized JacobianStep"):
        decode_step(np.zeros((2,), np.float32))
