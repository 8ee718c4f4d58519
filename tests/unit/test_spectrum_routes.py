"""The spectrum routes, served in-process from a data provider built as TensorBoard builds it.

The log dir (tests/spectrum_data.py) is written by real training under
`deepscope.watch(..., spectra_every=...)`; singular values are compared with
`numpy.linalg.svd` of the weights copied in the training loop, metrics with
closed forms of those singular values, and metrics the routes only pass on
(MP edge, α) with the `SpectrumStep` read straight from the event files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing import data_ingester, plugin_event_multiplexer
from tensorboard.backend.event_processing import data_provider as tb_data_provider

from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import spectrum_routes
from tests.route_helpers import CountingProvider, decode, number
from tests.spectrum_data import (
    BROKEN_STEP,
    BROKEN_TAG,
    LAYERS,
    MEASURED_STEPS,
    RUNS,
    spectrum_tag,
)
from tests.unit import test_plugin_routes as plugin_routes
from tests.unit.test_plugin_routes import get, get_json

TAGS = [spectrum_tag(name) for name in LAYERS]


def _provider(logdir) -> CountingProvider:
    """The production sampling: TensorBoard's defaults with the plugin loader's own."""
    guidance = plugin_routes._production_tensor_size_guidance()
    return CountingProvider(plugin_routes._provider(logdir, guidance))


def _client(provider, hints=None):
    return plugin_routes._client(provider, hints or {})


@pytest.fixture(scope="module")
def served(spectrum_logdir):
    provider = _provider(spectrum_logdir)
    reference = json.loads((spectrum_logdir / "reference.json").read_text())
    return _client(provider), provider, reference


def raw_steps(logdir, run: str, tag: str, read_values) -> dict[int, pb.SpectrumStep]:
    """The SpectrumStep of each step as it lies in the event file (no plugin involved)."""
    return {
        v.step: pb.SpectrumStep.FromString(v.value.tensor.string_val[0])
        for v in read_values(logdir / run, tag)
    }


# --- steps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", list(LAYERS))
def test_steps_lists_every_measured_step_and_the_layer_shape(served, module):
    client, _, _ = served
    groups, shape = LAYERS[module]
    body = get_json(client, "spectrum_steps", run="seed0", tag=spectrum_tag(module))
    assert body["steps"] == MEASURED_STEPS
    assert body["wall_times"] == sorted(body["wall_times"])
    assert body["info"]["weight_shape"] == list(shape)
    rows, cols = shape[0] // groups, int(np.prod(shape[1:]))
    assert body["info"]["matrix_shape"] == [groups, rows, cols]


# --- one step -------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("module", list(LAYERS))
def test_singular_values_equal_numpy_svd_of_the_weight(served, run, module):
    client, _, reference = served
    tag = spectrum_tag(module)
    for step in (MEASURED_STEPS[0], MEASURED_STEPS[len(MEASURED_STEPS) // 2]):
        body = get_json(client, "spectrum", run=run, tag=tag, step=step)
        assert body["step"] == step
        assert body["error"] is None and body["non_finite"] == 0
        want = np.array(reference[run][tag][str(step)])
        assert body["singular_values"]["dtype"] == "float32"
        got = decode(body["singular_values"])
        assert got.shape == want.shape  # [groups, k]
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_spectrum_without_step_is_the_last_step(served):
    client, _, reference = served
    body = get_json(client, "spectrum", run="seed1", tag="spectra/fc1")
    assert body["step"] == MEASURED_STEPS[-1]
    want = np.array(reference["seed1"]["spectra/fc1"][str(MEASURED_STEPS[-1])])
    np.testing.assert_allclose(decode(body["singular_values"]), want, rtol=2e-4)


def test_metrics_of_one_step_match_closed_forms_of_numpy_singular_values(served):
    client, _, reference = served
    body = get_json(client, "spectrum", run="seed0", tag="spectra/fc2", step=15)
    s = np.sort(np.concatenate(reference["seed0"]["spectra/fc2"]["15"]))[::-1]
    m = body["metrics"]
    assert m["spectral_norm"] == pytest.approx(s[0], rel=1e-4)
    assert m["frobenius_norm"] == pytest.approx(np.sqrt((s**2).sum()), rel=1e-4)
    assert m["condition_number"] == pytest.approx(s[0] / s[-1], rel=1e-3)
    assert m["stable_rank"] == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-4)
    p = s / s.sum()
    assert m["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-4)
    assert m["numerical_rank"] == len(s)  # a trained 10x64 weight has full rank
    assert m["num_above_mp_edge"] == int((s > m["mp_bulk_edge"]).sum())


def test_metrics_the_route_passes_on_equal_the_event_file(served, spectrum_logdir, read_values):
    client, _, _ = served
    raw = raw_steps(spectrum_logdir, "seed1", "spectra/conv2", read_values)
    body = get_json(client, "spectrum", run="seed1", tag="spectra/conv2", step=20)
    for name in ("mp_bulk_edge", "mp_noise_scale", "alpha", "alpha_xmin", "alpha_ks_distance"):
        want = getattr(raw[20].metrics, name)
        assert number(body["metrics"][name]) == pytest.approx(want, rel=1e-12, nan_ok=True), name
    assert body["seconds"] == pytest.approx(raw[20].seconds)


def test_a_non_finite_weight_is_served_as_an_error_step(served):
    client, _, _ = served
    body = get_json(client, "spectrum", run="seed1", tag=BROKEN_TAG, step=BROKEN_STEP)
    assert "non-finite" in body["error"]
    flags = {"condition_number_is_bound"}
    # strict JSON, no bare NaN; a failed step's flags are false
    assert all(v == "NaN" for k, v in body["metrics"].items() if k not in flags)
    assert body["metrics"]["condition_number_is_bound"] is False
    values = decode(body["singular_values"])
    assert body["non_finite"] == int((~np.isfinite(values)).sum())
    good = get_json(client, "spectrum", run="seed1", tag=BROKEN_TAG, step=0)
    assert good["error"] is None


# --- metrics of all layers ------------------------------------------------------------------------


def test_metrics_route_gives_every_layer_of_the_run_over_steps(served):
    client, _, reference = served
    body = get_json(client, "spectrum_metrics", run="seed0")
    assert sorted(body["layers"]) == sorted(TAGS)
    assert body["metric_names"] == [f.name for f in pb.SpectrumMetrics.DESCRIPTOR.fields]
    for tag in TAGS:
        layer = body["layers"][tag]
        assert layer["steps"] == MEASURED_STEPS
        assert layer["errors"] == []
        for i, step in enumerate(MEASURED_STEPS):
            s = np.sort(np.concatenate(reference["seed0"][tag][str(step)]))[::-1]
            assert layer["metrics"]["spectral_norm"][i] == pytest.approx(s[0], rel=1e-4)
            assert layer["metrics"]["condition_number"][i] == pytest.approx(s[0] / s[-1], rel=1e-3)


def test_metrics_route_marks_the_broken_step(served):
    client, _, _ = served
    layer = get_json(client, "spectrum_metrics", run="seed1")["layers"][BROKEN_TAG]
    assert layer["steps"] == [0, BROKEN_STEP, 20]
    assert [step for step, _ in layer["errors"]] == [BROKEN_STEP]
    assert layer["metrics"]["condition_number"][1] == "NaN"
    assert isinstance(layer["metrics"]["condition_number"][0], float)


def test_metrics_route_tag_filter_and_max_steps(served):
    client, _, _ = served
    body = get_json(
        client, "spectrum_metrics", run="seed0", tag=["spectra/fc1", "spectra/conv1"], max_steps=3
    )
    assert sorted(body["layers"]) == ["spectra/conv1", "spectra/fc1"]
    steps = body["layers"]["spectra/fc1"]["steps"]
    assert steps == [MEASURED_STEPS[0], MEASURED_STEPS[4], MEASURED_STEPS[-1]]
    assert len(body["layers"]["spectra/fc1"]["metrics"]["alpha"]) == 3


def test_decoded_steps_are_cached_by_blob_key(spectrum_logdir):
    provider = _provider(spectrum_logdir)
    client = _client(provider)
    get_json(client, "spectrum_metrics", run="seed0")
    first = provider.blob_reads
    assert first == len(TAGS) * len(MEASURED_STEPS)  # each step's blob read once
    get_json(client, "spectrum_metrics", run="seed0")
    get_json(client, "spectrum", run="seed0", tag="spectra/fc1", step=10)
    get_json(client, "spectrum_evolution", run="seed0", tag="spectra/conv2")
    assert provider.blob_reads == first  # all served from the cache


# --- evolution ------------------------------------------------------------------------------------


def test_evolution_holds_every_step_merged_across_groups(served):
    client, _, reference = served
    body = get_json(client, "spectrum_evolution", run="seed1", tag="spectra/conv2")
    assert body["steps"] == MEASURED_STEPS and body["total_steps"] == len(MEASURED_STEPS)
    values = decode(body["values"])
    total = 2 * 8  # groups x min(8, 36)
    assert body["total_values"] == total and body["index"] == list(range(total))
    for i, step in enumerate(MEASURED_STEPS):
        # A grouped conv is block diagonal: its spectrum is the union of the groups'.
        want = np.sort(np.concatenate(reference["seed1"]["spectra/conv2"][str(step)]))[::-1]
        np.testing.assert_allclose(values[i], want, rtol=2e-4, atol=1e-6)


def test_evolution_downsamples_to_the_requested_size(served):
    client, _, reference = served
    body = get_json(
        client, "spectrum_evolution", run="seed0", tag="spectra/fc1", max_steps=3, max_values=5
    )
    assert body["steps"] == [0, 20, 35]  # evenly spread, first and last kept
    assert body["index"] == [0, 4, 8, 11, 15]  # of 16 singular values
    values = decode(body["values"])
    assert values.shape == (3, 5)
    for i, step in enumerate(body["steps"]):
        want = np.array(reference["seed0"]["spectra/fc1"][str(step)][0])[body["index"]]
        np.testing.assert_allclose(values[i], want, rtol=2e-4)


def test_evolution_lists_the_broken_step(served):
    client, _, _ = served
    body = get_json(client, "spectrum_evolution", run="seed1", tag=BROKEN_TAG)
    assert [step for step, _ in body["errors"]] == [BROKEN_STEP]
    values = decode(body["values"])
    assert np.isnan(values[1]).all() and np.isfinite(values[[0, 2]]).all()


def test_even_indices_spread_and_keep_the_ends():
    assert spectrum_routes.even_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert spectrum_routes.even_indices(101, 3).tolist() == [0, 50, 100]
    assert spectrum_routes.even_indices(10, 1).tolist() == [9]


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route, query, status, words",
    [
        ("spectrum_evolution", {"run": "seed0"}, 400, "tag"),
        ("spectrum_metrics", {"run": "nope"}, 404, "seed0"),
        ("spectrum_evolution", {"run": "seed0", "tag": "spectra/fc1", "max_values": 0}, 400, "1"),
        ("spectrum_metrics", {"run": "seed0", "max_steps": -1}, 400, "0"),
    ],
)
def test_bad_requests_say_what_to_do(served, route, query, status, words):
    client, _, _ = served
    got, body, _ = get(client, route, **query)
    assert got == status, body
    assert words in body


def test_a_step_written_after_the_listing_was_remembered_is_found(tmp_path):
    import deepscope

    writer = deepscope.SummaryWriter(str(tmp_path / "live"))
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(2)]
    writer.add_singular_values("w", weights[0], global_step=0)
    writer.flush()
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    client = _client(tb_data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path)))
    assert get_json(client, "spectrum", run="live", tag="w")["step"] == 0  # listing remembered
    writer.add_singular_values("w", weights[1], global_step=7)
    writer.close()
    multiplexer.Reload()
    body = get_json(client, "spectrum", run="live", tag="w", step=7)
    want = np.linalg.svd(weights[1].astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(decode(body["singular_values"])[0], want, rtol=1e-5)
