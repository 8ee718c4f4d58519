"""Singular value spectra summaries: the `spectrum_pb` builder and `add_singular_values`.

One series per layer (tag). Its metadata (`SpectrumInfo`, on the tag's first
event) holds the weight's shape, the layer's kind, the matrix rule and the
decomposed matrices' shape; each step is a blob sequence whose first blob is a
`SpectrumStep`: the singular values as float32 [groups, k] (4 bytes each), the
health metrics, and an error when the spectrum could not be measured.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from tensorboard.compat.proto import summary_pb2

from deepscope.analysis import spectrum as spectrum_math
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import blob_sequence_summary
from deepscope.writer.warning_location import stacklevel_outside_deepscope

WeightOrSpectrum = torch.Tensor | np.ndarray | torch.nn.Module | spectrum_math.Spectrum


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
    if values.shape[1] != min(shape[1], shape[2]):
        raise ValueError(
            f"a {shape[1]} x {shape[2]} matrix has {min(shape[1], shape[2])} singular values "
            f"per group, got {values.shape[1]}: the metrics (condition number, ranks, "
            "Marchenko-Pastur edge) need the whole spectrum"
        )


def spectrum_info(spectrum: spectrum_math.Spectrum) -> pb.SpectrumInfo:
    """The series' constant facts for its metadata."""
    return pb.SpectrumInfo(
        weight_shape=[int(n) for n in spectrum.weight_shape],
        layer_kind=spectrum.layer_kind,
        matrix_rule=spectrum.matrix_rule,
        matrix_shape=[int(n) for n in spectrum.matrix_shape],
    )


def spectrum_step(spectrum: spectrum_math.Spectrum) -> pb.SpectrumStep:
    """One step's `SpectrumStep`: float32 singular values [groups, k], metrics, error, seconds.

    Singular values that are not finite and non-negative (from a hand-made
    Spectrum) are recorded with an error and NaN metrics, as a failed
    measurement is.
    """
    start = time.perf_counter()
    values = spectrum.singular_values
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values)
    stored = -np.sort(-values.astype(np.float32), axis=1)  # rows descending (NaN last)
    error = spectrum.error
    metrics = spectrum_math.SpectrumMetrics.unmeasured()
    if not error:
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            error = "singular values that are not finite and non-negative"
        else:
            metrics = spectrum_math.spectrum_metrics(
                values, spectrum.matrix_shape, eps=_eps(values)
            )
    step = pb.SpectrumStep(
        singular_values=arrays.encode_array(stored),
        metrics=pb.SpectrumMetrics(**vars(metrics)),
        error=error,
    )
    step.seconds = spectrum.seconds + (time.perf_counter() - start)
    return step


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
) -> summary_pb2.Summary:
    """A `Summary` with one step of a layer's singular value spectrum, its metadata included.

    For writers other than deepscope's: `file_writer.add_summary(spectrum_pb(...), step)`.
    Arguments as for `SummaryWriter.add_singular_values`; a non-finite weight
    gives a step with its `error` set and a RuntimeWarning.
    """
    spectrum = compute_spectrum(
        weight_or_singular_values, groups=groups, layer_kind=layer_kind, dtype=dtype
    )
    step = spectrum_step(spectrum)
    _warn_if_failed(tag, step)
    return spectrum_summary(tag, step, spectrum_info(spectrum), description)


def _warn_if_failed(tag: str, step: pb.SpectrumStep) -> None:
    """A RuntimeWarning for a failed step, at the user's line (the first outside deepscope)."""
    if step.error:
        warnings.warn(
            f"deepscope: spectrum of {tag!r} not measured: {step.error}; the step is "
            "recorded with its error and NaN metrics",
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
    ) -> None:
        """Log the singular values of a layer's weight, and its health metrics.

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

        A non-finite weight, or an SVD that does not converge, is recorded as a
        step with its `error` set and NaN metrics, with a RuntimeWarning.

        Raises:
          ValueError: a tensor of fewer than 2 dimensions (or other bad input).
        """
        summary = spectrum_pb(
            tag,
            weight_or_singular_values,
            groups=groups,
            layer_kind=layer_kind,
            dtype=dtype,
            description=description,
        )
        self._write(summary, global_step, walltime)

    def _add_spectrum(
        self,
        tag: str,
        spectrum: spectrum_math.Spectrum,
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
    ) -> pb.SpectrumStep:
        """Log a computed `Spectrum` without warning; returns the step written (watch() counts
        its errors)."""
        _check_spectrum(spectrum)
        step = spectrum_step(spectrum)
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
        self._write(spectrum_summary(tag, step, info, description), global_step, walltime)
        return step
