"""Singular value spectra summaries: the `spectrum_pb` builder and `add_singular_values`.

One series per layer (tag). Its metadata (`SpectrumInfo`, on the tag's first
event) holds the weight's shape, the layer's kind, the matrix rule and the
decomposed matrices' shape; each step is a blob sequence whose first blob is a
`SpectrumStep`: the singular values as float32 [groups, k] (4 bytes each), the
health metrics, how much of the spectrum they are (`coverage`: all of it, the
top k, or the norm only), and an error when the spectrum could not be measured.

Conv layers may also carry their operator spectrum (`SpectrumStep.operator`):
the singular values of the linear map the convolution applies to an input of
`input_size` (Sedghi, Gupta & Long 2019, `deepscope.analysis.conv_operator`),
exact for circular padding — an approximation for zero padding (whose
operator's singular values were measured lower: 6.67 against 6.99). The
im2col matrix's singular values above are not that operator's: its norm is
between 1 and sqrt(kh*kw) times smaller. `operator_spectrum` builds it, the
operator norm alone by default (cheap: nearly independent of the input size)
or the whole spectrum (its top values and quantiles) on request.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from tensorboard.compat.proto import summary_pb2

from deepscope.analysis import spectrum as spectrum_math
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import blob_sequence_summary
from deepscope.writer.warning_location import stacklevel_outside_deepscope

WeightOrSpectrum = torch.Tensor | np.ndarray | torch.nn.Module | spectrum_math.Spectrum

# What `operator=` may ask for: the operator norm only, or the whole spectrum.
OPERATOR_CHOICES = ("norm", "full")
# Largest operator singular values stored with a full spectrum (with the whole spectrum's
# quantiles, analysis.conv_operator.DEFAULT_QUANTILE_LEVELS, for its histogram).
DEFAULT_OPERATOR_TOP_K = 32
# Frequency grid (per spatial dimension) of the operator norm: sigma_max on a 16 x 16 grid
# was within 0.15% of the 224 x 224 value on ResNet-18's convs (issue 12).
DEFAULT_OPERATOR_GRID = 16
_COVERAGE = {
    "full": pb.SPECTRUM_COVERAGE_FULL,
    "top_k": pb.SPECTRUM_COVERAGE_TOP_K,
    "norm_only": pb.SPECTRUM_COVERAGE_NORM_ONLY,
}


def compute_spectrum(
    weight_or_singular_values: WeightOrSpectrum,
    *,
    groups: int | None = None,
    layer_kind: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> spectrum_math.Spectrum:
    """The `Spectrum` to log for a weight, a module, or a precomputed `Spectrum`.

    A module gives its `weight`, kind and groups (`spectrum.module_weight`);
    `groups` and `layer_kind` override them. Numerical trouble (non-finite
    weight, SVD not converging) comes back in the Spectrum's `error`.

    Raises:
      ValueError: a tensor of fewer than 2 dimensions, a module without a
        weight of 2 or more dimensions, or a malformed Spectrum.
      TypeError: anything else.
    """
    value = weight_or_singular_values
    if isinstance(value, spectrum_math.Spectrum):
        _check_spectrum(value)
        return value
    if isinstance(value, torch.nn.Module):
        layer = spectrum_math.module_weight(value)
        if layer is None:
            raise ValueError(
                f"{type(value).__name__} has no initialised weight of 2 or more dimensions "
                "to take a spectrum of; pass the weight tensor itself"
            )
        value = layer.weight
        groups = layer.groups if groups is None else groups
        layer_kind = layer.layer_kind if layer_kind is None else layer_kind
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            "add_singular_values takes a weight (torch.Tensor or numpy array of 2 or more "
            "dimensions), a torch.nn.Module, or a deepscope.Spectrum; "
            f"got {type(value).__name__}"
        )
    if value.ndim < 2:
        raise ValueError(
            f"add_singular_values needs a weight of 2 or more dimensions (e.g. a Linear's "
            f"(out, in)), got a tensor of shape {list(value.shape)}; to log singular values "
            "you computed yourself, pass deepscope.Spectrum("
            "singular_values=[groups, k] tensor, matrix_shape=(groups, rows, cols))"
        )
    if not value.is_floating_point():
        value = value.to(torch.float32)
    return spectrum_math.layer_spectrum(
        value, groups=1 if groups is None else groups, layer_kind=layer_kind, dtype=dtype
    )


def _check_spectrum(spectrum: spectrum_math.Spectrum) -> None:
    values = spectrum.singular_values
    shape = tuple(spectrum.matrix_shape)
    if not isinstance(values, torch.Tensor | np.ndarray):
        raise TypeError(
            "Spectrum.singular_values must be a tensor or numpy array of shape [groups, k]"
        )
    if len(shape) != 3 or values.ndim != 2 or values.shape[0] != shape[0]:
        raise ValueError(
            f"Spectrum.singular_values must have shape [groups, k] with groups = "
            f"matrix_shape[0], and matrix_shape must be (groups, rows, cols); got values "
            f"of shape {list(values.shape)} and matrix_shape {list(shape)}"
        )
    coverage = _coverage(spectrum)
    if coverage != "full" and values.shape[1] <= min(shape[1], shape[2]):
        return
    if values.shape[1] != min(shape[1], shape[2]):
        raise ValueError(
            f"a {shape[1]} x {shape[2]} matrix has {min(shape[1], shape[2])} singular values "
            f"per group, got {values.shape[1]}: the metrics (condition number, ranks, "
            "Marchenko-Pastur edge) need the whole spectrum"
        )


# ---------------------------------------------------------------------------
# The operator spectrum of a convolution


def _per_dim(value, dims: int, what: str, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of `dims` ints, each >= minimum, as a tuple of `dims` ints."""
    items = [value] * dims if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(items, torch.Size):
        items = list(items)
    if (
        not isinstance(items, Sequence)
        or isinstance(items, str)
        or len(items) != dims
        or any(isinstance(n, bool) or not isinstance(n, int | np.integer) for n in items)
        or any(int(n) < minimum for n in items)
    ):
        raise ValueError(
            f"{what} must be an integer >= {minimum} or {dims} of them (one per spatial "
            f"dimension of the kernel), got {value!r}"
        )
    return tuple(int(n) for n in items)


