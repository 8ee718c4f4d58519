"""add_channel_correlation and channel_correlation_pb: what lands in the event file, decoded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from tensorboard.compat.proto import summary_pb2

import deepscope
from deepscope import metadata
from deepscope.analysis.correlation import CorrelationAccumulator
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.correlation import channel_correlation_pb


def _step(written) -> pb.CorrelationStep:
    blobs = written.value.tensor.string_val
    assert len(blobs) == 1
    return pb.CorrelationStep.FromString(blobs[0])


def _acts(seed: int, channels: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10, channels, 4, 4, generator=g)
    x[:, 1] = 0.8 * x[:, 0] + 0.2 * x[:, 1]
    return x


def _ref(*tensors: torch.Tensor) -> np.ndarray:
    flat = [t.movedim(1, -1).reshape(-1, t.shape[1]).double().numpy() for t in tensors]
    return np.corrcoef(np.concatenate(flat, axis=1).T)


def test_within_layer_round_trip(tmp_path, read_values):
    x = _acts(0)
    x[:, 4] = 0.0  # dead
    x[2, 3, 1, 1] = float("nan")
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_channel_correlation("conv2", x, global_step=3, walltime=100.0, row_name="conv2")
    writer.add_channel_correlation("conv2", _acts(1), global_step=7, walltime=101.0)
    writer.close()

    values = read_values(tmp_path, "conv2")
    assert [(v.step, v.wall_time, v.has_metadata) for v in values] == [
        (3, 100.0, True),
        (7, 101.0, False),
    ]
    meta = values[0].value.metadata
    assert meta.plugin_data.plugin_name == "deepscope"
    assert meta.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    info = metadata.parse_plugin_data(meta.plugin_data.content)
    assert info.kind == pb.CORRELATION
    assert (info.correlation.cross, info.correlation.channel_dim) == (False, 1)
    assert info.correlation.row_name == "conv2"

    step = _step(values[0])
    matrix = arrays.decode_array(step.matrix)
    assert step.matrix.dtype == pb.FLOAT16 and matrix.shape == (6, 6)
    rows = x.movedim(1, -1).reshape(-1, 6).double().numpy()
    rows = rows[np.isfinite(rows).all(1)]
    assert step.samples == len(rows) == 159
    alive = [0, 1, 2, 3, 5]
    np.testing.assert_allclose(
        matrix[np.ix_(alive, alive)], np.corrcoef(rows[:, alive].T), atol=1e-3
    )
    assert not matrix[4].any() and not matrix[:, 4].any()
    assert list(step.row_stats.dead) == [4] and step.row_stats.non_finite == 1
    np.testing.assert_allclose(arrays.decode_array(step.row_stats.mean), rows.mean(0), atol=1e-5)
    np.testing.assert_allclose(arrays.decode_array(step.row_stats.std), rows.std(0), atol=1e-5)
    np.testing.assert_allclose(
        arrays.decode_array(step.row_stats.positive_fraction), (rows > 0).mean(0), atol=1e-6
    )
    off = np.abs(np.corrcoef(rows[:, alive].T)) - np.eye(5)
    assert step.redundant_fraction == pytest.approx(np.mean((off > 0.9).any(1)) * 5 / 6)
    assert not step.HasField("matching") and not step.HasField("col_stats")


def test_cross_round_trip_with_matching(tmp_path, read_values):
    a, b = _acts(2, 5), _acts(3, 4)
    b[:, 2] = a[:, 3] * 2 + 1
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_channel_correlation(
        "conv/a-vs-b", a, other=b, global_step=1, row_name="a/conv", col_name="b/conv"
    )
    writer.close()
    (written,) = read_values(tmp_path, "conv/a-vs-b")
    info = metadata.parse_plugin_data(written.value.metadata.plugin_data.content).correlation
    assert (info.cross, info.row_name, info.col_name) == (True, "a/conv", "b/conv")
    step = _step(written)
    ref = _ref(a, b)[:5, 5:]
    matrix = arrays.decode_array(step.matrix)
    np.testing.assert_allclose(matrix, ref, atol=1e-3)
    assert matrix[3, 2] == pytest.approx(1.0, abs=1e-3)

    m = step.matching
    np.testing.assert_array_equal(arrays.decode_array(m.semi_cols), ref.argmax(1))
    np.testing.assert_allclose(arrays.decode_array(m.semi_corr), ref.max(1), atol=1e-6)
    rows, cols = linear_sum_assignment(ref, maximize=True)
    np.testing.assert_array_equal(arrays.decode_array(m.bipartite_rows), rows)
    np.testing.assert_array_equal(arrays.decode_array(m.bipartite_cols), cols)
    np.testing.assert_allclose(arrays.decode_array(m.bipartite_corr), ref[rows, cols], atol=1e-6)
    assert m.semi_mean == pytest.approx(ref.max(1).mean(), abs=1e-6)
    assert m.bipartite_mean == pytest.approx(ref[rows, cols].mean(), abs=1e-6)
    assert len(arrays.decode_array(step.col_stats.mean)) == 4


def test_uint8_matrix_within_one_step_and_zero_exact(tmp_path, read_values):
    x = _acts(4)
    x[:, 5] = 1.0  # dead: exactly 0 after quantization
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_channel_correlation("q", x, matrix_dtype="uint8")
    writer.close()
    step = _step(read_values(tmp_path, "q")[0])
    assert step.matrix.dtype == pb.UINT8_LINEAR and len(step.matrix.data) == 36
    matrix = arrays.decode_array(step.matrix)
    ref = _ref(x[:, :5])
    np.testing.assert_allclose(matrix[:5, :5], ref, atol=0.5 / 127 + 1e-6)
    assert np.abs(matrix[5]).max() < 1e-6
    assert np.abs(np.diag(matrix)[:5] - 1).max() < 1e-6


def test_accepts_a_filled_accumulator(tmp_path, read_values):
    acc = CorrelationAccumulator(channel_dim=-1)
    batches = [torch.randn(20, 3, generator=torch.Generator().manual_seed(k)) for k in range(4)]
    for batch in batches:
        acc.update(batch)
    writer = deepscope.SummaryWriter(str(tmp_path))
    writer.add_channel_correlation("acc", acc, global_step=2)
    with pytest.raises(ValueError, match="other must be None"):
        writer.add_channel_correlation("acc", acc, other=torch.randn(20, 3))
    writer.close()
    (written,) = read_values(tmp_path, "acc")
    step = _step(written)
    assert step.samples == 80
    info = metadata.parse_plugin_data(written.value.metadata.plugin_data.content).correlation
    assert info.channel_dim == 1  # -1 of a 2-d batch, as a non-negative index


def test_failed_first_call_writes_nothing_and_keeps_the_metadata_for_later(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.raises(TypeError, match="floating point"):
        writer.add_channel_correlation("t", torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="matrix_dtype"):
        writer.add_channel_correlation("t", torch.randn(4, 3), matrix_dtype="int8")
    writer.add_channel_correlation("t", torch.randn(4, 3), global_step=5)
    writer.close()
    values = read_values(tmp_path, "t")
    assert [(v.step, v.has_metadata) for v in values] == [(5, True)]


def test_512_channel_step_fits_the_budget():
    x = torch.randn(2048, 512, generator=torch.Generator().manual_seed(5))
    summary = channel_correlation_pb("big", x)
    size = len(summary.SerializeToString())
    assert 512 * 512 * 2 < size <= 0.6e6
    quantized = channel_correlation_pb("big", x, matrix_dtype="uint8")
    assert len(quantized.SerializeToString()) <= 0.3e6


def test_plain_builder_carries_metadata_and_step():
    a, b = _acts(6, 3), _acts(7, 3)
    summary = channel_correlation_pb("x", a, other=b, row_name="r", col_name="c")
    (value,) = summary.value
    info = metadata.parse_plugin_data(value.metadata.plugin_data.content).correlation
    assert (info.cross, info.row_name, info.col_name) == (True, "r", "c")
    step = pb.CorrelationStep.FromString(value.tensor.string_val[0])
    np.testing.assert_allclose(arrays.decode_array(step.matrix), _ref(a, b)[:3, 3:], atol=1e-3)


def test_a_step_given_where_other_goes_gets_a_clear_error(tmp_path):
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        with pytest.raises(TypeError, match="to give the step, write global_step="):
            writer.add_channel_correlation("conv", torch.randn(8, 3), 5)


def test_all_nan_activations_are_logged_as_unknown_not_dead(tmp_path, read_values):
    """0 samples: the stats say NaN (unknown) and no channel is dead; the NaNs are counted."""
    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.warns(RuntimeWarning, match=r"no finite sample position \(256 NaN/Inf"):
        writer.add_channel_correlation("nan", torch.full((4, 16, 2, 2), float("nan")))
    writer.close()
    (written,) = read_values(tmp_path, "nan")
    step = _step(written)
    assert step.samples == 0 and step.row_stats.non_finite == 4 * 16 * 2 * 2
    assert list(step.row_stats.dead) == []
    for name in ("mean", "std", "positive_fraction"):
        values = arrays.decode_array(getattr(step.row_stats, name))
        assert values.shape == (16,) and np.isnan(values).all()
    assert not arrays.decode_array(step.matrix).any()
