"""The layer-statistics writer: `layer_statistics_pb` and `SummaryWriter.add_layer_statistics`.

What is written is read back from the summary (or the event files) and compared
with the input: numpy's float32 of each value (torch's exact float64 of
float16/bfloat16 tensors first), NaN where a statistic is not given, int64
counts, eigenvalues flat with their counts per row.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.layer_statistics import (
    ACTIVATION_STATISTICS,
    PARAMETER_STATISTICS,
    ActivationRows,
    ParameterRows,
    layer_statistics_pb,
    layer_statistics_step,
)

EPS32 = float(np.finfo(np.float32).eps)


def _step(summary) -> pb.LayerStatisticsStep:
    return pb.LayerStatisticsStep.FromString(summary.value[0].tensor.string_val[0])


def _rows(rng, layers: int, statistics=ACTIVATION_STATISTICS) -> np.ndarray:
    return rng.normal(size=(layers, len(statistics))).astype(np.float64)


def test_activation_and_parameter_rows_round_trip_as_float32_and_int64():
    rng = np.random.default_rng(0)
    values = _rows(rng, 3)
    values[0, 2] = np.nan  # not measured
    values[1, 3] = np.inf  # measured, kept
    eigen = [np.array([3.0, 1.5, 0.25]), None, np.array([2.0, 0.0])]
    params = rng.lognormal(size=(2, 3))
    summary = layer_statistics_pb(
        "layer_statistics/activations",
        ActivationRows(
            names=["conv1", "relu", "fc"],
            values=values,
            types=["Conv2d", "ReLU", "Linear"],
            counts=[4096, 4096, 320],
            channels=[3, 3, 2],
            dead_channels=[0, 1, 0],
            eigenvalues=eigen,
            covariance_samples=[512, 0, 32],
        ),
        ParameterRows(["conv1.weight", "fc.weight"], params),
        seconds=0.25,
    )
    step = _step(summary)
    assert list(step.layers) == ["conv1", "relu", "fc"]
    assert list(step.layer_types) == ["Conv2d", "ReLU", "Linear"]
    assert list(step.activation_statistics) == list(ACTIVATION_STATISTICS)
    stored = arrays.decode_array(step.activations)
    assert stored.dtype == np.float32 and stored.shape == (3, len(ACTIVATION_STATISTICS))
    np.testing.assert_array_equal(stored, values.astype(np.float32))  # NaN and inf kept
    for field, want in (
        ("counts", [4096, 4096, 320]),
        ("channels", [3, 3, 2]),
        ("dead_channels", [0, 1, 0]),
        ("eigenvalue_counts", [3, 0, 2]),
        ("covariance_samples", [512, 0, 32]),
    ):
        array = arrays.decode_array(getattr(step, field))
        assert array.dtype == np.int64 and array.tolist() == want, field
    np.testing.assert_array_equal(
        arrays.decode_array(step.eigenvalues), np.float32([3.0, 1.5, 0.25, 2.0, 0.0])
    )
    assert list(step.parameters) == ["conv1.weight", "fc.weight"]
    assert list(step.parameter_statistics) == list(PARAMETER_STATISTICS)
    np.testing.assert_allclose(
        arrays.decode_array(step.parameter_values), params, rtol=EPS32, atol=0
    )
    assert math.isclose(step.seconds, 0.25)


def test_the_metadata_holds_the_kind_and_the_series_facts():
    summary = layer_statistics_pb(
        "x", {"a": {"mean": 1.0}}, on="probe", variance_threshold=0.9, saturation_tolerance=0.05
    )
    value = summary.value[0]
    data = metadata.parse_plugin_data(value.metadata.plugin_data.content)
    assert data.kind == pb.LAYER_STATISTICS
    info = data.layer_statistics
    assert info.on == "probe"
    assert math.isclose(info.variance_threshold, 0.9)
    assert math.isclose(info.saturation_tolerance, 0.05)
    assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME


def test_a_part_may_come_alone():
    only_params = _step(layer_statistics_pb("p", parameters={"w": {"grad_norm": 0.5}}))
    assert list(only_params.layers) == [] and list(only_params.parameters) == ["w"]
    assert list(only_params.parameter_statistics) == ["grad_norm"]
    assert not only_params.activations.data
    only_acts = _step(layer_statistics_pb("a", {"fc": {"std": 2.0}}))
    assert list(only_acts.parameters) == [] and not only_acts.parameter_values.data


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_tensors_of_any_float_dtype_are_stored_as_their_float32(dtype):
    torch.manual_seed(0)
    values = (torch.randn(4, 3) * 100).to(dtype)
    values[1, 1] = float("nan")
    values[2, 0] = float("-inf")
    summary = layer_statistics_pb(
        "x",
        ActivationRows([f"l{i}" for i in range(4)], values, statistics=("mean", "std", "max_abs")),
        ParameterRows(["w"], torch.tensor([[1.0, 2.0, 0.5]], dtype=dtype)),
    )
    step = _step(summary)
    # The reference: the tensor's exact float64 values (every float16/bfloat16 is a
    # float64), rounded to float32 by numpy.
    want = values.to(torch.float64).numpy().astype(np.float32)
    np.testing.assert_array_equal(arrays.decode_array(step.activations), want)
    np.testing.assert_array_equal(
        arrays.decode_array(step.parameter_values), np.float32([[1.0, 2.0, 0.5]])
    )


def test_a_users_mapping_gives_canonical_columns_and_nan_where_not_given():
    summary = layer_statistics_pb(
        "x",
        {
            "fc1": {"std": 1.5, "mean": 0.25, "type": "Linear", "count": 64, "channels": 8},
            "fc1:1": {"mean": np.float32(-1.0), "dead_channels": 2, "channels": 8},
            "act": {
                "zero_fraction": torch.tensor(0.5),
                "eigenvalues": torch.tensor([2.0, 1.0]),
                "samples": 16,
            },
        },
        {"fc1.weight": {"weight_norm": 3.0, "grad_norm": 0.03}},
    )
    step = _step(summary)
    assert list(step.activation_statistics) == ["mean", "std", "zero_fraction"]
    np.testing.assert_array_equal(
        arrays.decode_array(step.activations),
        np.float32([[0.25, 1.5, np.nan], [-1.0, np.nan, np.nan], [np.nan, np.nan, 0.5]]),
    )
    assert list(step.layer_types) == ["Linear", "", ""]
    assert arrays.decode_array(step.counts).tolist() == [64, 0, 0]
    assert arrays.decode_array(step.channels).tolist() == [8, 8, 0]
    assert arrays.decode_array(step.dead_channels).tolist() == [0, 2, 0]
    assert arrays.decode_array(step.eigenvalue_counts).tolist() == [0, 0, 2]
    assert arrays.decode_array(step.covariance_samples).tolist() == [0, 0, 16]
    assert list(step.parameter_statistics) == ["grad_norm", "weight_norm"]
    np.testing.assert_allclose(
        arrays.decode_array(step.parameter_values), [[0.03, 3.0]], rtol=EPS32
    )


def test_tensors_are_copied_to_the_host_once_per_part_not_one_item_each(monkeypatch):
    layers = 50
    values = torch.rand(layers, len(ACTIVATION_STATISTICS))
    counts = torch.full((layers,), 1024)
    channels = torch.full((layers,), 16)
    dead = torch.zeros(layers, dtype=torch.int64)
    eigen = [torch.linspace(2.0, 0.0, 16) for _ in range(layers)]

    def refuse(self, *args, **kwargs):
        raise AssertionError("a per-value host copy (.item() / float() / .tolist())")

    copies = []
    real_cpu = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        copies.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__float__", refuse)
    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    rows = ActivationRows(
        [f"l{i}" for i in range(layers)],
        values,
        counts=counts,
        channels=channels,
        dead_channels=dead,
        eigenvalues=eigen,
    )
    step = layer_statistics_step(rows, ParameterRows(["w"], torch.ones(1, 3)))
    total = values.numel() + 3 * layers + 16 * layers
    assert copies == [(total,), (3,)]  # one copy for the activation part, one for parameters
    np.testing.assert_array_equal(arrays.decode_array(step.activations), values.numpy())
    np.testing.assert_array_equal(
        arrays.decode_array(step.eigenvalues), torch.cat(eigen).numpy().astype(np.float32)
    )


@pytest.mark.parametrize(
    "activations, parameters, error, match",
    [
        ({"a": {"meen": 1.0}}, None, ValueError, r"unknown statistic 'meen' \(did you mean 'mean'"),
        ({"a": {"meen": 1.0}}, None, ValueError, "the known ones: mean, std, rms"),
        (None, {"w": {"grad": 1.0}}, ValueError, "the known ones: grad_norm, weight_norm"),
        ({}, None, ValueError, "non-empty mapping of row name"),
        ({"": {"mean": 1.0}}, None, ValueError, "non-empty strings"),
        ({"a": 1.0}, None, TypeError, "its statistics must be a mapping"),
        ({"a": {"mean": "high"}}, None, TypeError, "activation 'a', mean must be a number"),
        ({"a": {"mean": torch.ones(2)}}, None, TypeError, "activation 'a', mean"),
        ({"a": {"type": "ReLU"}}, None, ValueError, "give no statistic"),
        ({"a": {"mean": 1.0, "type": 3}}, None, TypeError, "type must be a module class name"),
        (None, None, ValueError, "needs activations, parameters or both"),
        ([("a", 1.0)], None, TypeError, "ActivationRows or a mapping"),
    ],
    ids=[
        "close match",
        "known listed",
        "parameter statistic",
        "empty",
        "empty name",
        "not a mapping",
        "string value",
        "tensor of 2",
        "no statistic",
        "type not a string",
        "neither part",
        "a list",
    ],
)
def test_bad_mappings_are_refused_saying_what_to_do(activations, parameters, error, match):
    with pytest.raises(error, match=match):
        layer_statistics_pb("x", activations, parameters)


def test_bad_rows_are_refused_saying_what_to_do():
    ones = np.ones((2, len(ACTIVATION_STATISTICS)))
    with pytest.raises(ValueError, match="'a' appears twice"):
        layer_statistics_step(ActivationRows(["a", "a"], ones))
    with pytest.raises(ValueError, match=r"shape \[2, 11\] \(rows × statistics\), got \[2, 3\]"):
        layer_statistics_step(ActivationRows(["a", "b"], np.ones((2, 3))))
    with pytest.raises(ValueError, match="unknown activation statistic 'grad_norm'"):
        layer_statistics_step(ActivationRows(["a"], np.ones((1, 1)), statistics=["grad_norm"]))
    with pytest.raises(ValueError, match="name a column twice"):
        layer_statistics_step(ActivationRows(["a"], np.ones((1, 2)), statistics=["std", "std"]))
    with pytest.raises(ValueError, match="'b' has 3 dead channels of 2"):
        layer_statistics_step(
            ActivationRows(["a", "b"], ones, channels=[2, 2], dead_channels=[0, 3])
        )
    with pytest.raises(ValueError, match=r"counts must have shape \[2\]"):
        layer_statistics_step(ActivationRows(["a", "b"], ones, counts=[1, 2, 3]))
    with pytest.raises(ValueError, match="counts must be >= 0"):
        layer_statistics_step(ActivationRows(["a", "b"], ones, counts=[1, -2]))
    with pytest.raises(ValueError, match="whole numbers"):
        layer_statistics_step(ActivationRows(["a", "b"], ones, channels=[1.5, 2]))
    with pytest.raises(ValueError, match="one entry per row"):
        layer_statistics_step(ActivationRows(["a", "b"], ones, eigenvalues=[np.ones(2)]))
    with pytest.raises(ValueError, match="eigenvalues of row 1 must be >= 0"):
        layer_statistics_step(
            ActivationRows(["a", "b"], ones, eigenvalues=[None, np.array([1.0, -0.5])])
        )
    with pytest.raises(ValueError, match="eigenvalues of row 0 must be a 1-D array"):
        layer_statistics_step(ActivationRows(["a", "b"], ones, eigenvalues=[np.ones((2, 2)), None]))
    with pytest.raises(ValueError, match="types must be 2 strings"):
        layer_statistics_step(ActivationRows(["a", "b"], ones, types=["ReLU"]))
    with pytest.raises(TypeError, match="must be real numbers"):
        layer_statistics_step(ActivationRows(["a"], np.array([["x"] * 11])))
    with pytest.raises(TypeError, match="dtype torch.complex64"):
        layer_statistics_step(
            parameters=ParameterRows(["w"], torch.ones(1, 3, dtype=torch.complex64))
        )
    with pytest.raises(ValueError, match="seconds must be a finite number"):
        layer_statistics_step(parameters=ParameterRows(["w"], np.ones((1, 3))), seconds=math.nan)


def test_bad_options_are_refused():
    rows = {"a": {"mean": 1.0}}
    with pytest.raises(ValueError, match="on must be 'train' .* or 'probe'"):
        layer_statistics_pb("x", rows, on="eval")
    with pytest.raises(ValueError, match=r"variance_threshold must be in \(0, 1\]"):
        layer_statistics_pb("x", rows, variance_threshold=99)
    with pytest.raises(ValueError, match="saturation_tolerance must be a finite number >= 0"):
        layer_statistics_pb("x", rows, saturation_tolerance=-0.1)
    with pytest.raises(TypeError, match="variance_threshold must be a real number"):
        layer_statistics_pb("x", rows, variance_threshold="0.99")


def test_the_builder_needs_no_torch():
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from deepscope.writer.layer_statistics import ActivationRows, layer_statistics_pb\n"
        "s = layer_statistics_pb('x', {'a': {'mean': 0.5}}, {'w': {'grad_norm': 1.0}})\n"
        "s = layer_statistics_pb('x', ActivationRows(['a'], np.ones((1, 11)), counts=[3]))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(s.value))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_add_layer_statistics_writes_metadata_on_the_first_event_only(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    tag = "layer_statistics/activations"
    writer.add_layer_statistics(tag, {"fc": {"mean": 0.5}}, global_step=0, walltime=100.0)
    writer.add_layer_statistics(
        tag, {"fc": {"mean": 0.25}, "fc2": {"std": 2.0}}, global_step=5, walltime=101.5
    )
    writer.add_layer_statistics(
        "layer_statistics/parameters", parameters={"w": {"grad_norm": 1.0}}, global_step=5
    )
    writer.close()
    written = read_values(tmp_path, tag)
    assert [v.step for v in written] == [0, 5]
    assert [v.wall_time for v in written] == pytest.approx([100.0, 101.5], abs=1e-6)
    assert [v.has_metadata for v in written] == [True, False]
    step = pb.LayerStatisticsStep.FromString(written[1].value.tensor.string_val[0])
    assert list(step.layers) == ["fc", "fc2"]
    (params,) = read_values(tmp_path, "layer_statistics/parameters")
    assert params.has_metadata


def test_other_metadata_on_a_later_step_is_ignored_with_one_warning(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    rows = {"a": {"mean": 1.0}}
    writer.add_layer_statistics("x", rows, global_step=0, on="probe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.add_layer_statistics("x", rows, global_step=1, on="probe")  # the same
        writer.add_layer_statistics("x", rows, global_step=2)  # none given: the first's hold
        assert caught == []
        writer.add_layer_statistics("x", rows, global_step=3, on="probe", variance_threshold=0.9)
        writer.add_layer_statistics("x", rows, global_step=4, on="probe", variance_threshold=0.9)
    writer.close()
    (warning,) = caught
    assert warning.category is RuntimeWarning
    assert "kept from the tag's first event ('probe', 0.99, 0.01)" in str(warning.message)
    assert warning.filename == __file__
    assert [v.has_metadata for v in read_values(tmp_path, "x")] == [True] + [False] * 4


def test_bad_rows_write_nothing(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.raises(ValueError, match="meen"):
        writer.add_layer_statistics("x", {"a": {"meen": 1.0}}, global_step=0)
    writer.add_layer_statistics("x", {"a": {"mean": 1.0}}, global_step=1)
    writer.close()
    (only,) = read_values(tmp_path, "x")
    assert only.step == 1 and only.has_metadata  # the refused call claimed no metadata


def test_counts_that_are_zero_for_every_row_are_left_out():
    rows = ActivationRows(["a", "b"], np.ones((2, 11)), counts=[10, 20], channels=[4, 4])
    step = layer_statistics_step(rows)
    assert arrays.decode_array(step.counts).tolist() == [10, 20]
    assert arrays.decode_array(step.channels).tolist() == [4, 4]
    for field in ("dead_channels", "eigenvalue_counts", "covariance_samples", "eigenvalues"):
        assert not step.HasField(field), field
    smaller = len(step.SerializeToString())
    with_zeros = ActivationRows(
        ["a", "b"], np.ones((2, 11)), counts=[10, 20], channels=[4, 4], dead_channels=[0, 1]
    )
    assert len(layer_statistics_step(with_zeros).SerializeToString()) > smaller


def test_parameters_without_a_gradient_are_listed_and_a_nan_gradient_is_kept():
    nan = math.nan
    values = np.array([[0.5, 2.0, 0.25], [nan, 1.5, nan], [nan, 3.0, nan], [nan, 0.5, nan]])
    names = ["fc.weight", "fc.bias", "frozen.weight", "head.weight"]
    # fc.bias and frozen.weight had no gradient (by name and by index, in any order);
    # head.weight's NaN gradient norm is a measurement (a non-finite gradient).
    rows = ParameterRows(names, torch.tensor(values), without_gradient=[2, "fc.bias"])
    step = layer_statistics_step(parameters=rows)
    assert list(step.without_gradient) == [1, 2]  # ascending indices into `parameters`
    np.testing.assert_array_equal(arrays.decode_array(step.parameter_values), np.float32(values))
    assert (
        list(layer_statistics_step(parameters=ParameterRows(names, values)).without_gradient) == []
    )
    # A part without gradient columns may still say which parameters had none.
    weights = ParameterRows(names, values[:, 1:2], ["weight_norm"], without_gradient=[0])
    assert list(layer_statistics_step(parameters=weights).without_gradient) == [0]


def test_a_mapping_says_no_gradient_with_none_and_a_nan_gradient_with_nan():
    nan = math.nan
    step = layer_statistics_step(
        parameters={
            "fc.weight": {"grad_norm": 0.5, "weight_norm": 2.0, "grad_to_weight": 0.25},
            "fc.bias": {"grad_norm": None, "weight_norm": 1.2, "grad_to_weight": None},
            "head.weight": {"grad_norm": nan, "weight_norm": 3.0, "grad_to_weight": nan},
            "frozen.weight": {"weight_norm": torch.tensor(4.0)},  # gradient statistics left out
        }
    )
    assert list(step.parameters) == ["fc.weight", "fc.bias", "head.weight", "frozen.weight"]
    assert list(step.without_gradient) == [1, 3]
    np.testing.assert_array_equal(
        arrays.decode_array(step.parameter_values),
        np.float32([[0.5, 2.0, 0.25], [nan, 1.2, nan], [nan, 3.0, nan], [nan, 4.0, nan]]),
    )
    only_weights = layer_statistics_step(parameters={"w": {"weight_norm": 1.0}})
    assert list(only_weights.without_gradient) == []  # no gradient column: nothing to say


@pytest.mark.parametrize(
    "parameters, error, match",
    [
        (
            {"w": {"grad_norm": 0.5, "weight_norm": 1.0, "grad_to_weight": None}},
            ValueError,
            "'w' gives grad_norm but not grad_to_weight",
        ),
        (
            {"w": {"grad_norm": 0.5, "weight_norm": 1.0}, "b": {"grad_norm": 0.5}},
            ValueError,
            "'b' gives no weight_norm",
        ),
        (
            {"w": {"grad_norm": None, "weight_norm": None}},
            ValueError,
            "'w' gives no weight_norm",
        ),
        (ParameterRows(["w", "b"], np.ones((2, 3)), without_gradient=[2]), ValueError, "index 2"),
        (
            ParameterRows(["fc.weight", "b"], np.ones((2, 3)), without_gradient=["fc.wieght"]),
            ValueError,
            r"'fc.wieght', which is not a parameter of this step \(did you mean 'fc.weight'",
        ),
        (
            ParameterRows(["w", "b"], np.full((2, 3), np.nan), without_gradient=[0, "w"]),
            ValueError,
            "lists parameter 'w' twice",
        ),
        (ParameterRows(["w"], np.ones((1, 3)), without_gradient="w"), TypeError, r"\['w'\]"),
        (ParameterRows(["w"], np.ones((1, 3)), without_gradient=[True]), TypeError, "True"),
        (
            ParameterRows(
                ["w", "b"], np.float32([[np.nan, 1, 0.5], [1, 1, 1]]), without_gradient=[0]
            ),
            ValueError,
            "'w' is listed in without_gradient but has grad_to_weight 0.5",
        ),
    ],
    ids=[
        "some gradient statistics",
        "no weight norm",
        "none weight norm",
        "index out of range",
        "unknown name",
        "twice",
        "a string",
        "a bool",
        "a measured gradient",
    ],
)
def test_bad_without_gradient_is_refused_saying_what_to_do(parameters, error, match):
    with pytest.raises(error, match=match):
        layer_statistics_step(parameters=parameters)
