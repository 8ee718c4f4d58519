"""SummaryWriter.add_singular_values and spectrum_pb: what lands in the event file.

Files are read back with tensorboard's own readers (event_file_loader through the
`read_values` fixture, and the EventAccumulator TensorBoard's Python loader uses);
numbers are checked against numpy on the same weights.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import data_ingester, plugin_event_accumulator
from tensorboard.compat.proto import summary_pb2

import deepscope
from deepscope import metadata
from deepscope.analysis import spectrum as sp
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.spectrum import spectrum_pb


def decode_step(written) -> pb.SpectrumStep:
    tensor = written.value.tensor
    assert len(tensor.string_val) >= 1  # a blob sequence; its first blob is the step
    return pb.SpectrumStep.FromString(tensor.string_val[0])


def spectrum_info(written) -> pb.SpectrumInfo:
    assert written.value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert written.value.metadata.plugin_data.plugin_name == "deepscope"
    plugin_data = metadata.parse_plugin_data(written.value.metadata.plugin_data.content)
    assert plugin_data.kind == pb.SPECTRUM
    return plugin_data.spectrum


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


def test_linear_weight_round_trip(writer, tmp_path, read_values):
    torch.manual_seed(0)
    layer = torch.nn.Linear(30, 12)
    weights = []
    for step in (0, 5):
        weights.append(layer.weight.detach().numpy().astype(np.float64).copy())
        writer.add_singular_values("fc", layer.weight, global_step=step, walltime=100.0 + step)
        with torch.no_grad():
            layer.weight.mul_(2.0)
    writer.flush()
    written = read_values(tmp_path, "fc")
    assert [w.step for w in written] == [0, 5]
    assert [w.wall_time for w in written] == [100.0, 105.0]
    assert written[0].has_metadata and not written[1].has_metadata
    info = spectrum_info(written[0])
    assert list(info.weight_shape) == [12, 30]
    assert list(info.matrix_shape) == [1, 12, 30]
    for w, weight in zip(written, weights):
        step = decode_step(w)
        assert step.error == ""
        assert step.seconds > 0
        values = arrays.decode_array(step.singular_values)
        assert values.dtype == np.float32 and values.shape == (1, 12)
        np.testing.assert_allclose(
            values[0], np.linalg.svd(weight, compute_uv=False), rtol=1e-5, atol=1e-6
        )
        m = step.metrics
        assert m.spectral_norm == pytest.approx(np.linalg.norm(weight, 2), rel=1e-5)
        assert m.frobenius_norm == pytest.approx(np.linalg.norm(weight), rel=1e-5)
        assert m.condition_number == pytest.approx(np.linalg.cond(weight), rel=1e-4)
        assert m.numerical_rank == np.linalg.matrix_rank(weight) == 12
        assert m.effective_rank > 1 and m.stable_rank > 1
        assert m.mp_bulk_edge > 0 and m.mp_noise_scale > 0


def test_grouped_conv_module_gives_its_kind_groups_and_rule(writer, tmp_path, read_values):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(8, 12, 3, groups=4)
    writer.add_singular_values("conv", conv, global_step=3)
    writer.flush()
    (written,) = read_values(tmp_path, "conv")
    info = spectrum_info(written)
    assert info.layer_kind == "Conv2d"
    assert list(info.weight_shape) == [12, 2, 3, 3]
    assert list(info.matrix_shape) == [4, 3, 18]
    assert info.matrix_rule == "per group: out/groups x in/groups*kh*kw"
    values = arrays.decode_array(decode_step(written).singular_values)
    weight = conv.weight.detach().numpy().astype(np.float64)
    want = np.stack(
        [
            np.linalg.svd(weight[3 * g : 3 * g + 3].reshape(3, 18), compute_uv=False)
            for g in range(4)
        ]
    )
    assert values.shape == (4, 3)
    np.testing.assert_allclose(values, want, rtol=1e-5, atol=1e-6)


def test_explicit_groups_and_kind_override(writer, tmp_path, read_values):
    weight = torch.randn(6, 4, 2)
    writer.add_singular_values(
        "t", weight, 0, groups=2, layer_kind="ConvTranspose1d", description="a transposed conv"
    )
    writer.flush()
    (written,) = read_values(tmp_path, "t")
    info = spectrum_info(written)
    assert info.layer_kind == "ConvTranspose1d"
    assert info.matrix_rule == "per group: in/groups x out/groups*k"
    assert list(info.matrix_shape) == [2, 3, 8]
    assert written.value.metadata.summary_description == "a transposed conv"


def test_tensorboard_event_accumulator_reads_the_series(writer, tmp_path):
    writer.add_singular_values("layer/a", torch.randn(9, 4), 1)
    writer.add_singular_values("layer/a", torch.randn(9, 4), 2)
    writer.add_scalar("loss", 1.0, 1)
    writer.flush()
    accumulator = plugin_event_accumulator.EventAccumulator(
        str(tmp_path),
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE,
    )
    accumulator.Reload()
    content = accumulator.PluginTagToContent("deepscope")
    assert list(content) == ["layer/a"]
    assert metadata.parse_plugin_data(content["layer/a"]).spectrum.matrix_shape == [1, 9, 4]
    assert accumulator.SummaryMetadata("layer/a").data_class == (
        summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    )
    events = accumulator.Tensors("layer/a")
    assert [e.step for e in events] == [1, 2]
    step = pb.SpectrumStep.FromString(events[1].tensor_proto.string_val[0])
    assert arrays.decode_array(step.singular_values).shape == (1, 4)


def test_precomputed_spectrum_is_written_as_given(writer, tmp_path, read_values):
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(20, 7))
    values = np.linalg.svd(matrix, compute_uv=False)
    spectrum = sp.Spectrum(
        singular_values=torch.from_numpy(values[::-1].copy()).reshape(1, 7),  # any order
        matrix_shape=(1, 20, 7),
        matrix_rule="computed elsewhere",
        layer_kind="Linear",
        weight_shape=(20, 7),
    )
    writer.add_singular_values("pre", spectrum, 0)
    writer.flush()
    (written,) = read_values(tmp_path, "pre")
    assert spectrum_info(written).matrix_rule == "computed elsewhere"
    step = decode_step(written)
    stored = arrays.decode_array(step.singular_values)
    np.testing.assert_allclose(stored[0], values.astype(np.float32))  # sorted descending
    assert step.metrics.spectral_norm == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-6)


@pytest.mark.parametrize("value", [torch.randn(5), torch.tensor(1.0), np.ones(3)])
def test_fewer_than_two_dimensions_is_a_clear_error(writer, value):
    with pytest.raises(ValueError, match="2 or more dimensions.*Spectrum"):
        writer.add_singular_values("x", value, 0)


def test_other_bad_inputs_say_what_to_pass(writer):
    with pytest.raises(ValueError, match="ReLU has no initialised weight"):
        writer.add_singular_values("x", torch.nn.ReLU(), 0)
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        writer.add_singular_values("x", [[1.0, 2.0]], 0)
    bad = sp.Spectrum(singular_values=torch.ones(3), matrix_shape=(1, 3, 3))
    with pytest.raises(ValueError, match=r"shape \[groups, k\]"):
        writer.add_singular_values("x", bad, 0)


def test_non_finite_weight_is_recorded_with_a_warning(writer, tmp_path, read_values):
    weight = torch.randn(4, 6)
    weight[1, 2] = math.nan
    with pytest.warns(RuntimeWarning, match="'w' not measured: non-finite weight: 1 NaN"):
        writer.add_singular_values("w", weight, 0)
    writer.add_singular_values("w", torch.randn(4, 6), 1)  # the series goes on
    writer.flush()
    first, second = read_values(tmp_path, "w")
    assert list(spectrum_info(first).matrix_shape) == [1, 4, 6]
    step = decode_step(first)
    assert "non-finite weight" in step.error
    stored = arrays.decode_array(step.singular_values)
    assert stored.shape == (1, 4) and np.all(np.isnan(stored))
    assert math.isnan(step.metrics.spectral_norm) and math.isnan(step.metrics.alpha)
    assert step.metrics.numerical_rank == 0
    assert decode_step(second).error == ""


def test_svd_that_does_not_converge_is_recorded_with_a_warning(
    writer, tmp_path, read_values, monkeypatch
):
    def fails(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "svdvals", fails)
    with pytest.warns(RuntimeWarning, match="the SVD did not converge"):
        writer.add_singular_values("w", torch.randn(4, 6), 0)
    writer.flush()
    (written,) = read_values(tmp_path, "w")
    step = decode_step(written)
    assert "did not converge" in step.error
    assert math.isnan(step.metrics.condition_number)


def test_spectrum_pb_builds_a_complete_summary():
    weight = torch.randn(16, 3, 3, 3)
    summary = spectrum_pb("conv1", weight, layer_kind="Conv2d", description="first conv")
    (value,) = summary.value
    assert value.tag == "conv1"
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    plugin_data = metadata.parse_plugin_data(value.metadata.plugin_data.content)
    assert plugin_data.version == metadata.SCHEMA_VERSION
    assert plugin_data.spectrum.matrix_rule == "out x in*kh*kw"
    assert value.metadata.summary_description == "first conv"
    step = pb.SpectrumStep.FromString(value.tensor.string_val[0])
    values = arrays.decode_array(step.singular_values)
    want = np.linalg.svd(weight.numpy().astype(np.float64).reshape(16, 27), compute_uv=False)
    np.testing.assert_allclose(values[0], want, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finite weight warns about nothing
        spectrum_pb("fc", torch.randn(3, 3))


@pytest.mark.parametrize("rows, cols", [(10, 10), (512, 512), (64, 1152)])
def test_storage_is_four_bytes_a_singular_value_plus_a_constant(rows, cols):
    """Both as serialized and in the event file: the rest is under 200 bytes a layer-step."""
    k = min(rows, cols)
    summary = spectrum_pb("layer4.1.conv2", torch.randn(rows, cols))
    step = pb.SpectrumStep.FromString(summary.value[0].tensor.string_val[0])
    assert len(step.singular_values.data) == 4 * k
    summary.value[0].ClearField("metadata")  # only the first event carries it
    assert summary.ByteSize() - 4 * k < 200


def test_event_file_grows_by_four_bytes_a_singular_value(writer, tmp_path):
    def size():
        writer.flush()
        return sum(p.stat().st_size for p in tmp_path.glob("events.out.tfevents.*"))

    writer.add_singular_values("layer", torch.randn(256, 300), 0)  # metadata goes here
    before = size()
    steps = 5
    for step in range(1, steps + 1):
        writer.add_singular_values("layer", torch.randn(256, 300), step)
    per_step = (size() - before) / steps
    assert 4 * 256 <= per_step < 4 * 256 + 250


def test_a_partial_spectrum_is_refused_because_its_metrics_would_be_wrong(tmp_path):
    partial = sp.Spectrum(singular_values=torch.ones(1, 2), matrix_shape=(1, 3, 4))
    with deepscope.SummaryWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError, match="has 3 singular values per group, got 2"):
            writer.add_singular_values("partial", partial)


def test_an_unchanged_step_is_small_and_needs_a_measured_first_event(tmp_path, read_values):
    from deepscope.writer.spectrum import spectrum_info as info_of

    writer = deepscope.SummaryWriter(str(tmp_path))
    with pytest.raises(ValueError, match="log the measured spectrum first"):
        writer.add_unchanged_spectrum("w", 0, global_step=1)
    with pytest.raises(ValueError, match="step >= 0"):
        writer.add_unchanged_spectrum("w", -1, global_step=1)
    weight = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    writer.add_singular_values("w", weight, global_step=0)
    written = writer.add_unchanged_spectrum("w", 0, global_step=5)
    assert written.unchanged and written.unchanged_since_step == 0
    # A tag first logged unchanged carries the metadata it is given.
    writer.add_unchanged_spectrum("v", 3, global_step=7, info=info_of(sp.layer_spectrum(weight)))
    writer.close()
    values = {(v.tag, v.step): v for v in read_values(tmp_path)}
    step = pb.SpectrumStep.FromString(values[("w", 5)].value.tensor.string_val[0])
    assert step.unchanged and step.unchanged_since_step == 0
    assert step.start.step == 0  # the series' start, for readers of the newest step alone
    step.ClearField("start")
    assert not step.HasField("singular_values") and len(step.SerializeToString()) < 10
    assert not values[("w", 5)].has_metadata
    first = values[("v", 7)]
    info = metadata.parse_plugin_data(first.value.metadata.plugin_data.content)
    assert tuple(info.spectrum.matrix_shape) == (1, 6, 4)


def test_a_top_k_spectrum_is_stored_as_such_with_the_metrics_it_has():
    torch.manual_seed(8)
    weight = torch.randn(60, 50, dtype=torch.float64)
    sigma = np.linalg.svd(weight.numpy(), compute_uv=False)
    frobenius = float(np.linalg.norm(weight.numpy()))
    spectrum = sp.Spectrum(
        singular_values=torch.from_numpy(sigma[:5].copy())[None, :],
        matrix_shape=(1, 60, 50),
        coverage="top_k",
        frobenius_norm=frobenius,
    )
    summary = spectrum_pb("big", spectrum)
    step = pb.SpectrumStep.FromString(summary.value[0].tensor.string_val[0])
    assert step.coverage == pb.SPECTRUM_COVERAGE_TOP_K
    np.testing.assert_allclose(arrays.decode_array(step.singular_values)[0], sigma[:5], rtol=1e-6)
    m = step.metrics
    assert m.spectral_norm == pytest.approx(sigma[0], rel=1e-12)
    assert m.frobenius_norm == pytest.approx(frobenius, rel=1e-12)
    assert m.stable_rank == pytest.approx(frobenius**2 / sigma[0] ** 2, rel=1e-12)
    # Metrics that need the whole spectrum are not made up from its top.
    for name in ("condition_number", "effective_rank", "mp_bulk_edge", "alpha"):
        assert math.isnan(getattr(m, name)), name
    assert m.numerical_rank == 0 and m.num_above_mp_edge == 0


def test_a_full_spectrum_of_too_few_values_is_still_refused(writer):
    spectrum = sp.Spectrum(singular_values=torch.ones(1, 3), matrix_shape=(1, 6, 4))
    with pytest.raises(ValueError, match="4 singular values"):
        writer.add_singular_values("fc", spectrum, 0)


def test_each_step_carries_its_series_start_for_readers_of_the_newest_step(tmp_path, read_values):
    writer = deepscope.SummaryWriter(str(tmp_path))
    generator = torch.Generator().manual_seed(1)
    bad = torch.full((6, 4), float("nan"))
    with pytest.warns(RuntimeWarning):
        writer.add_singular_values("w", bad, global_step=3)  # failed: not a start
    weights = {s: torch.randn(6, 4, generator=generator) for s in (10, 20, 30)}
    for step, weight in weights.items():
        writer.add_singular_values("w", weight, global_step=step)
    writer.add_unchanged_spectrum("w", 30, global_step=40)
    writer.close()
    steps = {
        v.step: pb.SpectrumStep.FromString(v.value.tensor.string_val[0])
        for v in read_values(tmp_path)
        if v.tag == "w"
    }
    assert not steps[3].HasField("start") and not steps[10].HasField("start")
    first = np.linalg.svd(weights[10].double().numpy(), compute_uv=False)
    for step in (20, 30, 40):
        start = steps[step].start
        assert start.step == 10
        assert start.spectral_norm == pytest.approx(first[0], rel=1e-5)
        assert start.stable_rank == pytest.approx((first**2).sum() / first[0] ** 2, rel=1e-5)
        assert start.effective_rank == pytest.approx(steps[10].metrics.effective_rank, rel=1e-12)
