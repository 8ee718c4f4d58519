"""deepscope.writer.update_ratios: the Summary protos an update-ratio step is written as."""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import summary_pb2, types_pb2

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer import update_ratios


def _only_value(result: summary_pb2.Summary) -> summary_pb2.Summary.Value:
    assert isinstance(result, summary_pb2.Summary)
    assert len(result.value) == 1
    return result.value[0]


def _step_of(value: summary_pb2.Summary.Value) -> pb.UpdateRatiosStep:
    assert value.tensor.dtype == types_pb2.DT_STRING
    assert len(value.tensor.tensor_shape.dim) == 0  # a scalar
    assert len(value.tensor.string_val) == 1
    return pb.UpdateRatiosStep.FromString(value.tensor.string_val[0])


def test_update_ratios_pb_is_exported_from_the_package():
    assert deepscope.update_ratios_pb is update_ratios.update_ratios_pb


def test_update_ratios_pb_structure_and_values():
    ratios = {"fc1.weight": 1.25e-3, "fc1.bias": 0.1, "fc2.weight": 7.0, "fc2.bias": 1e-9}
    value = _only_value(update_ratios.update_ratios_pb("model", ratios, description="per layer"))
    assert value.tag == "model"

    meta = value.metadata
    assert meta.plugin_data.plugin_name == "deepscope"
    assert meta.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert meta.summary_description == "per layer"
    plugin_data = metadata.parse_plugin_data(meta.plugin_data.content)
    assert plugin_data.version == metadata.SCHEMA_VERSION
    assert plugin_data.kind == pb.UPDATE_RATIOS
    assert list(plugin_data.update_ratios.names) == list(ratios)

    step = _step_of(value)
    decoded = arrays.decode_array(step.ratios)
    assert decoded.dtype == np.float32 and decoded.shape == (4,)
    np.testing.assert_array_equal(decoded, np.array(list(ratios.values()), dtype=np.float32))
    assert list(step.no_update) == []
    assert list(step.names) == []  # same as the metadata's: not repeated
    assert step.names_crc32 == zlib.crc32("\n".join(ratios).encode())


def test_none_marks_no_update():
    ratios = OrderedDict([("a", 1e-3), ("b", None), ("c", 2e-3), ("d", None)])
    step = _step_of(_only_value(update_ratios.update_ratios_pb("t", ratios)))
    assert list(step.no_update) == [1, 3]
    decoded = arrays.decode_array(step.ratios)
    assert decoded[0] == np.float32(1e-3) and decoded[2] == np.float32(2e-3)
    assert np.isnan(decoded[1]) and np.isnan(decoded[3])


def test_non_finite_values_are_kept():
    ratios = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "ok": 0.5}
    step = _step_of(_only_value(update_ratios.update_ratios_pb("t", ratios)))
    decoded = arrays.decode_array(step.ratios)
    assert np.isnan(decoded[0])
    assert decoded[1] == np.inf and decoded[2] == -np.inf and decoded[3] == 0.5
    assert list(step.no_update) == []  # NaN measured is not "no update"


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_values_beyond_float32_become_inf_and_tiny_ones_float32():
    step = _step_of(
        _only_value(update_ratios.update_ratios_pb("t", {"big": 1e300, "small": 1e-300}))
    )
    decoded = arrays.decode_array(step.ratios)
    assert decoded[0] == np.inf
    assert decoded[1] == np.float32(1e-300)  # 0.0


@pytest.mark.parametrize(
    "value, expected",
    [
        (torch.tensor(0.5), 0.5),
        (torch.tensor(2.5e-3, dtype=torch.float64), 2.5e-3),
        (torch.tensor([0.25]), 0.25),
        (torch.tensor(3), 3.0),
        (np.float32(0.125), 0.125),
        (np.float64(1e-4), 1e-4),
        (np.array(6.0), 6.0),
        (np.int64(2), 2.0),
        (1, 1.0),
    ],
    ids=["t0d", "t64", "t1elem", "tint", "np32", "np64", "np0d", "npint", "int"],
)
def test_tensors_and_numpy_scalars_accepted(value, expected):
    step = _step_of(_only_value(update_ratios.update_ratios_pb("t", {"w": value})))
    assert arrays.decode_array(step.ratios).tolist() == [np.float32(expected)]


@pytest.mark.parametrize("bad", [{}, [("a", 1.0)], None, "a=1", 0.5], ids=repr)
def test_empty_or_non_mapping_raises_helpful_value_error(bad):
    with pytest.raises(ValueError, match="non-empty mapping") as caught:
        update_ratios.update_ratios_pb("t", bad)
    assert "None" in str(caught.value)  # it also says how to mark no update


