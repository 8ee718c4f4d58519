"""`filters_pb`, `feature_maps_pb`, `add_filters` and `add_feature_maps`.

A stored step is checked against numpy: its values are `numpy.float16(input)` bit for bit
(float32 where float16 would overflow), the cap keeps the first out-channels / channels,
RGB tiles come from 3-input-channel weights, and the metadata rides on a tag's first event.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.filters import feature_maps_pb, filters_pb
from tests import filters_data as data


def step_of(summary) -> pb.FiltersStep:
    value = summary.value[0]
    return pb.FiltersStep.FromString(value.tensor.string_val[0])


def info_of(summary) -> pb.PluginData:
    return metadata.parse_plugin_data(summary.value[0].metadata.plugin_data.content)


def test_weights_are_stored_as_float16_bit_for_bit():
    weight = data.weight(data.WEIGHT_SHAPE, 1)
    step = step_of(filters_pb("w", weight, layer="conv2"))
    stored = arrays.decode_array(step.values)
    assert stored.dtype == np.float16
    assert stored.shape == data.WEIGHT_SHAPE
    np.testing.assert_array_equal(stored.view(np.uint16), weight.astype(np.float16).view(np.uint16))
    # One rounding: relative error at most half a float16 ulp.
    eps = float(np.finfo(np.float16).eps)
    assert np.all(np.abs(stored.astype(np.float64) - weight) <= eps / 2 * np.abs(weight) + 1e-12)
    assert step.total == data.WEIGHT_SHAPE[0] and not step.rgb and step.non_finite == 0
    plugin = info_of(filters_pb("w", weight, layer="conv2"))
    assert plugin.kind == pb.FILTERS
    assert plugin.filters.source == pb.FILTERS_SOURCE_WEIGHTS
    assert plugin.filters.layer == "conv2"
    assert plugin.filters.scale == pb.FILTERS_SCALE_PER_TILE


def test_a_conv_module_and_a_cuda_free_tensor_give_the_same_step():
    conv = torch.nn.Conv2d(3, 8, 5)
    from_module = step_of(filters_pb("w", conv))
    from_tensor = step_of(filters_pb("w", conv.weight.detach().numpy()))
    assert from_module.values == from_tensor.values
    assert from_module.rgb  # 3 input channels: RGB by default
    assert not step_of(filters_pb("w", conv, rgb=False)).rgb


def test_float32_is_kept_where_float16_would_overflow_and_non_finite_values_are_counted():
    weight = data.weight(data.WEIGHT_SHAPE, 2)
    weight[0, 0, 0, 0] = 1e6
    weight[1, 1, 1, 1] = np.nan
    step = step_of(filters_pb("w", weight))
    stored = arrays.decode_array(step.values)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, weight)
    assert step.non_finite == 1


@pytest.mark.parametrize(
    ("shape", "max_tiles", "kept"),
    [((10, 2, 3, 3), 7, 3), ((10, 2, 3, 3), 1, 1), ((10, 3, 3, 3), 4, 4), ((10, 2, 3, 3), 100, 10)],
)
def test_the_cap_keeps_the_first_out_channels_whose_tiles_fit(shape, max_tiles, kept):
    weight = data.weight(shape, 3)
    step = step_of(filters_pb("w", weight, max_tiles=max_tiles))
    stored = arrays.decode_array(step.values)
    assert stored.shape == (kept, *shape[1:])
    np.testing.assert_array_equal(stored, weight[:kept].astype(np.float16))
    assert step.total == shape[0]


def test_a_1d_conv_weight_is_one_row_high():
    weight = data.weight((4, 2, 5), 4)
    stored = arrays.decode_array(step_of(filters_pb("w", weight)).values)
    np.testing.assert_array_equal(stored, weight[:, :, None, :].astype(np.float16))


@pytest.mark.parametrize(
    ("values", "kwargs", "error", "match"),
    [
        (np.zeros((3, 3)), {}, ValueError, "conv weight"),
        (np.zeros((0, 2, 3, 3)), {}, ValueError, "conv weight"),
        (np.zeros((2, 2, 3, 3)), {"rgb": True}, ValueError, "3 input channels"),
        (np.zeros((2, 2, 3, 3)), {"max_tiles": 0}, ValueError, "max_tiles"),
        (np.zeros((2, 2, 3, 3)), {"scale": "log"}, ValueError, "scale must be one of"),
        (np.array([["a"]]), {}, TypeError, "numbers"),
        (np.zeros((2, 2, 3, 3), dtype=complex), {}, TypeError, "real"),
    ],
)
def test_bad_weights_are_clear_errors(values, kwargs, error, match):
    with pytest.raises(error, match=match):
        filters_pb("w", values, **kwargs)


def test_feature_maps_of_a_batch_store_the_chosen_sample():
    maps = np.random.default_rng(5).standard_normal(data.MAPS_SHAPE).astype(np.float32)
    summary = feature_maps_pb("m", torch.from_numpy(maps), sample=2, layer="layer1")
    step = step_of(summary)
    stored = arrays.decode_array(step.values)
    np.testing.assert_array_equal(
        stored.view(np.uint16), maps[2].astype(np.float16).view(np.uint16)
    )
    assert step.sample == 2 and step.total == data.MAPS_SHAPE[1]
    assert info_of(summary).filters.source == pb.FILTERS_SOURCE_FEATURE_MAPS


def test_feature_maps_cap_and_shapes():
    maps = np.random.default_rng(6).standard_normal((9, 4, 4)).astype(np.float32)
    step = step_of(feature_maps_pb("m", maps, max_channels=5))
    np.testing.assert_array_equal(arrays.decode_array(step.values), maps[:5].astype(np.float16))
    assert step.total == 9 and step.sample == 0
    sequence = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    stored = arrays.decode_array(step_of(feature_maps_pb("m", sequence)).values)
    np.testing.assert_array_equal(stored, sequence[:, None, :].astype(np.float16))
    with pytest.raises(ValueError, match="out of range"):
        feature_maps_pb("m", np.zeros((2, 3, 4, 4)), sample=2)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        feature_maps_pb("m", np.zeros((5,)))
    with pytest.raises(TypeError, match="sample"):
        feature_maps_pb("m", np.zeros((3, 4, 4)), sample=1.5)


def test_add_filters_writes_the_metadata_on_the_first_event_only(tmp_path, read_values):
    weights = [data.weight(data.WEIGHT_SHAPE, 8 + i) for i in range(3)]
    with deepscope.SummaryWriter(str(tmp_path)) as w:
        for step, weight in enumerate(weights):
            w.add_filters("filters/conv2", weight, global_step=step, layer="conv2")
    written = read_values(tmp_path, "filters/conv2")
    assert [v.step for v in written] == [0, 1, 2]
    assert [v.has_metadata for v in written] == [True, False, False]
    for value, weight in zip(written, weights):
        step = pb.FiltersStep.FromString(value.value.tensor.string_val[0])
        np.testing.assert_array_equal(arrays.decode_array(step.values), weight.astype(np.float16))


def test_a_tag_holds_one_source(tmp_path):
    with deepscope.SummaryWriter(str(tmp_path)) as w:
        w.add_filters("t", data.weight(data.WEIGHT_SHAPE, 9), global_step=0)
        with pytest.raises(ValueError, match="holds filters"):
            w.add_feature_maps("t", np.zeros((3, 4, 4)), global_step=1)
        w.add_feature_maps("m", np.zeros((3, 4, 4)), global_step=0)
        with pytest.raises(ValueError, match="holds feature maps"):
            w.add_filters("m", data.weight(data.WEIGHT_SHAPE, 9), global_step=1)


def test_storage_per_step_is_the_values_plus_a_few_bytes():
    conv1 = np.zeros((64, 3, 7, 7), np.float32)  # ResNet-18's conv1
    size = len(filters_pb("w", conv1).SerializeToString())
    assert 64 * 3 * 7 * 7 * 2 < size < 64 * 3 * 7 * 7 * 2 + 200
