"""Spectra through a real `tensorboard` process, with both loaders.

The log dir is written by `deepscope.watch(..., spectra_every=...)` during real
training (tests/spectrum_data.py); the routes' singular values are compared
with `numpy.linalg.svd` of the weights copied in the training loop, the convs'
operator spectra (logged by default as their norms; one tag with whole
operator spectra) with numpy's SVD of the explicit circular operator matrix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.route_helpers import LOADERS, decode, route
from tests.spectrum_data import (
    BROKEN_STEP,
    BROKEN_TAG,
    CONV_INPUT,
    LAYERS,
    MEASURED_STEPS,
    OPERATOR_STEPS,
    OPERATOR_TAG,
    OPERATOR_TOP_K,
    spectrum_tag,
)
from tests.tensorboard_process import get, wait_until

ROUTE = "/data/plugin/deepscope"
TAGS = sorted(spectrum_tag(name) for name in LAYERS)


@pytest.fixture(scope="module", params=LOADERS)
def served(request, spectrum_logdir, tensorboard_server):
    base = tensorboard_server(spectrum_logdir, load_fast=request.param)

    def all_steps_read():
        for run in ("seed0", "seed1"):
            status, body = get(f"{base}{ROUTE}/spectrum_metrics?run={run}")
            if status != 200:
                return False
            layers = json.loads(body)["layers"]
            if any(layers.get(tag, {}).get("steps") != MEASURED_STEPS for tag in TAGS):
                return False
            if run == "seed1" and layers.get(OPERATOR_TAG, {}).get("steps") != list(OPERATOR_STEPS):
                return False  # written last
        return True

    wait_until(all_steps_read, timeout=120, what="every spectrum step to be read")
    return base, json.loads((spectrum_logdir / "reference.json").read_text())


def test_tags_list_the_spectrum_layers_with_their_shapes(served):
    base, _ = served
    tags = route(base, "tags")
    for run in ("seed0", "seed1"):
        for name, (groups, shape) in LAYERS.items():
            entry = tags[run][spectrum_tag(name)]
            assert entry["kind"] == "spectrum"
            assert [int(n) for n in entry["weight_shape"]] == list(shape)
            assert int(entry["matrix_shape"][0]) == groups
    assert tags["seed1"][BROKEN_TAG]["kind"] == "spectrum"


@pytest.mark.parametrize("run", ["seed0", "seed1"])
def test_every_layer_and_step_matches_numpy_svd(served, run):
    base, reference = served
    for tag in TAGS:
        assert route(base, "spectrum_steps", run=run, tag=tag)["steps"] == MEASURED_STEPS
        for step in (MEASURED_STEPS[1], MEASURED_STEPS[-1]):
            body = route(base, "spectrum", run=run, tag=tag, step=step)
            want = np.array(reference[run][tag][str(step)])
            np.testing.assert_allclose(decode(body["singular_values"]), want, rtol=2e-4, atol=1e-6)


def test_metrics_of_all_layers_in_one_request(served):
    base, reference = served
    body = route(base, "spectrum_metrics", run="seed0")
    assert sorted(body["layers"]) == TAGS
    for tag in TAGS:
        layer = body["layers"][tag]
        for i, step in enumerate(MEASURED_STEPS):
            s = np.sort(np.concatenate(reference["seed0"][tag][str(step)]))[::-1]
            assert layer["metrics"]["spectral_norm"][i] == pytest.approx(s[0], rel=1e-4)
            assert layer["metrics"]["condition_number"][i] == pytest.approx(s[0] / s[-1], rel=1e-3)


def test_evolution_is_the_merged_spectrum_of_every_step(served):
    base, reference = served
    body = route(base, "spectrum_evolution", run="seed1", tag="spectra/conv2", max_values=4)
    assert body["steps"] == MEASURED_STEPS
    assert body["index"] == [0, 5, 10, 15]
    values = decode(body["values"])
    for i, step in enumerate(MEASURED_STEPS):
        merged = np.sort(np.concatenate(reference["seed1"]["spectra/conv2"][str(step)]))[::-1]
        np.testing.assert_allclose(values[i], merged[body["index"]], rtol=2e-4)


def test_a_non_finite_weight_is_an_error_step_not_a_failure(served):
    base, _ = served
    body = route(base, "spectrum", run="seed1", tag=BROKEN_TAG, step=BROKEN_STEP)
    assert "non-finite" in body["error"]
    layer = route(base, "spectrum_metrics", run="seed1", tag=BROKEN_TAG)["layers"][BROKEN_TAG]
    assert [step for step, _ in layer["errors"]] == [BROKEN_STEP]


@pytest.fixture(scope="module", params=LOADERS)
def served_frozen(request, tmp_path_factory, tensorboard_server):
    """A frozen layer (logged unchanged after step 0) and a condition bound, by a real watcher."""
    import torch

    import deepscope
    from deepscope.writer.watch_spectra import SpectraWatcher

    logdir = tmp_path_factory.mktemp("spectra_frozen")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3))
    model[0].requires_grad_(False)
    with torch.no_grad():
        model[1].weight[2] = model[1].weight[0]  # rank 2 of 3: sigma_min at rounding level
    writer = deepscope.SummaryWriter(str(logdir / "run"))
    watcher = SpectraWatcher(model, writer, every=1, include_frozen=True)
    for step in range(3):
        watcher.measure(step)  # nothing trains: both layers unchanged after step 0
    writer.close()
    frozen = np.linalg.svd(model[0].weight.detach().numpy().astype(np.float64), compute_uv=False)
    base = tensorboard_server(logdir, load_fast=request.param)

    def all_steps_read():
        status, body = get(f"{base}{ROUTE}/spectrum_metrics?run=run")
        layers = json.loads(body).get("layers", {}) if status == 200 else {}
        return all(layers.get(t, {}).get("steps") == [0, 1, 2] for t in ("spectra/0", "spectra/1"))

    wait_until(all_steps_read, timeout=120, what="every spectrum step to be read")
    return base, frozen


def test_unchanged_steps_and_condition_bounds_through_tensorboard(served_frozen):
    base, frozen = served_frozen
    for step in (1, 2):
        body = route(base, "spectrum", run="run", tag="spectra/0", step=step)
        assert body["unchanged_since_step"] == 0 and body["error"] is None
        np.testing.assert_allclose(decode(body["singular_values"])[0], frozen, rtol=1e-5)
    layers = route(base, "spectrum_metrics", run="run")["layers"]
    assert layers["spectra/0"]["unchanged"] == [[1, 0], [2, 0]]
    singular = layers["spectra/1"]["metrics"]
    assert singular["condition_number_is_bound"] == [True, True, True]
    eps32 = float(np.finfo(np.float32).eps)
    for value in singular["condition_number"]:
        assert value == pytest.approx(1 / (5 * eps32), rel=1e-6)  # 1 / (max(rows, cols) eps)
    assert singular["numerical_rank"] == [2, 2, 2]


EPS32 = float(np.finfo(np.float32).eps)


@pytest.mark.parametrize("run", ["seed0", "seed1"])
def test_the_convs_operator_norms_match_the_explicit_operator(served, run):
    base, reference = served
    metrics = route(base, "spectrum_metrics", run=run)["layers"]
    for name in ("conv1", "conv2"):
        tag = spectrum_tag(name)
        layer = metrics[tag]
        operator = layer["operator"]
        assert operator["facts"]["input_size"] == list(CONV_INPUT)
        assert operator["facts"]["padding_rule"] == "circular"
        for i, step in enumerate(layer["steps"]):
            want = np.array(reference[run]["operators"][tag][str(step)])
            served_norm = operator["metrics"]["operator_norm"][i]
            assert abs(served_norm - want[0]) <= 64 * EPS32 * want[0]
            assert operator["norm_only"][i] is (run == "seed0")  # seed1: whole spectra
        body = route(base, "spectrum", run=run, tag=tag, step=MEASURED_STEPS[-1])
        want = np.array(reference[run]["operators"][tag][str(MEASURED_STEPS[-1])])
        assert body["operator"]["count"] == want.size
        assert abs(body["operator"]["operator_norm"] - want[0]) <= 64 * EPS32 * want[0]
    for name in ("fc1", "fc2"):
        assert metrics[spectrum_tag(name)]["operator"] is None


def test_a_whole_operator_spectrum_is_served_as_numpy_has_it(served):
    base, reference = served
    for step in OPERATOR_STEPS:
        body = route(base, "spectrum", run="seed1", tag=OPERATOR_TAG, step=step)
        want = np.array(reference["seed1"]["operators"][OPERATOR_TAG][str(step)])
        op = body["operator"]
        assert op["norm_only"] is False and op["count"] == want.size
        atol = 64 * EPS32 * float(want[0])
        np.testing.assert_allclose(op["top_values"], want[:OPERATOR_TOP_K], rtol=0, atol=atol)
        np.testing.assert_allclose(
            op["quantiles"], np.quantile(want, op["quantile_levels"]), rtol=0, atol=atol
        )
