"""The layer-statistics routes, served in-process through TensorBoard's multiplexer data provider.

Log dirs are written with `deepscope.SummaryWriter.add_layer_statistics` (and
damaged events by hand); the plugin is mounted in TensorBoard's own WSGI app.
Every response is compared with a reference built from what was logged
(tests/layer_statistics_data.py): the union of the steps' rows in order of first
appearance, float32 values, null (json) / NaN + `not_measured` (base64) where a
row is not in a step, an activation statistic is NaN, or a parameter had no
gradient; a parameter's NaN gradient norm served as the measured "NaN".
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
from tensorboard import context as tb_context
from tensorboard.backend import application
from tensorboard.plugins import base_plugin
from tensorboard.util import tensor_util
from werkzeug import test as werkzeug_test

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import series
from deepscope.tb_plugin.deepscope_plugin import DeepscopePlugin
from deepscope.tb_plugin.layer_statistics_routes import (
    LayerStatisticsRoutes,
    MalformedEvent,
    decode_payload,
)
from deepscope.tb_plugin.route_context import RouteContext
from deepscope.writer.layer_statistics import layer_statistics_pb
from tests.layer_statistics_data import (
    DAMAGED,
    GOOD,
    LOGGED,
    reference_not_measured,
    reference_spectrum,
    reference_step,
    reference_table,
    reference_zero_weight,
    statistics_given,
    write_series,
)
from tests.route_helpers import decode, multiplexer_provider, number

EPS32 = float(np.finfo(np.float32).eps)
TAG = "layer_statistics/activations"
ROUTE = "/data/plugin/deepscope"


def _damaged_run(name: str) -> str:
    return "damaged-" + name.replace(" ", "-")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("layer-statistics")
    writer = deepscope.SummaryWriter(str(logdir / "train"))
    write_series(writer, TAG)
    write_series(writer, "layer_statistics/parameters", parts="parameters")
    writer.add_update_ratios("update", {"fc.weight": 1e-3}, global_step=0)
    writer.close()
    for name, (build, _) in DAMAGED.items():
        writer = deepscope.SummaryWriter(str(logdir / _damaged_run(name)))
        writer.add_layer_statistics(TAG, GOOD, global_step=0, walltime=10.0)
        writer.file_writer.add_summary(build(TAG), 1, 11.0)
        writer.add_layer_statistics(TAG, GOOD, global_step=2, walltime=12.0)
        writer.close()
    writer = deepscope.SummaryWriter(str(logdir / "newest-damaged"))
    writer.add_layer_statistics(TAG, GOOD, global_step=0, walltime=10.0)
    writer.file_writer.add_summary(DAMAGED["garbage"][0](TAG), 1, 11.0)
    writer.close()
    return logdir


@pytest.fixture(scope="module")
def client(logdir):
    _, provider = multiplexer_provider(logdir)
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    return werkzeug_test.Client(app)


def get(client, route: str, **query) -> tuple[int, str]:
    response = client.get(f"{ROUTE}/{route}", query_string=query)
    return response.status_code, response.get_data(as_text=True)


def get_json(client, route: str, **query) -> dict:
    status, body = get(client, route, **query)
    assert status == 200, body
    return json.loads(body)


def _floats(rows) -> np.ndarray:
    return np.array(
        [[math.nan if v is None else number(v) for v in row] for row in rows], dtype=np.float64
    )


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("statistic", ["mean", "std", "rms", "zero_fraction", "saturated_fraction"])
def test_the_table_of_an_activation_statistic_matches_the_log(client, statistic):
    body = get_json(client, "layer_statistics", run="train", tag=TAG, statistic=statistic)
    names, types, values, present = reference_table(statistic)
    assert body["names"] == names == ["conv", "relu", "tanh", "fc"]
    assert body["types"] == types == ["Conv2d", "ReLU", "Tanh", "Linear"]
    assert body["steps"] == [step for step, *_ in LOGGED]
    np.testing.assert_allclose(body["wall_times"], [t for _, t, *_ in LOGGED], rtol=1e-15)
    assert (body["part"], body["statistic"], body["quantity"]) == (
        "activations",
        statistic,
        statistic,
    )
    # Not measured (null): a row the step lacks, or NaN (the schema's "not measured").
    not_measured = ~present | np.isnan(values)
    assert [[v is None for v in row] for row in body["values"]] == not_measured.tolist()
    np.testing.assert_allclose(_floats(body["values"]), values, rtol=EPS32, equal_nan=True)
    assert body["warnings"] == []
    assert body["non_finite"] == int(np.isinf(values).sum())


def test_the_table_says_how_to_draw_each_statistic(client):
    expected = {
        "mean": ("linear", ""),
        "std": ("log", ""),
        "rms": ("log", ""),
        "zero_fraction": ("linear", "fraction"),
        "effective_dimension": ("linear", "channels"),
        "saturation": ("linear", "fraction"),
    }
    for statistic, (scale, unit) in expected.items():
        body = get_json(client, "layer_statistics", run="train", tag=TAG, statistic=statistic)
        assert (body["scale"], body["unit"]) == (scale, unit), statistic
        assert body["label"]
    body = get_json(client, "layer_statistics", run="train", tag=TAG, statistic="grad_norm")
    assert (body["part"], body["scale"], body["label"]) == ("parameters", "log", "gradient norm")


def test_the_table_lists_the_series_columns_and_metadata(client):
    body = get_json(client, "layer_statistics", run="train", tag=TAG)
    assert body["statistic"] == "std"  # the default when the series has it
    assert body["parts"] == {"activations": statistics_given(2), "parameters": statistics_given(3)}
    assert body["statistics"] == statistics_given(2) + statistics_given(3)
    assert (body["on"], body["variance_threshold"], body["saturation_tolerance"]) == (
        "train",
        0.99,
        0.01,
    )


def test_infinities_are_measured_and_nan_is_not_measured(client):
    body = get_json(client, "layer_statistics", run="train", tag=TAG, statistic="std")
    assert body["values"][1][3] == "Infinity" and body["non_finite"] == 1
    body = get_json(client, "layer_statistics", run="train", tag=TAG, statistic="rms")
    assert body["values"][1][0] is None  # logged as NaN
    assert body["values"][0][1] is None  # relu logs no rms
    assert body["values"][0][3] is None  # fc is not in step 0
    assert body["non_finite"] == 0
    body = get_json(
        client, "layer_statistics", run="train", tag=TAG, statistic="rms", format="base64"
    )
    values = decode(body["values"])
    assert body["not_measured"] == np.argwhere(np.isnan(values)).tolist()
    assert [0, 1] in body["not_measured"] and [1, 0] in body["not_measured"]


def test_parameters_are_a_table_of_their_own(client):
    body = get_json(client, "layer_statistics", run="train", tag="layer_statistics/parameters")
    names, _, values, present = reference_table("grad_norm")
    assert body["statistic"] == "grad_norm" and body["part"] == "parameters"
    assert body["names"] == names == ["conv.weight", "conv.bias", "fc.weight"]
    assert body["parts"]["activations"] == []
    np.testing.assert_allclose(_floats(body["values"]), values, rtol=EPS32, equal_nan=True)
    ratio = get_json(client, "layer_statistics", run="train", tag=TAG, statistic="grad_to_weight")
    # conv.bias' zero weight at step 0: its ratio is undefined, not an infinity to count.
    assert ratio["values"][0][1] is None and ratio["zero_weight"] == [[0, 1]]
    assert body["zero_weight"] == []  # the gradient norm itself is measured


@pytest.mark.parametrize("tag", [TAG, "layer_statistics/parameters"])
@pytest.mark.parametrize("statistic", ["grad_norm", "weight_norm", "grad_to_weight"])
def test_no_gradient_is_not_measured_and_a_nan_gradient_is_measured(client, tag, statistic):
    names, _, values, present = reference_table(statistic)
    not_measured = reference_not_measured(statistic)
    # Step 10: "conv.weight" has a NaN gradient (measured), "fc.weight" none (not measured);
    # "fc.weight" is not in step 0 either.
    conv, fc = names.index("conv.weight"), names.index("fc.weight")
    gradient = statistic != "weight_norm"
    assert not_measured[1, fc] == gradient and not not_measured[1, conv] and not_measured[0, fc]
    assert np.isnan(values[1, conv]) == gradient
    zero_weight = reference_zero_weight(statistic)
    assert zero_weight.sum() == (statistic == "grad_to_weight")  # conv.bias at step 0
    measured_nan = np.isnan(values) & ~not_measured
    body = get_json(client, "layer_statistics", run="train", tag=tag, statistic=statistic)
    null = not_measured | zero_weight
    assert [[v is None for v in row] for row in body["values"]] == null.tolist()
    assert [[v == "NaN" for v in row] for row in body["values"]] == measured_nan.tolist()
    assert body["zero_weight"] == np.argwhere(zero_weight).tolist()
    measured = ~null
    np.testing.assert_allclose(
        _floats(body["values"])[measured], values[measured], rtol=EPS32, equal_nan=True
    )
    want_non_finite = int((~np.isfinite(values) & measured).sum())
    assert body["non_finite"] == want_non_finite == {"weight_norm": 0}.get(statistic, 1)
    # grad_norm and grad_to_weight: conv.weight's NaN gradient at step 10; conv.bias'
    # infinite ratio at step 0 (a zero weight) is not counted.
    b64 = get_json(
        client, "layer_statistics", run="train", tag=tag, statistic=statistic, format="base64"
    )
    assert b64["not_measured"] == np.argwhere(not_measured).tolist()
    assert b64["zero_weight"] == body["zero_weight"]
    assert b64["non_finite"] == want_non_finite
    served = np.where(zero_weight, np.float32(np.nan), values)
    np.testing.assert_allclose(decode(b64["values"]), served, rtol=EPS32, equal_nan=True)
    picked = get_json(
        client, "layer_statistics", run="train", tag=tag, statistic=statistic, name="fc.weight"
    )
    assert [row[0] is None for row in picked["values"]] == not_measured[:, fc].tolist()


def test_a_zero_weight_ratio_is_undefined_and_a_non_finite_gradient_is_trouble(tmp_path):
    """‖g‖/‖W‖ with ‖W‖ exactly 0 is marked zero_weight (Inf or NaN alike), not counted;
    an infinite gradient of a non-zero weight is; no gradient stays not measured."""
    inf, nan = math.inf, math.nan
    rows = {
        "zero_both": {"grad_norm": 0.0, "weight_norm": 0.0, "grad_to_weight": nan},
        "zero_weight": {"grad_norm": 0.5, "weight_norm": 0.0, "grad_to_weight": inf},
        "inf_grad": {"grad_norm": inf, "weight_norm": 2.0, "grad_to_weight": inf},
        "inf_grad_zero_weight": {"grad_norm": inf, "weight_norm": 0.0, "grad_to_weight": inf},
        "no_grad_zero_weight": {"grad_norm": None, "weight_norm": 0.0, "grad_to_weight": None},
        "fine": {"grad_norm": 0.25, "weight_norm": 4.0, "grad_to_weight": 0.0625},
    }
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    writer.add_layer_statistics("p", parameters=rows, global_step=0)
    writer.close()
    _, provider = multiplexer_provider(tmp_path)
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    own = werkzeug_test.Client(app)
    names = list(rows)
    zero = [
        j
        for j, n in enumerate(names)
        if rows[n]["weight_norm"] == 0.0 and n != "no_grad_zero_weight"
    ]
    ratio = get_json(own, "layer_statistics", run="run", tag="p", statistic="grad_to_weight")
    assert ratio["names"] == names
    assert ratio["zero_weight"] == [[0, j] for j in zero]
    assert ratio["non_finite"] == 1  # inf_grad's ratio alone
    assert ratio["values"][0][names.index("inf_grad")] == "Infinity"
    assert ratio["values"][0][names.index("no_grad_zero_weight")] is None
    assert ratio["values"][0][names.index("fine")] == pytest.approx(0.0625, rel=EPS32)
    assert all(ratio["values"][0][j] is None for j in zero)
    b64 = get_json(
        own, "layer_statistics", run="run", tag="p", statistic="grad_to_weight", format="base64"
    )
    assert b64["zero_weight"] == ratio["zero_weight"] and b64["non_finite"] == 1
    assert b64["not_measured"] == [[0, names.index("no_grad_zero_weight")]]
    assert np.isnan(decode(b64["values"])[0, zero]).all()
    grad = get_json(own, "layer_statistics", run="run", tag="p", statistic="grad_norm")
    assert grad["zero_weight"] == [] and grad["non_finite"] == 2  # both infinite gradients
    # The step route gives every number as logged: the tab tells a zero weight from its norm.
    step = get_json(own, "layer_statistics_step", run="run", tag="p")
    assert step["without_gradient"] == ["no_grad_zero_weight"]
    k = step["parameter_statistics"].index("weight_norm")
    assert [row[k] for row in step["parameter_values"]] == [rows[n]["weight_norm"] for n in names]


def test_base64_holds_the_same_values_and_the_not_measured_pairs(client):
    body = get_json(
        client, "layer_statistics", run="train", tag=TAG, statistic="std", format="base64"
    )
    names, _, values, present = reference_table("std")
    assert body["values"]["dtype"] == "float32"
    assert body["values"]["shape"] == [len(LOGGED), len(names)]
    np.testing.assert_allclose(decode(body["values"]), values, rtol=EPS32, equal_nan=True)
    assert body["not_measured"] == np.argwhere(~present).tolist() == [[0, 3], [2, 1]]
    assert np.isnan(values).sum() == 2  # std is given wherever a row is


def test_name_picks_rows_in_the_order_asked(client):
    body = get_json(
        client, "layer_statistics", run="train", tag=TAG, statistic="mean", name=["fc", "conv"]
    )
    names, _, values, _ = reference_table("mean")
    assert body["names"] == ["fc", "conv"] and body["types"] == ["Linear", "Conv2d"]
    want = values[:, [names.index("fc"), names.index("conv")]]
    np.testing.assert_allclose(_floats(body["values"]), want, rtol=EPS32, equal_nan=True)


def test_table_errors_say_what_exists(client):
    status, body = get(client, "layer_statistics", run="train", tag=TAG, statistic="sdt")
    assert status == 400
    assert "has no statistic 'sdt' (did you mean 'std'?)" in body
    assert "its statistics: mean, std, rms" in body
    status, body = get(client, "layer_statistics", run="train", tag=TAG, name="nope")
    assert status == 404 and "has no row 'nope'; its rows: conv, relu, tanh, fc" in body
    status, body = get(client, "layer_statistics", run="train")
    assert status == 400 and "missing query parameter 'tag'" in body
    status, body = get(client, "layer_statistics", run="train", tag="update")
    assert status == 400 and "update_ratios" in body
    status, body = get(client, "layer_statistics", run="nope", tag=TAG)
    assert status == 404
    status, body = get(client, "layer_statistics", run="train", tag=TAG, format="csv")
    assert status == 400 and "format must be one of json, base64" in body


# --------------------------------------------------------------------------- one step


@pytest.mark.parametrize("index", range(len(LOGGED)))
def test_a_step_serves_every_statistic_of_every_row(client, index):
    want = reference_step(index)
    body = get_json(client, "layer_statistics_step", run="train", tag=TAG, step=want["step"])
    assert body["error"] is None
    assert body["steps"] == [step for step, *_ in LOGGED]
    assert math.isclose(body["wall_time"], want["wall_time"], rel_tol=1e-15)
    for key in (
        "step",
        "layers",
        "types",
        "activation_statistics",
        "counts",
        "channels",
        "dead_channels",
        "eigenvalue_counts",
        "covariance_samples",
        "parameters",
        "parameter_statistics",
        "without_gradient",
    ):
        assert body[key] == want[key], key
    np.testing.assert_allclose(
        _floats(body["activations"]), want["activations"], rtol=EPS32, equal_nan=True
    )
    np.testing.assert_allclose(
        _floats(body["parameter_values"]), want["parameter_values"], rtol=EPS32, equal_nan=True
    )
    assert math.isclose(body["seconds"], 0.001 * (want["step"] + 1), rel_tol=1e-12)


def test_a_step_without_step_is_the_newest(client):
    body = get_json(client, "layer_statistics_step", run="train", tag=TAG)
    assert body["step"] == LOGGED[-1][0] and body["layers"] == ["conv", "tanh", "fc"]
    body = get_json(client, "layer_statistics_step", run="newest-damaged", tag=TAG)
    assert body["step"] == 1 and "does not parse" in body["error"]


def test_a_part_a_step_lacks_is_empty(client):
    body = get_json(
        client, "layer_statistics_step", run="train", tag="layer_statistics/parameters", step=10
    )
    assert body["layers"] == [] and body["activations"] == [] and body["counts"] == []
    assert body["parameters"] == ["conv.weight", "fc.weight"]
    assert body["parameter_values"][0][0] == "NaN"  # a NaN gradient norm, as logged
    assert body["parameter_values"][1][0] == "NaN"  # no gradient: NaN, listed as such
    assert body["without_gradient"] == ["fc.weight"]
    assert body["parameter_values"][1][1] == 1.0  # its weight norm is measured
    step0 = get_json(
        client, "layer_statistics_step", run="train", tag="layer_statistics/parameters", step=0
    )
    assert step0["without_gradient"] == []


def test_step_errors_name_the_nearest_steps(client):
    status, body = get(client, "layer_statistics_step", run="train", tag=TAG, step=15)
    assert status == 404 and "has no step 15; nearest kept steps: 10, 20" in body
    status, body = get(client, "layer_statistics_step", run="train", tag=TAG, step="ten")
    assert status == 400 and "step must be an integer" in body


# --------------------------------------------------------------------------- spectrum


@pytest.mark.parametrize("layer", ["conv", "fc"])
@pytest.mark.parametrize("fmt", ["json", "base64"])
def test_the_spectrum_of_a_layer_over_the_steps_that_have_one(client, layer, fmt):
    body = get_json(
        client, "layer_statistics_spectrum", run="train", tag=TAG, layer=layer, format=fmt
    )
    want = reference_spectrum(layer)
    assert body["steps"] == want["steps"]
    assert body["samples"] == want["samples"]
    assert body["channels"] == [e.size for e in want["eigenvalues"]]
    assert body["type"] == {"conv": "Conv2d", "fc": "Linear"}[layer]
    if fmt == "json":
        for got, expected in zip(body["eigenvalues"], want["eigenvalues"], strict=True):
            np.testing.assert_allclose(got, expected, rtol=EPS32)
    else:
        padded = decode(body["eigenvalues"])
        for row, expected in zip(padded, want["eigenvalues"], strict=True):
            np.testing.assert_allclose(row[: expected.size], expected, rtol=EPS32)
            assert np.isnan(row[expected.size :]).all()
    for key in ("effective_dimension", "saturation", "effective_rank"):
        np.testing.assert_allclose(body[key], want[key], rtol=EPS32)
    assert body["warnings"] == []


def test_the_spectrum_metrics_are_the_closed_forms_of_the_eigenvalues(client):
    body = get_json(client, "layer_statistics_spectrum", run="train", tag=TAG, layer="conv")
    for eigen, dimension, rank in zip(
        body["eigenvalues"], body["effective_dimension"], body["effective_rank"], strict=True
    ):
        lam = np.asarray(eigen, dtype=np.float64)
        assert math.isclose(dimension, lam.sum() ** 2 / (lam**2).sum(), rel_tol=8 * EPS32)
        p = lam[lam > 0] / lam.sum()
        assert math.isclose(rank, math.exp(-(p * np.log(p)).sum()), rel_tol=8 * EPS32)


def test_spectrum_errors_say_what_exists(client):
    body = get_json(client, "layer_statistics_spectrum", run="train", tag=TAG, layer="relu")
    assert body["steps"] == [] and "no covariance eigenvalues" in body["warnings"][0]
    status, body = get(client, "layer_statistics_spectrum", run="train", tag=TAG, layer="fcc")
    assert status == 404
    assert "has no layer 'fcc' (did you mean 'fc'?)" in body
    assert "its layers with spectra: conv, fc" in body
    status, body = get(client, "layer_statistics_spectrum", run="train", tag=TAG)
    assert status == 400 and "missing query parameter 'layer'" in body


# --------------------------------------------------------------------------- damaged events


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_damaged_event_drops_its_own_step_with_a_warning_naming_it(client, damage):
    _, reason = DAMAGED[damage]
    run = _damaged_run(damage)
    for fmt in ("json", "base64"):
        body = get_json(client, "layer_statistics", run=run, tag=TAG, statistic="mean", format=fmt)
        assert body["steps"] == [0, 2]
        assert body["names"] == ["conv", "relu"]
        (warning,) = body["warnings"]
        assert "1 event(s) (first at step 1) are malformed" in warning
        assert "step 1: " in warning and reason in warning, warning
    body = get_json(client, "layer_statistics", run=run, tag=TAG, statistic="mean")
    assert body["values"] == [[0.5, 0.25], [0.5, 0.25]]
    step = get_json(client, "layer_statistics_step", run=run, tag=TAG, step=1)
    assert step["step"] == 1 and reason in step["error"] and step["layers"] == []
    assert step["steps"] == [0, 1, 2]
    assert get_json(client, "layer_statistics_step", run=run, tag=TAG, step=2)["error"] is None
    spectrum = get_json(client, "layer_statistics_spectrum", run=run, tag=TAG, layer="conv")
    assert spectrum["steps"] == [] and "step 1: " in spectrum["warnings"][0]


def test_every_damage_is_refused_by_the_decoder_alone():
    for name, (build, reason) in DAMAGED.items():
        tensor = build("x").value[0].tensor
        with pytest.raises(MalformedEvent) as raised:
            decode_payload(tensor_util.make_ndarray(tensor))
        assert reason in str(raised.value), name


# --------------------------------------------------------------------------- without HTTP


def test_the_handlers_work_without_http_and_read_each_version_once(logdir):
    _, provider = multiplexer_provider(logdir)

    class Counting:
        reads = 0

        def read_tensors(self, *args, **kwargs):
            Counting.reads += 1
            return provider.read_tensors(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(provider, name)

    counting = Counting()
    routes = LayerStatisticsRoutes(RouteContext(counting, series.SeriesCatalog(counting), None))
    ctx = tb_context.RequestContext()
    decoded = routes.layer_statistics(ctx, "", "train", TAG)
    assert decoded.steps.tolist() == [0, 10, 20]
    assert decoded.activations.names == ["conv", "relu", "tanh", "fc"]
    table = json.loads(_text(routes.body(ctx, "", "train", TAG, "json", (), "std")))
    step = json.loads(_text(routes.step_body(ctx, "", "train", TAG, 10)))
    spectrum = json.loads(_text(routes.spectrum_body(ctx, "", "train", TAG, "conv")))
    assert table["statistic"] == "std" and step["step"] == 10 and spectrum["steps"] == [0, 20]
    assert Counting.reads == 1  # one read of the series serves the three routes


def _text(prepared) -> bytes:
    return (
        gzip.decompress(prepared.content)
        if prepared.content_encoding == "gzip"
        else prepared.content
    )


def test_new_steps_are_served_once_the_loader_has_them(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    writer.add_layer_statistics(TAG, GOOD, global_step=0)
    writer.flush()
    multiplexer, provider = multiplexer_provider(tmp_path)
    routes = LayerStatisticsRoutes(RouteContext(provider, series.SeriesCatalog(provider), None))
    ctx = tb_context.RequestContext()
    first = json.loads(_text(routes.body(ctx, "", "run", TAG, "json", (), "mean")))
    assert first["steps"] == [0]
    writer.add_layer_statistics(TAG, {"conv": {"mean": 2.0}}, global_step=1)
    writer.close()
    multiplexer.Reload()
    second = json.loads(_text(routes.body(ctx, "", "run", TAG, "json", (), "mean")))
    assert second["steps"] == [0, 1] and second["values"][1] == [2.0, None]


def test_statistics_a_newer_writer_adds_are_served_after_the_known_ones(tmp_path):
    summary = layer_statistics_pb(TAG, {"a": {"mean": 1.0}})
    step = pb.LayerStatisticsStep.FromString(summary.value[0].tensor.string_val[0])
    step.activation_statistics.append("kurtosis")
    step.activations.CopyFrom(arrays.encode_array(np.float32([[1.0, 3.0]])))
    summary.value[0].tensor.string_val[0] = step.SerializeToString()
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    writer.file_writer.add_summary(summary, 0, 1.0)
    writer.close()
    _, provider = multiplexer_provider(tmp_path)
    routes = LayerStatisticsRoutes(RouteContext(provider, series.SeriesCatalog(provider), None))
    ctx = tb_context.RequestContext()
    body = json.loads(_text(routes.body(ctx, "", "run", TAG, "json", (), "kurtosis")))
    assert body["statistics"] == ["mean", "kurtosis"] and body["values"] == [[3.0]]
    assert body["scale"] == "linear"


def test_a_series_of_damaged_steps_only_is_served_empty_with_its_warnings(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path / "run"))
    writer.add_layer_statistics(TAG, GOOD, global_step=0)  # the metadata
    writer.close()
    writer = deepscope.SummaryWriter(str(tmp_path / "broken"))
    summary = layer_statistics_pb(TAG, GOOD)
    summary.value[0].tensor.string_val[0] = b"\xff" * 8
    writer.file_writer.add_summary(summary, 3, 1.0)
    writer.close()
    _, provider = multiplexer_provider(tmp_path)
    context = base_plugin.TBContext(data_provider=provider, sampling_hints={"deepscope": 0})
    app = application.TensorBoardWSGI([DeepscopePlugin(context)], data_provider=provider)
    client = werkzeug_test.Client(app)
    body = get_json(client, "layer_statistics", run="broken", tag=TAG)
    assert body["steps"] == [] and body["names"] == [] and body["values"] == []
    assert "step 3: the payload does not parse" in body["warnings"][0]
    assert body["statistics"] == [] and body["statistic"] == "std"
    step = get_json(client, "layer_statistics_step", run="broken", tag=TAG)
    assert step["step"] == 3 and "does not parse" in step["error"] and step["steps"] == [3]
    status, text = get(client, "layer_statistics_spectrum", run="broken", tag=TAG, layer="conv")
    assert status == 404 and "its layers with spectra: none" in text
    status, text = get(client, "layer_statistics", run="broken", tag=TAG, statistic="kurtosis")
    assert status == 400 and "none (no step could be read)" in text


def test_the_decoder_reuses_a_previous_steps_names_and_still_checks_each_event():
    from deepscope.tb_plugin.layer_statistics_routes import StepDecoder

    def payload(activations=None, parameters=None):
        summary = layer_statistics_pb(TAG, activations, parameters)
        return np.array(summary.value[0].tensor.string_val[0], dtype=object)

    a = {"conv": {"mean": 1.0, "type": "Conv2d"}, "relu": {"mean": 2.0}}
    b = {"relu": {"mean": 3.0}, "conv": {"mean": 4.0, "std": 0.5}}
    params = {"w": {"grad_norm": 0.5}}
    decoder = StepDecoder()
    sequence = [(a, None), (a, None), (b, None), (a, params), (None, params), (None, params)]
    for activations, parameters in sequence:
        got = decoder.decode(payload(activations, parameters))
        assert list(got.layers) == list(activations or {})
        assert list(got.parameters) == list(parameters or {})
        want = [
            [row.get(c, math.nan) for c in got.activation_statistics]
            for row in (activations or {}).values()
        ]
        np.testing.assert_array_equal(
            got.activations, np.float32(want).reshape(got.activations.shape)
        )
    # The same names as the previous event, but a step damaged after them: still refused.
    damaged = layer_statistics_pb(TAG, parameters={"w": {"grad_norm": 0.5}})
    step = pb.LayerStatisticsStep.FromString(damaged.value[0].tensor.string_val[0])
    step.parameter_values.CopyFrom(arrays.encode_array(np.float32([[-1.0]])))
    with pytest.raises(MalformedEvent, match="grad_norm -1 is not >= 0"):
        decoder.decode(np.array(step.SerializeToString(), dtype=object))
    duplicate = pb.LayerStatisticsStep(parameters=["w", "w"], parameter_statistics=["grad_norm"])
    duplicate.parameter_values.CopyFrom(arrays.encode_array(np.float32([[1.0], [2.0]])))
    with pytest.raises(MalformedEvent, match="parameter name 'w' appears twice"):
        decoder.decode(np.array(duplicate.SerializeToString(), dtype=object))


def test_the_decoder_reads_without_gradient_after_names_it_already_knows():
    from deepscope.tb_plugin.layer_statistics_routes import StepDecoder

    def payload(parameters):
        summary = layer_statistics_pb(TAG, parameters=parameters)
        return np.array(summary.value[0].tensor.string_val[0], dtype=object)

    with_grad = {"grad_norm": 0.5, "weight_norm": 1.0}
    none = {"grad_norm": None, "weight_norm": 2.0}
    decoder = StepDecoder()
    for rows, want in (
        ({"w": with_grad, "b": none}, [1]),
        ({"w": none, "b": with_grad}, [0]),  # the same names: the remembered prefix
        ({"w": with_grad, "b": with_grad}, []),
        ({"w": none, "b": none}, [0, 1]),
    ):
        got = decoder.decode(payload(rows))
        assert got.parameters == ("w", "b") and got.without_gradient.tolist() == want
        assert np.isnan(got.parameter_values[want, 0]).all()
    # Damage after known names is still refused.
    step = pb.LayerStatisticsStep.FromString(
        layer_statistics_pb(TAG, parameters={"w": with_grad, "b": none})
        .value[0]
        .tensor.string_val[0]
    )
    step.without_gradient[:] = [1, 5]
    with pytest.raises(MalformedEvent, match="without_gradient index 5 is not a parameter"):
        decoder.decode(np.array(step.SerializeToString(), dtype=object))