@pytest.mark.parametrize(
    "bad",
    ["abc", [1.0, 2.0], {"x": 1}, object(), np.array([1.0, 2.0]), torch.tensor([1.0, 2.0])],
    ids=["str", "list", "dict", "object", "np-vector", "tensor-vector"],
)
def test_non_numeric_value_raises_value_error_naming_the_parameter(bad):
    with pytest.raises(ValueError) as caught:
        update_ratios.update_ratios_pb("t", {"ok": 1.0, "fc.weight": bad})
    message = str(caught.value)
    assert "'fc.weight'" in message
    assert "must be a number, None (no update) or deepscope.ZERO_WEIGHT" in message


def test_update_ratios_step_duplicate_names_raise():
    with pytest.raises(ValueError, match="unique"):
        update_ratios.update_ratios_step(["a", "b", "a"], np.ones(3))


def test_mapping_keys_that_stringify_alike_raise_as_duplicates():
    with pytest.raises(ValueError, match="unique"):
        update_ratios.update_ratios_pb("t", {1: 0.1, "1": 0.2})


def test_update_ratios_step_length_mismatch_raises():
    with pytest.raises(ValueError, match=r"2 parameter names need values of shape \[2\]"):
        update_ratios.update_ratios_step(["a", "b"], np.ones(3))


@pytest.mark.parametrize("index", [-1, 3, 100])
def test_update_ratios_step_no_update_index_out_of_range_raises(index):
    with pytest.raises(ValueError, match="out of range"):
        update_ratios.update_ratios_step(["a", "b", "c"], np.ones(3), no_update=[index])


def test_update_ratios_step_no_update_overrides_value_and_is_sorted_unique():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    step = update_ratios.update_ratios_step(["a", "b", "c", "d"], values, no_update=[3, 1, 3])
    assert list(step.no_update) == [1, 3]
    decoded = arrays.decode_array(step.ratios)
    assert decoded[0] == 1.0 and decoded[2] == 3.0
    assert np.isnan(decoded[1]) and np.isnan(decoded[3])
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0]  # the caller's array is left alone


def test_update_ratios_step_names_only_when_they_differ_from_the_series():
    same = update_ratios.update_ratios_step(["a", "b"], [1.0, 2.0], series_names=["a", "b"])
    assert list(same.names) == []
    reordered = update_ratios.update_ratios_step(["b", "a"], [1.0, 2.0], series_names=["a", "b"])
    assert list(reordered.names) == ["b", "a"]
    other = update_ratios.update_ratios_step(["a", "c"], [1.0, 2.0], series_names=("a", "b"))
    assert list(other.names) == ["a", "c"]
    assert other.names_crc32 == zlib.crc32(b"a\nc")


def test_update_ratios_summary_without_metadata():
    step = update_ratios.update_ratios_step(["a"], [0.5])
    value = _only_value(update_ratios.update_ratios_summary("t", step, metadata_names=None))
    assert not value.HasField("metadata")
    assert _step_of(value) == step


def test_zero_weight_marks_are_stored_apart_from_no_update_as_nan():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    step = update_ratios.update_ratios_step(
        ["a", "b", "c", "d"], values, no_update=[1], zero_weight=[3, 0, 3]
    )
    assert list(step.zero_weight) == [0, 3]
    assert list(step.no_update) == [1]
    decoded = arrays.decode_array(step.ratios)
    assert np.isnan(decoded[[0, 1, 3]]).all()
    assert decoded[2] == 3.0  # exactly representable, round-tripped through bytes


@pytest.mark.parametrize("index", [-1, 4])
def test_zero_weight_index_out_of_range_raises(index):
    with pytest.raises(ValueError, match="zero_weight index out of range"):
        update_ratios.update_ratios_step(["a", "b", "c", "d"], np.ones(4), zero_weight=[index])


def test_a_value_marked_both_no_update_and_zero_weight_raises():
    with pytest.raises(ValueError, match="both no_update and zero_weight"):
        update_ratios.update_ratios_step(["a", "b"], np.ones(2), no_update=[1], zero_weight=[1])


def test_mapping_value_zero_weight_marks_the_parameter():
    assert repr(update_ratios.ZERO_WEIGHT) == "deepscope.ZERO_WEIGHT"
    pb_summary = update_ratios.update_ratios_pb(
        "t", {"w": 1e-3, "b": update_ratios.ZERO_WEIGHT, "frozen": None}
    )
    step = _step_of(_only_value(pb_summary))
    assert list(step.zero_weight) == [1]
    assert list(step.no_update) == [2]
    decoded = arrays.decode_array(step.ratios)
    assert decoded[0] == np.float32(1e-3)
    assert np.isnan(decoded[1:]).all()
