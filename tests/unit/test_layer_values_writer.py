"""The layer-values writer: `layer_values_pb` and `SummaryWriter.add_layer_values`.

What is written is read back from the event files and compared with the input
(numpy float32 of each value, NaN where not measured).
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import summary_pb2, types_pb2

import deepscope
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.layer_values import layer_values_pb, layer_values_step

EPS32 = float(np.finfo(np.float32).eps)


def _step(value: summary_pb2.Summary.Value) -> tuple[list[str], np.ndarray, list[int]]:
    step = pb.LayerValuesStep.FromString(value.tensor.string_val[0])
    return list(step.names), arrays.decode_array(step.values), list(step.not_measured)


def _reference(values: dict) -> np.ndarray:
    """float32 of each value (NaN for None), computed apart from the writer."""
    return np.array(
        [math.nan if v is None else float(np.float64(v)) for v in values.values()],
        dtype=np.float64,
    ).astype(np.float32)


def test_the_builder_round_trips_numbers_none_and_non_finite_values():
    given = {
        "conv1": 0.125,
        "conv2": 3e-7,
        "fc1": None,
        "fc2": math.nan,
        "fc3": math.inf,
        "fc4": -2.5,
        "head": 7,
    }
    summary = layer_values_pb("grad_norm", given, quantity="gradient norm", unit="", scale="log")
    (value,) = summary.value
    assert value.tag == "grad_norm"
    assert value.tensor.dtype == types_pb2.DT_STRING  # a scalar
    assert list(value.tensor.tensor_shape.dim) == []
    names, values, not_measured = _step(value)
    assert names == list(given)
    assert values.dtype == np.float32 and values.shape == (len(given),)
    np.testing.assert_allclose(values, _reference(given), rtol=EPS32, equal_nan=True)
    assert np.isposinf(values[4])
    assert not_measured == [2]


def test_the_metadata_holds_the_kind_quantity_unit_and_scale():
    summary = layer_values_pb(
        "dead", {"fc1": 0.5}, quantity="dead units", unit="fraction", scale="linear",
        description="ReLU units never active in the batch",
    )  # fmt: skip
    meta = summary.value[0].metadata
    assert meta.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert meta.plugin_data.plugin_name == "deepscope"
    assert meta.summary_description == "ReLU units never active in the batch"
    data = pb.PluginData.FromString(meta.plugin_data.content)
    assert data.kind == pb.LAYER_VALUES
    assert data.WhichOneof("details") == "layer_values"
    assert data.layer_values.quantity == "dead units"
    assert data.layer_values.unit == "fraction"
    assert data.layer_values.scale == pb.LAYER_VALUES_SCALE_LINEAR
    default = pb.PluginData.FromString(
        layer_values_pb("x", {"a": 1.0}).value[0].metadata.plugin_data.content
    )
    assert default.layer_values.scale == pb.LAYER_VALUES_SCALE_LOG


def test_tensors_and_numpy_values_of_any_real_dtype_are_read_as_float32():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    given = {
        "norm64": weight.norm(),  # a 0-d float64 tensor that requires grad
        "half": torch.tensor(0.1, dtype=torch.float16),
        "count": torch.tensor(12),
        "one": torch.tensor([0.75]),  # one element, shape [1]
        "np0d": np.array(2.5e-3),
        "npscalar": np.float64(1e-12),
        "npint": np.int64(3),
    }
    reference = np.array(
        [
            np.linalg.norm(weight.detach().numpy()),
            np.float16(0.1),
            12,
            0.75,
            2.5e-3,
            1e-12,
            3,
        ]
    ).astype(np.float32)
    _, values, not_measured = _step(layer_values_pb("x", given).value[0])
    np.testing.assert_allclose(values, reference, rtol=EPS32)
    assert not_measured == []


def test_values_beyond_float32_are_stored_as_infinities_as_measured():
    big = torch.tensor(1e300, dtype=torch.float64)
    given = {"a": 1e300, "b": -1e300, "c": big, "d": 10**400, "e": -(10**400), "f": 3e38}
    _, values, _ = _step(layer_values_pb("x", given).value[0])
    assert np.isposinf(values[[0, 2, 3]]).all() and np.isneginf(values[[1, 4]]).all()
    assert math.isclose(values[5], 3e38, rel_tol=EPS32)  # within float32: kept


def test_tensors_are_copied_to_the_host_together_not_one_item_each(monkeypatch):
    tensors = {f"layer{i}": torch.tensor(float(i) / 7) for i in range(20)}

    def refuse(self, *args, **kwargs):
        raise AssertionError("a per-value host copy (.item() / float())")

    copies = []
    real_cpu = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        copies.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__float__", refuse)
    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    _, values, _ = _step(layer_values_pb("x", tensors).value[0])
    assert copies == [(20,)]  # one stacked copy for the one device
    np.testing.assert_allclose(values, np.arange(20, dtype=np.float32) / 7, rtol=EPS32)


@pytest.mark.parametrize(
    "value, shown",
    [
        ("0.5", "'0.5'"),
        (torch.ones(3), "Tensor of shape [3]"),
        (np.ones((2, 2)), "ndarray of shape [2, 2]"),
        (torch.tensor(1 + 2j), "Tensor of shape []"),
        (True, "True"),
        (torch.tensor(True), "Tensor of shape []"),
        ([0.5], "[0.5]"),
        (object(), "object"),
    ],
    ids=["str", "tensor[3]", "ndarray[2,2]", "complex", "bool", "bool tensor", "list", "object"],
)
def test_a_value_that_is_not_one_real_number_is_a_type_error_naming_the_layer(value, shown):
    with pytest.raises(TypeError, match="value for layer 'fc2' must be a number") as raised:
        layer_values_pb("x", {"fc1": 1.0, "fc2": value})
    assert shown in str(raised.value)


@pytest.mark.parametrize(
    "values, error, match",
    [
        ({}, ValueError, "non-empty mapping of layer name to number"),
        ([("fc1", 1.0)], ValueError, "non-empty mapping"),
        ({"": 1.0}, ValueError, "non-empty strings"),
        ({3: 1.0}, TypeError, "layer names must be strings, got 3"),
    ],
    ids=["empty", "not a mapping", "empty name", "int name"],
)
def test_bad_names_are_refused_with_what_to_do(values, error, match):
    with pytest.raises(error, match=match):
        layer_values_pb("x", values)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="scale must be 'log' .* or 'linear'"):
        layer_values_pb("x", {"a": 1.0}, scale="logarithmic")
    with pytest.raises(TypeError, match="quantity must be a string"):
        layer_values_pb("x", {"a": 1.0}, quantity=3)
    with pytest.raises(TypeError, match="unit must be a string"):
        layer_values_pb("x", {"a": 1.0}, unit=None)


def test_the_step_builder_checks_lengths_indices_and_names():
    with pytest.raises(ValueError, match="2 layer names need 2 values"):
        layer_values_step(["a", "b"], np.ones(3))
    with pytest.raises(ValueError, match="not_measured index out of range"):
        layer_values_step(["a", "b"], np.ones(2), not_measured=[2])
    with pytest.raises(ValueError, match="unique"):
        layer_values_step(["a", "a"], np.ones(2))
    with pytest.raises(ValueError, match="at least one layer name"):
        layer_values_step([], np.ones(0))
    step = layer_values_step(["a", "b"], np.array([1.0, 2.0]), not_measured=[1])
    values = arrays.decode_array(step.values)
    assert math.isclose(values[0], 1.0) and math.isnan(values[1])


def test_the_builder_needs_no_torch():
    script = (
        "import sys\n"
        "from deepscope.writer.layer_values import layer_values_pb\n"
        "s = layer_values_pb('x', {'a': 0.5, 'b': None}, quantity='q')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(s.value))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_add_layer_values_writes_metadata_on_the_first_event_only(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_layer_values("grad_norm", {"fc1": 0.5, "fc2": 0.25}, 0, 100.0, quantity="norm")
    writer.add_layer_values("grad_norm", {"fc2": 0.125, "fc3": None}, 5, 101.5, quantity="norm")
    writer.add_layer_values("other", {"fc1": 1.0}, 5, scale="linear")
    writer.close()
    written = read_values(tmp_path, "grad_norm")
    assert [v.step for v in written] == [0, 5]
    assert [v.wall_time for v in written] == pytest.approx([100.0, 101.5], abs=1e-6)
    assert [v.has_metadata for v in written] == [True, False]
    names, values, not_measured = _step(written[1].value)
    assert names == ["fc2", "fc3"] and not_measured == [1]
    np.testing.assert_allclose(values, [0.125, np.nan], rtol=EPS32, equal_nan=True)
    (other,) = read_values(tmp_path, "other")
    assert other.has_metadata
    info = pb.PluginData.FromString(other.value.metadata.plugin_data.content).layer_values
    assert info.scale == pb.LAYER_VALUES_SCALE_LINEAR


def test_other_metadata_on_a_later_step_is_ignored_with_one_warning(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_layer_values("x", {"a": 1.0}, 0, quantity="norm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.add_layer_values("x", {"a": 2.0}, 1, quantity="norm")  # the same: no warning
        writer.add_layer_values("x", {"a": 2.5}, 1)  # none given: the first event's hold
        assert caught == []
        writer.add_layer_values("x", {"a": 3.0}, 2, quantity="mean", scale="linear")
        writer.add_layer_values("x", {"a": 4.0}, 3, quantity="mean", scale="linear")
    writer.close()
    (warning,) = caught
    assert warning.category is RuntimeWarning
    assert "kept from the tag's first event (quantity 'norm'" in str(warning.message)
    assert "scale 'linear'" in str(warning.message)
    assert warning.filename == __file__
    assert [v.has_metadata for v in read_values(tmp_path, "x")] == [True] + [False] * 4


def test_bad_values_write_nothing(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.raises(TypeError, match="'b'"):
        writer.add_layer_values("x", {"a": 1.0, "b": "high"}, 0)
    writer.add_layer_values("x", {"a": 1.0}, 1)
    writer.close()
    (only,) = read_values(tmp_path, "x")
    assert only.step == 1 and only.has_metadata  # the refused call claimed no metadata
