"""A conv layer's operator spectrum in its spectrum step: `add_singular_values(...,
operator=, input_size=)` and `spectrum_pb`, read back from the event file.

Numbers are checked against numpy's SVD of the circular convolution's operator matrix
built entry by entry (`tests.spectrum_data.circular_operator_matrix`), and against
`deepscope.analysis.conv_operator` (the function the builder calls) for the round trip.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import deepscope
from deepscope.analysis import conv_operator
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.spectrum import spectrum_pb
from tests.spectrum_data import circular_operator_matrix, operator_singular_values

EPS32 = float(np.finfo(np.float32).eps)


def close(found, want, scale: float, factor: float = 64.0) -> None:
    """Equal up to `factor` float32 epsilons of `scale` (the spectrum's largest value)."""
    np.testing.assert_allclose(found, want, rtol=0, atol=factor * EPS32 * scale)


def step_of(summary) -> pb.SpectrumStep:
    return pb.SpectrumStep.FromString(summary.value[0].tensor.string_val[0])


def written_steps(read_values, logdir, tag) -> list[pb.SpectrumStep]:
    return [
        pb.SpectrumStep.FromString(v.value.tensor.string_val[0]) for v in read_values(logdir, tag)
    ]


@pytest.fixture
def writer(tmp_path):
    writer = deepscope.SummaryWriter(str(tmp_path))
    yield writer
    writer.close()


CASES = [  # (conv, input size)
    (torch.nn.Conv2d(3, 4, 3, padding=1), (5, 5)),
    (torch.nn.Conv2d(2, 3, (3, 5), stride=2, padding=1), (6, 8)),
    (torch.nn.Conv2d(4, 6, 3, groups=2, dilation=2), (7, 6)),
    (torch.nn.Conv2d(2, 4, 1, stride=3), (9, 3)),
    (torch.nn.Conv1d(3, 5, 4, stride=2), 8),
    (torch.nn.Conv3d(2, 2, 2), (3, 4, 3)),
]


@pytest.mark.parametrize("conv,size", CASES, ids=lambda c: str(c)[:40])
def test_the_full_operator_spectrum_is_that_of_the_explicit_operator_matrix(
    writer, tmp_path, read_values, conv, size
):
    torch.manual_seed(1)
    torch.nn.init.normal_(conv.weight)
    writer.add_singular_values("conv", conv, 3, input_size=size, operator="full", operator_top_k=7)
    writer.flush()
    (step,) = written_steps(read_values, tmp_path, "conv")
    weight = conv.weight.detach().numpy()
    matrix = circular_operator_matrix(
        weight, size, stride=conv.stride, dilation=conv.dilation, groups=conv.groups
    )
    want = np.linalg.svd(matrix, compute_uv=False)
    op = step.operator
    scale = float(want[0])
    assert op.error == "" and not op.norm_only and op.padding_rule == "circular"
    dims = weight.ndim - 2
    assert list(op.input_size) == list((size,) * dims if isinstance(size, int) else size)
    assert list(op.stride) == list(conv.stride)
    assert op.count == want.size == min(matrix.shape)
    top = arrays.decode_array(op.top_values)
    assert top.dtype == np.float32 and top.shape == (min(7, want.size),)
    close(top, want[: top.size], scale)
    assert op.operator_norm == pytest.approx(scale, rel=64 * EPS32)
    assert op.frobenius_norm == pytest.approx(np.linalg.norm(matrix), rel=64 * EPS32)
    assert op.stable_rank == pytest.approx(np.linalg.norm(matrix) ** 2 / scale**2, rel=1e-4)
    levels = np.array(op.quantile_levels)
    assert levels[0] == 0.0 and levels[-1] == 1.0 and np.all(np.diff(levels) > 0)
    close(arrays.decode_array(op.quantiles), np.quantile(want, levels), scale)
    # The im2col spectrum is logged beside it, unchanged.
    groups = conv.groups
    im2col = weight.astype(np.float64).reshape(groups, weight.shape[0] // groups, -1)
    values = arrays.decode_array(step.singular_values)
    close(values, np.stack([np.linalg.svd(m, compute_uv=False) for m in im2col]), scale)
    assert step.coverage == pb.SPECTRUM_COVERAGE_FULL


def test_input_size_alone_logs_the_operator_norm_as_the_analysis_computes_it(
    writer, tmp_path, read_values
):
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, stride=2)
    writer.add_singular_values("conv", conv.weight, 0, input_size=(12, 12), stride=2)
    writer.add_singular_values("conv", conv, 1, input_size=12)  # the module gives its stride
    writer.flush()
    first, second = written_steps(read_values, tmp_path, "conv")
    reference = operator_singular_values(conv.weight.detach().numpy(), 12, stride=2)
    for step in (first, second):
        op = step.operator
        assert op.norm_only and op.error == "" and not op.HasField("top_values")
        assert list(op.input_size) == [12, 12] and list(op.stride) == [2, 2]
        assert list(op.grid_size) == [6, 6]  # min(16, n / stride): the exact grid here
        assert op.operator_norm == pytest.approx(float(reference[0]), rel=64 * EPS32)
        assert op.operator_norm == pytest.approx(
            conv_operator.conv_operator_norm(conv.weight, 12, stride=2), rel=EPS32
        )
        assert op.count == reference.size
        assert op.frobenius_norm == pytest.approx(np.sqrt(np.sum(reference**2)), rel=64 * EPS32)
        assert op.seconds > 0


def test_on_a_large_input_the_norm_comes_from_a_16_point_grid():
    torch.manual_seed(3)
    weight = torch.randn(4, 4, 3, 3)
    step = step_of(spectrum_pb("conv", weight, input_size=(64, 48)))
    op = step.operator
    assert list(op.grid_size) == [16, 16] and op.count == 4 * 64 * 48
    # The norm on a 16 x 16 grid is the circular operator's norm on a 16 x 16 input,
    # and a lower bound of (here: close to) the norm at 64 x 48.
    on_grid = operator_singular_values(weight.numpy(), 16)[0]
    assert op.operator_norm == pytest.approx(float(on_grid), rel=64 * EPS32)
    exact = float(conv_operator.conv_singular_values(weight, (64, 48), top_k=1)[0])
    assert on_grid <= exact * (1 + 64 * EPS32) and on_grid > 0.97 * exact


def test_the_stride_need_not_divide_the_input_for_the_norm():
    step = step_of(spectrum_pb("conv", torch.randn(2, 2, 3, 3), input_size=7, stride=2))
    op = step.operator
    assert op.error == "" and op.operator_norm > 0 and op.count == 0
    assert math.isnan(op.frobenius_norm) and math.isnan(op.stable_rank)


def test_a_non_finite_conv_weight_records_both_errors_and_warns(writer, tmp_path, read_values):
    weight = torch.randn(3, 2, 3, 3)
    weight[1, 0, 2, 2] = math.inf
    with pytest.warns(RuntimeWarning, match="not measured"):
        writer.add_singular_values("conv", weight, 0, input_size=5, operator="full")
    writer.flush()
    (step,) = written_steps(read_values, tmp_path, "conv")
    assert step.error.startswith("non-finite weight")
    assert step.operator.error.startswith("non-finite weight")
    assert math.isnan(step.operator.operator_norm) and not step.operator.norm_only


def test_a_failing_operator_decomposition_is_recorded_with_a_warning(monkeypatch):
    def fails(*args, **kwargs):
        raise torch.linalg.LinAlgError("did not converge")

    monkeypatch.setattr(conv_operator, "conv_operator_spectrum", fails)
    with pytest.warns(RuntimeWarning, match="operator spectrum of 'conv' not measured"):
        step = step_of(spectrum_pb("conv", torch.randn(3, 2, 3, 3), input_size=5))
    assert step.error == "" and step.metrics.spectral_norm > 0
    assert "did not converge" in step.operator.error


def test_layers_without_operator_arguments_carry_no_operator():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step = step_of(spectrum_pb("conv", torch.nn.Conv2d(2, 3, 3)))
    assert not step.HasField("operator")


@pytest.mark.parametrize(
    "value,kwargs,words",
    [
        (
            torch.randn(3, 2, 3, 3),
            {"operator": "exact", "input_size": 4},
            "operator must be 'norm'",
        ),
        (torch.randn(3, 2, 3, 3), {"operator": "norm"}, "needs input_size="),
        (torch.randn(3, 2, 3, 3), {"stride": 2}, "pass input_size="),
        (torch.randn(3, 2, 3, 3), {"input_size": (4, 4, 4)}, "2 of them"),
        (torch.randn(3, 2, 3, 3), {"input_size": (4, 0)}, "input_size must be an integer >= 1"),
        (torch.randn(3, 2, 3, 3), {"input_size": 4, "stride": (1, 0)}, "stride must be"),
        (
            torch.randn(3, 2, 3, 3),
            {"input_size": 7, "stride": 2, "operator": "full"},
            "not a multiple",
        ),
        (torch.randn(3, 2, 3, 3), {"input_size": 4, "groups": 2}, "does not divide"),
        (torch.randn(3, 2, 3, 3), {"input_size": 4, "operator_top_k": 0}, "operator_top_k"),
        (torch.randn(4, 6), {"input_size": 4}, "convolution weight"),
        (torch.nn.Linear(4, 3), {"input_size": 4}, "Conv1d/Conv2d/Conv3d modules, got Linear"),
        (torch.nn.ConvTranspose2d(2, 3, 3), {"input_size": 4}, "ConvTranspose2d"),
        (torch.nn.LazyConv2d(3, 3), {"input_size": 4}, "forward pass first"),
        (torch.randn(3, 2, 3, 3), {"input_size": 4, "layer_kind": "ConvTranspose2d"}, "transposed"),
    ],
)
def test_bad_operator_arguments_raise_saying_what_to_pass(writer, value, kwargs, words):
    with pytest.raises(ValueError, match=words):
        writer.add_singular_values("conv", value, 0, **kwargs)


def test_a_precomputed_spectrum_has_no_weight_for_an_operator(writer):
    from deepscope.analysis.spectrum import layer_spectrum

    spectrum = layer_spectrum(torch.randn(3, 18), layer_kind="Conv2d")
    with pytest.raises(ValueError, match="needs the convolution's weight"):
        writer.add_singular_values("conv", spectrum, 0, input_size=4)


def test_the_builder_stores_the_analysis_result_field_for_field():
    from deepscope.writer.spectrum import operator_message

    torch.manual_seed(4)
    weight = torch.randn(4, 2, 3, 3)
    result = conv_operator.conv_operator_spectrum(weight, (6, 4), stride=2, full=True, top_k=5)
    message = operator_message(result)
    assert list(message.input_size) == list(result.input_size)
    assert list(message.stride) == list(result.stride)
    assert list(message.grid_size) == list(result.grid_size)
    assert message.count == result.count and message.norm_only == result.norm_only
    for name in ("operator_norm", "frobenius_norm", "stable_rank"):
        assert getattr(message, name) == pytest.approx(getattr(result, name), rel=1e-15)
    np.testing.assert_array_equal(arrays.decode_array(message.top_values), result.top_values)
    np.testing.assert_array_equal(arrays.decode_array(message.quantiles), result.quantiles)
    np.testing.assert_allclose(message.quantile_levels, result.quantile_levels, rtol=0, atol=0)
    # ... and the analysis' values are the explicit operator's.
    want = operator_singular_values(weight.numpy(), (6, 4), stride=2)
    close(result.top_values, want[:5], float(want[0]))
