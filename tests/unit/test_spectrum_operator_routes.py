"""The spectrum routes serving conv operator spectra and partial coverage, in process.

The log dir (tests/spectrum_data.py) is written by real training under `watch()`,
which logs every conv's operator norm by default; its reference is numpy's SVD of the
explicit circular operator matrix of weight copies the training loop took. seed1's
OPERATOR_TAG carries whole operator spectra (`operator="full"`). Damaged operator
fields and partial coverage are written by hand and must be that step's error only.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import spectrum_routes
from deepscope.tb_plugin.blob_kind import StepError
from tests.spectrum_data import (
    CONV_INPUT,
    MEASURED_STEPS,
    OPERATOR_INPUT,
    OPERATOR_STEPS,
    OPERATOR_TAG,
    OPERATOR_TOP_K,
    spectrum_tag,
)
from tests.unit import test_plugin_routes as plugin_routes
from tests.unit.test_plugin_routes import get_json

EPS32 = float(np.finfo(np.float32).eps)
CONVS = {"conv1": 1, "conv2": 1}  # name -> stride


@pytest.fixture(scope="module")
def served(spectrum_logdir):
    guidance = plugin_routes._production_tensor_size_guidance()
    client = plugin_routes._client(plugin_routes._provider(spectrum_logdir, guidance), {})
    reference = json.loads((spectrum_logdir / "reference.json").read_text())
    return client, reference


def near(found, want: float) -> bool:
    return abs(float(found) - want) <= 64 * EPS32 * abs(want)


@pytest.mark.parametrize("run", ["seed0", "seed1"])
@pytest.mark.parametrize("name", list(CONVS))
def test_spectrum_serves_each_convs_operator_norm(served, run, name):
    client, reference = served
    tag = spectrum_tag(name)
    for step in MEASURED_STEPS:
        body = get_json(client, "spectrum", run=run, tag=tag, step=step)
        want = np.array(reference[run]["operators"][tag][str(step)])
        op = body["operator"]
        assert body["error"] is None and body["coverage"] == "full"
        # seed0 logs the norms (watch()'s default), seed1 the whole spectra.
        assert op["error"] is None and op["norm_only"] is (run == "seed0")
        assert op["padding_rule"] == "circular" and op["input_size"] == list(CONV_INPUT)
        assert op["stride"] == [1, 1] and op["grid_size"] == list(CONV_INPUT)
        assert near(op["operator_norm"], want[0])
        assert op["count"] == want.size
        assert near(op["frobenius_norm"], float(np.linalg.norm(want)))
        assert op["stable_rank"] == pytest.approx(float(np.sum(want**2) / want[0] ** 2), rel=1e-4)
        if run == "seed0":
            assert op["top_values"] == [] and op["quantiles"] == []
        else:
            atol = 64 * EPS32 * float(want[0])
            np.testing.assert_allclose(op["top_values"], want[:OPERATOR_TOP_K], rtol=0, atol=atol)
            levels = np.array(op["quantile_levels"])
            np.testing.assert_allclose(
                op["quantiles"], np.quantile(want, levels), rtol=0, atol=atol
            )


def test_linear_layers_have_no_operator(served):
    client, _ = served
    body = get_json(client, "spectrum", run="seed0", tag=spectrum_tag("fc1"))
    assert body["operator"] is None
    metrics = get_json(client, "spectrum_metrics", run="seed0", tag=spectrum_tag("fc1"))
    assert metrics["layers"][spectrum_tag("fc1")]["operator"] is None


def test_a_full_operator_spectrum_is_served_with_its_top_values_and_quantiles(served):
    client, reference = served
    for step in OPERATOR_STEPS:
        body = get_json(client, "spectrum", run="seed1", tag=OPERATOR_TAG, step=step)
        want = np.array(reference["seed1"]["operators"][OPERATOR_TAG][str(step)])
        op = body["operator"]
        assert op["norm_only"] is False and op["count"] == want.size
        assert op["input_size"] == list(OPERATOR_INPUT)
        scale = float(want[0])
        np.testing.assert_allclose(
            op["top_values"], want[:OPERATOR_TOP_K], rtol=0, atol=64 * EPS32 * scale
        )
        levels = np.array(op["quantile_levels"])
        np.testing.assert_allclose(
            op["quantiles"], np.quantile(want, levels), rtol=0, atol=64 * EPS32 * scale
        )
        assert near(op["operator_norm"], scale)


def test_metrics_serves_the_operator_beside_the_im2col_numbers(served):
    client, reference = served
    body = get_json(client, "spectrum_metrics", run="seed0")
    for name in CONVS:
        tag = spectrum_tag(name)
        layer = body["layers"][tag]
        op = layer["operator"]
        assert layer["coverage"] == ["full"] * len(MEASURED_STEPS)
        assert op["facts"]["input_size"] == list(CONV_INPUT)
        assert op["facts"]["padding_rule"] == "circular"
        assert op["norm_only"] == [True] * len(MEASURED_STEPS) and op["errors"] == []
        for i, step in enumerate(layer["steps"]):
            want = np.array(reference["seed0"]["operators"][tag][str(step)])
            assert near(op["metrics"]["operator_norm"][i], want[0])
            assert near(op["metrics"]["frobenius_norm"][i], float(np.linalg.norm(want)))
            im2col = np.concatenate(reference["seed0"][tag][str(step)])
            # The operator norm is at least the im2col one's (theory: between 1 and
            # sqrt(kh*kw) = 3 times it), and the route serves both.
            ratio = op["metrics"]["operator_norm"][i] / layer["metrics"]["spectral_norm"][i]
            assert near(layer["metrics"]["spectral_norm"][i], float(im2col.max()))
            assert 1 - 1e-5 <= ratio <= 3 + 1e-5


# --- damaged operators and partial coverage, written by hand -------------------------------------


INFO = pb.SpectrumInfo(weight_shape=[4, 2, 3, 3], layer_kind="Conv2d", matrix_shape=[1, 4, 18])


def good_step() -> pb.SpectrumStep:
    values = np.array([[4.0, 3.0, 2.0, 1.0]], np.float32)
    return pb.SpectrumStep(
        singular_values=arrays.encode_array(values),
        metrics=pb.SpectrumMetrics(spectral_norm=4.0, numerical_rank=4),
        operator=pb.OperatorSpectrum(
            input_size=[4, 4],
            stride=[1, 1],
            padding_rule="circular",
            operator_norm=9.0,
            top_values=arrays.encode_array(np.array([9.0, 8.0, 7.0], np.float32)),
            quantiles=arrays.encode_array(np.array([0.5, 3.0, 9.0], np.float32)),
            quantile_levels=[0.0, 0.5, 1.0],
            count=64,
            frobenius_norm=30.0,
            stable_rank=900 / 81,
            grid_size=[4, 4],
        ),
    )


def changed(edit) -> bytes:
    step = good_step()
    edit(step)
    return step.SerializeToString()


def test_a_good_operator_decodes():
    decoded = spectrum_routes.decode_spectrum_step(good_step().SerializeToString(), INFO)
    assert decoded.operator.operator_norm == 9.0 and decoded.operator.count == 64
    assert decoded.operator.top_values.tolist() == [9.0, 8.0, 7.0]


def _set(field, value):
    def edit(step):
        setattr(step.operator, field, value)

    return edit


def _array(field, values):
    def edit(step):
        getattr(step.operator, field).CopyFrom(arrays.encode_array(np.array(values, np.float32)))

    return edit


def _levels(levels):
    def edit(step):
        del step.operator.quantile_levels[:]
        step.operator.quantile_levels.extend(levels)

    return edit


def _sizes(field, sizes):
    def edit(step):
        del getattr(step.operator, field)[:]
        getattr(step.operator, field).extend(sizes)

    return edit


DAMAGES = {
    "norm_is_not_the_largest_value": (_set("operator_norm", 8.5), "not its largest"),
    "negative_norm": (_set("operator_norm", -1.0), "operator norm of -1"),
    "nan_norm": (_set("operator_norm", math.nan), "operator norm of nan"),
    "rising_top_values": (_array("top_values", [9.0, 9.5, 7.0]), "do not descend"),
    "negative_top_values": (_array("top_values", [9.0, 8.0, -1.0]), "non-negative"),
    "top_values_2d": (_array("top_values", [[9.0, 8.0]]), "expected [k]"),
    "more_values_than_count": (_set("count", 2), "3 top operator singular values of 2"),
    "quantiles_per_level": (_levels([0.0, 1.0]), "3 operator quantiles for 2 levels"),
    "levels_outside": (_levels([0.0, 0.5, 1.5]), "ascending in [0, 1]"),
    "falling_quantiles": (_array("quantiles", [3.0, 0.5, 9.0]), "decrease"),
    "zero_input_size": (_sizes("input_size", [0, 4]), "positive sizes"),
    "stride_of_other_dimension": (_sizes("stride", [1]), "another dimension"),
    "norm_only_with_values": (_set("norm_only", True), "norm-only"),
    "unknown_coverage": (lambda step: setattr(step, "coverage", 7), "unknown coverage 7"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_operator_is_the_steps_error(damage):
    edit, words = DAMAGES[damage]
    with pytest.raises(StepError, match=re.escape(words)):
        spectrum_routes.decode_spectrum_step(changed(edit), INFO)


def test_a_failed_operator_is_served_with_its_error_not_as_damage():
    def failed(step):
        step.operator.Clear()
        step.operator.input_size.extend([4, 4])
        step.operator.operator_norm = math.nan
        step.operator.error = "non-finite weight: no operator spectrum measured"

    decoded = spectrum_routes.decode_spectrum_step(changed(failed), INFO)
    assert decoded.error == "" and decoded.operator.error.startswith("non-finite")
    assert decoded.operator.json()["operator_norm"] == "NaN"


def test_top_k_coverage_holds_at_most_k_values_per_group():
    def top_k(step):
        step.coverage = pb.SPECTRUM_COVERAGE_TOP_K
        step.singular_values.CopyFrom(arrays.encode_array(np.array([[4.0, 3.0]], np.float32)))

    decoded = spectrum_routes.decode_spectrum_step(changed(top_k), INFO)
    assert decoded.coverage == "top_k" and decoded.singular_values.shape == (1, 2)

    def too_many(step):
        top_k(step)
        values = np.arange(5, 0, -1, dtype=np.float32)[None, :]
        step.singular_values.CopyFrom(arrays.encode_array(values))

    with pytest.raises(StepError, match="at most"):
        spectrum_routes.decode_spectrum_step(changed(too_many), INFO)

    # The same two values in a FULL step are too few.
    def full_but_two(step):
        step.singular_values.CopyFrom(arrays.encode_array(np.array([[4.0, 3.0]], np.float32)))

    with pytest.raises(StepError, match="have"):
        spectrum_routes.decode_spectrum_step(changed(full_but_two), INFO)