def operator_geometry(
    weight_shape: Sequence[int],
    input_size,
    *,
    stride=1,
    dilation=1,
    groups: int = 1,
    layer_kind: str | None = None,
    full: bool = False,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Check a request for a conv weight's operator spectrum; (input_size, stride, dilation).

    Args:
      weight_shape: (out, in/groups, *kernel), 1 to 3 spatial dimensions.
      input_size: the spatial sizes of the input the layer sees, e.g. (32, 32) (an int
        for every dimension alike).
      stride, dilation: the layer's, an int or one per spatial dimension.
      groups: the layer's groups (must divide out).
      layer_kind: a transposed convolution ("ConvTranspose2d") is refused.
      full: the whole spectrum is asked for: the stride must divide the input size
        (the operator norm alone does not need it).

    Raises:
      ValueError: saying what to pass instead.
    """
    shape = tuple(int(n) for n in weight_shape)
    kind = layer_kind or ""
    if kind.startswith("ConvTranspose"):
        raise ValueError(
            f"the operator spectrum of a transposed convolution ({kind}) is not computed: "
            "leave operator= and input_size= out to log the im2col spectrum alone"
        )
    if not 3 <= len(shape) <= 5:
        raise ValueError(
            "an operator spectrum needs a convolution weight (out, in/groups, *kernel) with "
            f"1 to 3 spatial dimensions, got a weight of shape {list(shape)}; leave "
            "operator= and input_size= out for other layers"
        )
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if shape[0] % groups:
        raise ValueError(
            f"groups={groups} does not divide the {shape[0]} output channels of a weight "
            f"of shape {list(shape)}; pass the layer's own groups (e.g. conv.groups)"
        )
    dims = len(shape) - 2
    size = _per_dim(input_size, dims, "input_size")
    strides = _per_dim(stride, dims, "stride")
    dilations = _per_dim(dilation, dims, "dilation")
    if full and any(n % s for n, s in zip(size, strides)):
        raise ValueError(
            f"input_size {list(size)} is not a multiple of the stride {list(strides)}: the "
            "whole spectrum of a strided circular convolution is defined on inputs whose "
            "sizes the stride divides; pass the nearest such size, or operator='norm'"
        )
    return size, strides, dilations


def operator_spectrum(
    weight: torch.Tensor,
    input_size: Sequence[int] | int,
    *,
    stride: Sequence[int] | int = 1,
    dilation: Sequence[int] | int = 1,
    groups: int = 1,
    full: bool = False,
    top_k: int = DEFAULT_OPERATOR_TOP_K,
    grid: int = DEFAULT_OPERATOR_GRID,
    warm_start=None,
) -> pb.OperatorSpectrum:
    """A conv weight's operator spectrum as a step stores it (`OperatorSpectrum`).

    The operator norm alone (`full` False: sigma_max on a frequency grid of
    min(grid, n/stride) per dimension, with the exact Frobenius norm and the
    stable rank), or the whole spectrum: its `top_k` largest singular values
    (float32, descending), its quantiles at
    `analysis.conv_operator.DEFAULT_QUANTILE_LEVELS`, its count, Frobenius norm
    and stable rank (`analysis.conv_operator.conv_operator_spectrum`). Arguments
    are assumed checked (`operator_geometry`); numerical trouble (a non-finite
    weight, a decomposition that fails) comes back in the message's `error`.
    warm_start: the layer's `analysis.conv_operator.NormWarmStart`, kept
    between its measurements (the norm's Lanczos starts where it last ended).
    """
    from deepscope.analysis import conv_operator

    start = time.perf_counter()
    with torch.no_grad():
        kernel = weight.detach()
        if not kernel.is_floating_point():
            kernel = kernel.to(torch.float32)
        error = ""
        if not bool(torch.isfinite(kernel).all()):
            error = "non-finite weight: no operator spectrum measured"
        else:
            try:
                result = conv_operator.conv_operator_spectrum(
                    kernel,
                    input_size,
                    stride=stride,
                    groups=groups,
                    dilation=dilation,
                    top_k=top_k,
                    full=full,
                    grid=grid,
                    warm_start=warm_start,
                )
            except (RuntimeError, ArithmeticError) as failure:  # LinAlgError is one
                error = f"the operator spectrum could not be computed: {failure}"
    if error:
        dims = weight.ndim - 2
        return pb.OperatorSpectrum(
            input_size=_per_dim(input_size, dims, "input_size"),
            stride=_per_dim(stride, dims, "stride"),
            padding_rule=conv_operator.PADDING_RULE,
            operator_norm=math.nan,
            norm_only=not full,
            frobenius_norm=math.nan,
            stable_rank=math.nan,
            error=error,
            seconds=time.perf_counter() - start,
        )
    message = operator_message(result)
    message.seconds = time.perf_counter() - start
    return message


def operator_message(result) -> pb.OperatorSpectrum:
    """An `analysis.conv_operator.OperatorSpectrumResult` as an `OperatorSpectrum` message."""
    message = pb.OperatorSpectrum(
        input_size=[int(n) for n in result.input_size],
        stride=[int(n) for n in result.stride],
        padding_rule=str(result.padding_rule),
        operator_norm=float(result.operator_norm),
        norm_only=bool(result.norm_only),
        quantile_levels=[float(q) for q in result.quantile_levels],
        count=int(result.count),
        frobenius_norm=float(result.frobenius_norm),
        stable_rank=float(result.stable_rank),
        grid_size=[int(n) for n in result.grid_size],
        seconds=float(result.seconds),
        error=str(getattr(result, "error", "") or ""),
    )
    top = np.asarray(result.top_values, dtype=np.float32).ravel()
    if top.size:
        message.top_values.CopyFrom(arrays.encode_array(-np.sort(-top)))
    quantiles = np.asarray(result.quantiles, dtype=np.float32).ravel()
    if quantiles.size:
        message.quantiles.CopyFrom(arrays.encode_array(quantiles))
    if not message.error and not math.isfinite(message.operator_norm):
        message.error = "the operator norm is not finite"
    return message


def requested_operator(
    weight_or_singular_values: WeightOrSpectrum,
    *,
    operator: str | None = None,
    input_size=None,
    stride=None,
    dilation=None,
    groups: int | None = None,
    layer_kind: str | None = None,
    top_k: int = DEFAULT_OPERATOR_TOP_K,
) -> pb.OperatorSpectrum | None:
    """The operator spectrum `add_singular_values(..., operator=, input_size=)` asks for.

    None when neither is given. `input_size` alone means `operator="norm"`. A
    module gives its own stride, dilation, groups and kind; for a weight tensor
    they default to 1 and "Conv". Numerical trouble is in the message's `error`.

    Raises:
      ValueError: `operator` not "norm", "full" or None; `operator` without
        `input_size`; a precomputed Spectrum (there is no weight); a weight that is
        no convolution's; bad sizes, strides or top_k.
    """
    if operator is None and input_size is None:
        if stride is not None or dilation is not None:
            raise ValueError(
                "stride= and dilation= describe the convolution whose operator spectrum is "
                "logged: pass input_size= (the input's spatial sizes) with them"
            )
        return None
    if operator is None:
        operator = "norm"
    if operator not in OPERATOR_CHOICES:
        raise ValueError(
            f"operator must be 'norm' (the operator norm), 'full' (the whole operator "
            f"spectrum) or None (the im2col spectrum only), got {operator!r}"
        )
    if input_size is None:
        raise ValueError(
            f"operator={operator!r} needs input_size=, the spatial sizes of the input the "
            "convolution sees (e.g. input_size=(32, 32) for 32 x 32 images): the operator's "
            "singular values depend on it"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"operator_top_k must be a positive integer, got {top_k!r}")
    value = weight_or_singular_values
    if isinstance(value, spectrum_math.Spectrum):
        raise ValueError(
            "an operator spectrum needs the convolution's weight, not precomputed singular "
            "values: pass the conv module or its weight"
        )
    if isinstance(value, torch.nn.Module):
        conv = value
        if not isinstance(conv, torch.nn.modules.conv._ConvNd) or conv.transposed:
            kind = type(conv).__name__
            raise ValueError(
                f"operator= is for Conv1d/Conv2d/Conv3d modules, got {kind}: leave operator= "
                "and input_size= out to log its im2col spectrum"
            )
        if torch.nn.parameter.is_lazy(conv.weight):
            raise ValueError(
                f"{type(conv).__name__} has no initialised weight yet: run a forward pass first"
            )
        value = conv.weight
        stride = conv.stride if stride is None else stride
        dilation = conv.dilation if dilation is None else dilation
        groups = conv.groups if groups is None else groups
        if layer_kind is None:
            layer = spectrum_math.module_weight(conv)
            layer_kind = layer.layer_kind if layer is not None else None
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"an operator spectrum needs a conv weight tensor or module, got {type(value).__name__}"
        )
    if not value.is_floating_point():
        value = value.to(torch.float32)
    size, strides, dilations = operator_geometry(
        value.shape,
        tuple(input_size) if isinstance(input_size, torch.Size) else input_size,
        stride=1 if stride is None else stride,
        dilation=1 if dilation is None else dilation,
        groups=1 if groups is None else groups,
        layer_kind=layer_kind,
        full=operator == "full",
    )
    return operator_spectrum(
        value,
        size,
        stride=strides,
        dilation=dilations,
        groups=1 if groups is None else groups,
        full=operator == "full",
        top_k=top_k,
    )


def spectrum_info(spectrum: spectrum_math.Spectrum) -> pb.SpectrumInfo:
    """The series' constant facts for its metadata."""
    return pb.SpectrumInfo(
        weight_shape=[int(n) for n in spectrum.weight_shape],
        layer_kind=spectrum.layer_kind,
        matrix_rule=spectrum.matrix_rule,
        matrix_shape=[int(n) for n in spectrum.matrix_shape],
    )


def spectrum_step(
    spectrum: spectrum_math.Spectrum, operator: pb.OperatorSpectrum | None = None
) -> pb.SpectrumStep:
    """One step's `SpectrumStep`: float32 singular values [groups, k], metrics, coverage,
    error, seconds, and a conv layer's `operator` spectrum when given.

    Singular values that are not finite and non-negative (from a hand-made
    Spectrum) are recorded with an error and NaN metrics, as a failed
    measurement is. A spectrum that holds the top k singular values only
    (`Spectrum.coverage` "top_k" or "norm_only", from the big-matrix path of
    `analysis.spectrum`) is marked so, and carries the metrics it has.
    """
    start = time.perf_counter()
    values = spectrum.singular_values
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    stored = -np.sort(-values.astype(np.float32), axis=1)  # rows descending (NaN last)
    error = spectrum.error
    coverage = _coverage(spectrum)
    metrics = spectrum_math.SpectrumMetrics.unmeasured()
    if not error:
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            error = "singular values that are not finite and non-negative"
        else:
            metrics = _metrics(spectrum, values, coverage)
    step = pb.SpectrumStep(
        singular_values=arrays.encode_array(stored),
        metrics=pb.SpectrumMetrics(**vars(metrics)),
        error=error,
        coverage=_COVERAGE[coverage],
    )
    if operator is not None:
        step.operator.CopyFrom(operator)
    step.seconds = spectrum.seconds + (time.perf_counter() - start)
    return step


def _coverage(spectrum: spectrum_math.Spectrum) -> str:
    coverage = getattr(spectrum, "coverage", "full") or "full"
    if coverage not in _COVERAGE:
        raise ValueError(f"Spectrum.coverage must be one of {sorted(_COVERAGE)}, got {coverage!r}")
    return coverage


def _metrics(
    spectrum: spectrum_math.Spectrum, values: np.ndarray, coverage: str
) -> spectrum_math.SpectrumMetrics:
    """The metrics of a step's singular values; only those its coverage allows."""
    if coverage == "full":
        return spectrum_math.spectrum_metrics(values, spectrum.matrix_shape, eps=_eps(values))
    return spectrum_math.partial_spectrum_metrics(spectrum)


def unchanged_spectrum_step(unchanged_since_step: int) -> pb.SpectrumStep:
    """A step whose weight equals, bit for bit, the one measured at `unchanged_since_step`."""
    return pb.SpectrumStep(unchanged=True, unchanged_since_step=int(unchanged_since_step))


def _eps(values: np.ndarray) -> float:
    return float(np.finfo(np.float64 if values.dtype == np.float64 else np.float32).eps)


def spectrum_summary(
    tag: str, step: pb.SpectrumStep, info: pb.SpectrumInfo | None, description: str = ""
) -> summary_pb2.Summary:
    """Wrap a `SpectrumStep` in a `Summary`; `info` None leaves the metadata out."""
    plugin_data = None
    if info is not None:
        plugin_data = pb.PluginData(kind=pb.SPECTRUM, spectrum=info)
    return blob_sequence_summary(tag, [step.SerializeToString()], plugin_data, description)


def spectrum_pb(
    tag: str,
    weight_or_singular_values: WeightOrSpectrum,
    *,
    groups: int | None = None,
    layer_kind: str | None = None,
    dtype: torch.dtype = torch.float32,
    description: str = "",
    operator: str | None = None,
    input_size=None,
    stride=None,
    dilation=None,
    operator_top_k: int = DEFAULT_OPERATOR_TOP_K,
) -> summary_pb2.Summary:
    """A `Summary` with one step of a layer's singular value spectrum, its metadata included.

    For writers other than deepscope's: `file_writer.add_summary(spectrum_pb(...), step)`.
    Arguments as for `SummaryWriter.add_singular_values`; a non-finite weight
    gives a step with its `error` set and a RuntimeWarning. (Its step carries no
    `start`: that summary is kept per series by `SummaryWriter`.)
    """
    step, info = spectrum_parts(
        tag,
        weight_or_singular_values,
        groups=groups,
        layer_kind=layer_kind,
        dtype=dtype,
        operator=operator,
        input_size=input_size,
        stride=stride,
        dilation=dilation,
        operator_top_k=operator_top_k,
    )
    return spectrum_summary(tag, step, info, description)


def spectrum_parts(
    tag: str,
    weight_or_singular_values: WeightOrSpectrum,
    *,
    groups: int | None = None,
    layer_kind: str | None = None,
    dtype: torch.dtype = torch.float32,
    operator: str | None = None,
    input_size=None,
    stride=None,
    dilation=None,
    operator_top_k: int = DEFAULT_OPERATOR_TOP_K,
) -> tuple[pb.SpectrumStep, pb.SpectrumInfo]:
    """`spectrum_pb`'s step and series info, before they are wrapped in a `Summary`."""
    requested = requested_operator(
        weight_or_singular_values,
        operator=operator,
        input_size=input_size,
        stride=stride,
        dilation=dilation,
        groups=groups,
        layer_kind=layer_kind,
        top_k=operator_top_k,
    )
    spectrum = compute_spectrum(
        weight_or_singular_values, groups=groups, layer_kind=layer_kind, dtype=dtype
    )
    step = spectrum_step(spectrum, requested)
    _warn_if_failed(tag, step)
    return step, spectrum_info(spectrum)


def spectrum_start(step: pb.SpectrumStep, global_step: int) -> pb.SpectrumStart | None:
    """The `SpectrumStart` a good measured step makes (None for a failed or unchanged one)."""
    if step.error or step.unchanged:
        return None
    metrics = step.metrics
    return pb.SpectrumStart(
        step=int(global_step),
        effective_rank=metrics.effective_rank,
        stable_rank=metrics.stable_rank,
        num_above_mp_edge=metrics.num_above_mp_edge,
        spectral_norm=metrics.spectral_norm,
        coverage=step.coverage,
    )


def _warn_if_failed(tag: str, step: pb.SpectrumStep) -> None:
    """A RuntimeWarning for a failed step, at the user's line (the first outside deepscope)."""
    if step.error:
        warnings.warn(
            f"deepscope: spectrum of {tag!r} not measured: {step.error}; the step is "
            "recorded with its error and NaN metrics",
            RuntimeWarning,
            stacklevel=stacklevel_outside_deepscope(),
        )
    elif step.HasField("operator") and step.operator.error:
        warnings.warn(
            f"deepscope: operator spectrum of {tag!r} not measured: {step.operator.error}; "
            "the step is recorded with it (the im2col spectrum was measured)",
            RuntimeWarning,
            stacklevel=stacklevel_outside_deepscope(),
        )


class SpectrumSummaries:
    """Mixin of `deepscope.SummaryWriter`: the spectrum `add_*` methods.

    Needs the writer core's `_write` and `_series_plugin_data`.
    """

    def add_singular_values(
        self,
        tag: str,
        weight_or_singular_values: WeightOrSpectrum,
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        groups: int | None = None,
        layer_kind: str | None = None,
        dtype: torch.dtype = torch.float32,
        description: str = "",
        operator: str | None = None,
        input_size=None,
        stride=None,
        dilation=None,
        operator_top_k: int = DEFAULT_OPERATOR_TOP_K,
    ) -> None:
        """Log the singular values of a layer's weight, and its health metrics.

        For a convolution, also the singular values of the operator it applies
        (`operator=`, `input_size=`): e.g.
        `add_singular_values("conv1", model.conv1, step, input_size=(32, 32))`
        logs conv1's operator norm (its Lipschitz constant on 32 x 32 inputs)
        beside its im2col spectrum.

        Args:
          tag: the series, e.g. "spectra/layer1.0.conv1".
          weight_or_singular_values: a weight tensor (or numpy array) of 2 or
            more dimensions; a torch.nn.Module (its weight, kind and groups are
            read); or a `deepscope.Spectrum` computed before.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          groups: a grouped convolution's groups (a module gives its own).
          layer_kind: e.g. "Conv2d", "ConvTranspose2d", "Embedding"; picks the
            matrix rule (see deepscope.analysis.spectrum). A module gives its own.
          dtype: torch.float32 (default) or torch.float64 for the SVD.
          description: shown next to the tag.
          operator: "norm" (the operator norm, cheap), "full" (the operator's
            whole spectrum: its `operator_top_k` largest singular values and
            quantiles) or None (default: none, unless `input_size` is given, which
            means "norm"). Computed for circular padding (Sedghi et al. 2019):
            exact for a circular conv, an approximation for zero padding.
          input_size: the spatial sizes of the conv's input, e.g. (32, 32) (an int
            for all dimensions alike); needed for `operator`.
          stride, dilation: the conv's (a module gives its own; default 1).
          operator_top_k: largest operator singular values kept with "full".

        A non-finite weight, or an SVD that does not converge, is recorded as a
        step with its `error` set and NaN metrics, with a RuntimeWarning (the
        operator spectrum's in its own `error`).

        Raises:
          ValueError: a tensor of fewer than 2 dimensions (or other bad input);
            `operator` for a layer that is no convolution, without `input_size`,
            or with sizes the stride does not divide.
        """
        step, info = spectrum_parts(
            tag,
            weight_or_singular_values,
            groups=groups,
            layer_kind=layer_kind,
            dtype=dtype,
            operator=operator,
            input_size=input_size,
            stride=stride,
            dilation=dilation,
            operator_top_k=operator_top_k,
        )
        self._stamp_start(tag, step, global_step)
        self._write(spectrum_summary(tag, step, info, description), global_step, walltime)

    def _stamp_start(self, tag: str, step: pb.SpectrumStep, global_step: int | None) -> None:
        """Give `step` its series' `start` (the first good step this writer wrote of `tag`),
        or remember it as the start when it is the first (SpectrumStep.start)."""
        starts = self.__dict__.setdefault("_spectrum_starts", {})
        known = starts.get(tag)
        if known is not None:
            step.start.CopyFrom(known)
            return
        start = spectrum_start(step, 0 if global_step is None else global_step)
        if start is not None:
            starts[tag] = start

    def _add_spectrum(
        self,
        tag: str,
        spectrum: spectrum_math.Spectrum,
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
        operator: pb.OperatorSpectrum | None = None,
    ) -> pb.SpectrumStep:
        """Log a computed `Spectrum` (and a conv's `operator` spectrum) without warning;
        returns the step written (watch() counts its errors)."""
        _check_spectrum(spectrum)
        step = spectrum_step(spectrum, operator)
        self._stamp_start(tag, step, global_step)
        self._write(
            spectrum_summary(tag, step, spectrum_info(spectrum), description), global_step, walltime
        )
        return step

    def add_unchanged_spectrum(
        self,
        tag: str,
        unchanged_since_step: int,
        global_step: int | None = None,
        walltime: float | None = None,
        *,
        info: pb.SpectrumInfo | None = None,
        description: str = "",
    ) -> pb.SpectrumStep:
        """Log that a layer's weight is bit for bit the one whose spectrum was logged at
        `unchanged_since_step` (the plugin serves that step's spectrum, marked as such).

        `info` (the series' `SpectrumInfo`) is needed only when this is the tag's first
        event in this writer; returns the step written.

        Raises:
          ValueError: the tag's first event without `info`, or a negative step.
        """
        if int(unchanged_since_step) < 0:
            raise ValueError(
                f"unchanged_since_step must be a step >= 0, got {unchanged_since_step}"
            )
        known = self._series_plugin_data(tag)
        if info is None and (known is None or known.kind != pb.SPECTRUM):
            raise ValueError(
                f"{tag!r} has no spectrum logged by this writer: log the measured spectrum "
                "first (add_singular_values), or pass info=its SpectrumInfo"
            )
        step = unchanged_spectrum_step(unchanged_since_step)
        self._stamp_start(tag, step, global_step)
        self._write(spectrum_summary(tag, step, info, description), global_step, walltime)
        return step
