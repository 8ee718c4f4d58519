"""SummaryWriter.add_saliency and saliency_pb: the event file read back and decoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import summary_pb2

import deepscope
from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.saliency import saliency_pb


def _step(written) -> pb.SaliencyStep:
    blobs = written.value.tensor.string_val
    return pb.SaliencyStep.FromString(blobs[0])


def _info(written) -> pb.SaliencyInfo:
    meta = written.value.metadata
    assert meta.plugin_data.plugin_name == "deepscope"
    assert meta.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    plugin_data = metadata.parse_plugin_data(meta.plugin_data.content)
    assert plugin_data.kind == pb.SALIENCY
    return plugin_data.saliency


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


def test_round_trip_two_steps(writer, tmp_path, read_values):
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 1, size=(3, 1, 5, 4)) for _ in range(2)]
    maps = [rng.normal(scale=0.02, size=(3, 1, 5, 4)) for _ in range(2)]
    for k in range(2):
        writer.add_saliency(
            "digits",
            torch.tensor(images[k], dtype=torch.float32),  # a tensor...
            maps[k],  # ...and a numpy array, as another library returns them
            global_step=10 * k,
            walltime=1000.0 + k,
            labels=torch.tensor([1, 2, 3]),
            predictions=[1, 2, 0],
            method="integrated_gradients",
            completeness_error=np.array([0.001, -0.002, 0.0]),
        )
    writer.add_scalar("loss", 1.0, global_step=0)
    writer.flush()
    written = read_values(tmp_path, "digits")
    assert [(w.step, w.wall_time) for w in written] == [(0, 1000.0), (10, 1001.0)]
    assert [w.has_metadata for w in written] == [True, False]
    info = _info(written[0])
    assert info.method == "integrated_gradients"
    assert list(info.input_shape) == [1, 5, 4]
    for k, w in enumerate(written):
        assert len(w.value.tensor.string_val) == 1
        step = _step(w)
        assert step.inputs.dtype == pb.FLOAT16 and step.maps.dtype == pb.FLOAT16
        # float16 keeps 11 significant bits: relative error ≤ 2⁻¹¹.
        np.testing.assert_allclose(arrays.decode_array(step.inputs), images[k], rtol=2**-11)
        np.testing.assert_allclose(arrays.decode_array(step.maps), maps[k], rtol=2**-11)
        assert arrays.decode_array(step.labels).tolist() == [1, 2, 3]
        assert arrays.decode_array(step.predictions).tolist() == [1, 2, 0]
        np.testing.assert_allclose(
            arrays.decode_array(step.completeness_error), [0.001, -0.002, 0.0], rtol=1e-7
        )
        assert not step.HasField("baseline") and not step.HasField("baseline_maps")
        assert step.non_finite == 0
    # float16: 2 bytes per input and map element.
    assert len(written[1].value.tensor.string_val[0]) < 2 * 2 * 60 + 200


def test_baseline_and_its_maps(writer, tmp_path, read_values):
    x = torch.rand(2, 3, 4)
    writer.add_saliency(
        "b",
        x,
        torch.randn(2, 3, 4),
        baseline=torch.full((3, 4), 0.5),  # one sample's shape: shared, stored once
        baseline_maps=torch.ones(2, 3, 4),
        method="baseline_delta",
    )
    per_sample = np.stack([np.zeros((3, 4)), np.ones((3, 4))])
    writer.add_saliency("b2", x, x, baseline=per_sample, baseline_maps=np.zeros((2, 1, 4)))
    writer.flush()
    step = _step(read_values(tmp_path, "b")[0])
    np.testing.assert_array_equal(arrays.decode_array(step.baseline), np.full((1, 3, 4), 0.5))
    np.testing.assert_array_equal(arrays.decode_array(step.baseline_maps), np.ones((2, 3, 4)))
    step = _step(read_values(tmp_path, "b2")[0])
    np.testing.assert_array_equal(arrays.decode_array(step.baseline), per_sample)
    np.testing.assert_array_equal(arrays.decode_array(step.baseline_maps), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"baseline of shape \[3, 3, 4\] does not match"):
        writer.add_saliency("b3", x, x, baseline=np.zeros((3, 3, 4)))


def test_non_finite_values_are_kept_and_counted(writer, tmp_path, read_values):
    maps = np.ones((2, 1, 3, 3), dtype=np.float32)
    maps[0, 0, 1, 1] = np.nan
    maps[1, 0, 2, 0] = np.inf
    base_maps = np.zeros_like(maps)
    base_maps[1, 0, 0, 0] = -np.inf
    writer.add_saliency("n", np.zeros_like(maps), maps, baseline_maps=base_maps)
    writer.flush()
    step = _step(read_values(tmp_path, "n")[0])
    assert step.non_finite == 3
    decoded = arrays.decode_array(step.maps)
    assert np.isnan(decoded[0, 0, 1, 1]) and np.isposinf(decoded[1, 0, 2, 0])
    assert np.isneginf(arrays.decode_array(step.baseline_maps)[1, 0, 0, 0])


def test_values_float16_would_lose_are_stored_as_float32(writer, tmp_path, read_values):
    tiny = np.random.default_rng(1).normal(scale=1e-7, size=(2, 6))  # below float16's normals
    huge = np.array([[1e6, -3.0], [2.0, 1e5]])
    writer.add_saliency("tiny", np.zeros((2, 6)), tiny)
    writer.add_saliency("huge", huge, huge)
    writer.flush()
    step = _step(read_values(tmp_path, "tiny")[0])
    assert step.maps.dtype == pb.FLOAT32
    np.testing.assert_allclose(arrays.decode_array(step.maps), tiny, rtol=1e-6)
    assert step.inputs.dtype == pb.FLOAT16  # zeros fit float16
    step = _step(read_values(tmp_path, "huge")[0])
    assert step.maps.dtype == step.inputs.dtype == pb.FLOAT32
    np.testing.assert_array_equal(arrays.decode_array(step.maps), huge)


def test_single_channel_maps_broadcast_over_channels(writer, tmp_path, read_values):
    maps = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    writer.add_saliency("gray", np.zeros((2, 3, 2, 2)), maps)
    writer.flush()
    decoded = arrays.decode_array(_step(read_values(tmp_path, "gray")[0]).maps)
    assert decoded.shape == (2, 3, 2, 2)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, channel], maps[:, 0])


def test_bad_shapes_and_types_are_clear_errors(writer):
    x = np.zeros((2, 1, 4, 4))
    with pytest.raises(
        ValueError, match=r"maps of shape \[2, 4, 4\] does not match .* \[2, 1, 4, 4\]"
    ):
        writer.add_saliency("t", x, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"labels needs one value per sample \(2\), got 3"):
        writer.add_saliency("t", x, x, labels=[1, 2, 3])
    with pytest.raises(TypeError, match="integer class indices"):
        writer.add_saliency("t", x, x, labels=[1.5, 2.0])
    with pytest.raises(TypeError, match="tuple for models with several inputs"):
        writer.add_saliency("t", x, (torch.zeros(2, 1, 4, 4), torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"inputs\[None\]"):
        writer.add_saliency("t", np.zeros(4), np.zeros(4))
    writer.add_saliency("t", x, x, method="gradient")
    with pytest.raises(ValueError, match="holds gradient maps .* under another tag"):
        writer.add_saliency("t", x, x, method="occlusion")
    with pytest.raises(ValueError, match=r"inputs shaped \[1, 4, 4\]"):
        writer.add_saliency("t", np.zeros((2, 1, 3, 3)), np.zeros((2, 1, 3, 3)), method="gradient")


def test_failed_first_call_does_not_lose_the_metadata(writer, tmp_path, read_values):
    x = np.zeros((2, 1, 4, 4))
    with pytest.raises(ValueError):
        writer.add_saliency("t", x, np.zeros((3, 1, 4, 4)), method="gradient")
    writer.add_saliency("t", x, x, method="gradient")
    writer.flush()
    written = read_values(tmp_path, "t")
    assert len(written) == 1 and _info(written[0]).method == "gradient"


def test_saliency_pb_builder_carries_its_metadata():
    summary = saliency_pb(
        "s", np.zeros((1, 2, 3)), np.ones((1, 2, 3)), labels=[4], method="captum.Saliency"
    )
    (value,) = summary.value
    assert value.tag == "s"
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    info = metadata.parse_plugin_data(value.metadata.plugin_data.content).saliency
    assert info.method == "captum.Saliency" and list(info.input_shape) == [2, 3]
    step = pb.SaliencyStep.FromString(value.tensor.string_val[0])
    np.testing.assert_array_equal(arrays.decode_array(step.maps), np.ones((1, 2, 3)))
    assert arrays.decode_array(step.labels).tolist() == [4]


def test_token_series_store_ids_per_token_maps_texts_and_the_reduction(
    writer, tmp_path, read_values
):
    ids = torch.tensor([[5, 0, 17], [2, 2, 9]])
    maps = np.array([[0.5, -1.0, 0.25], [2.0, 0.0, -0.125]], dtype=np.float32)
    texts = [["The", " cat", " sat"], ["A", " A", " dog"]]
    writer.add_saliency(
        "text/ig", ids, maps, labels=[1, 0], method="integrated_gradients", tokens=texts
    )
    writer.add_saliency("text/ig", ids, maps, global_step=1, method="integrated_gradients")
    writer.add_saliency(
        "text/own", ids.numpy().astype(np.int32), maps, token_reduction="max over dims"
    )
    writer.flush()
    first, second = read_values(tmp_path, "text/ig")
    info = _info(first)
    assert info.input_kind == "tokens" and list(info.input_shape) == [3]
    assert info.token_reduction == "sum over the embedding dim"  # deepscope's rule for IG
    step = _step(first)
    assert step.inputs.dtype == pb.INT64
    assert arrays.decode_array(step.inputs).tolist() == ids.tolist()
    np.testing.assert_array_equal(arrays.decode_array(step.maps), maps)  # exact in float16
    assert list(step.token_texts) == ["The", " cat", " sat", "A", " A", " dog"]
    assert list(_step(second).token_texts) == []  # texts are optional per step
    own = _info(read_values(tmp_path, "text/own")[0])
    assert own.input_kind == "tokens" and own.token_reduction == "max over dims"


def test_token_series_errors(writer):
    ids = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"tokens\[0\] must be 3 strings"):
        writer.add_saliency("t", ids, np.zeros((1, 3)), tokens=[["a", "b"]])
    with pytest.raises(ValueError, match="tokens must be 1 lists"):
        writer.add_saliency("t", ids, np.zeros((1, 3)), tokens="abc")
    with pytest.raises(ValueError, match="names the tokens of token-id inputs"):
        writer.add_saliency("t", np.zeros((1, 3)), np.zeros((1, 3)), tokens=[["a", "b", "c"]])
    with pytest.raises(ValueError, match="baseline is not stored for token ids"):
        writer.add_saliency("t", ids, np.zeros((1, 3)), baseline=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="token_reduction= is for token-id inputs"):
        writer.add_saliency("t", np.zeros((1, 3)), np.zeros((1, 3)), token_reduction="sum")
    writer.add_saliency("t", ids, np.zeros((1, 3)), method="gradient")
    with pytest.raises(ValueError, match="holds gradient maps of token ids shaped"):
        writer.add_saliency("t", np.zeros((1, 3)), np.zeros((1, 3)), method="gradient")
