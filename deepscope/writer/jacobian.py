"""Jacobian-spectrum summaries: each map's Jacobian singular values on fixed probe samples.

One step holds several maps (module names, "" for the whole network) measured
on the same S probe samples by `deepscope.jacobian_singular_values`: per map
its input and output dimension, the singular values per sample (float32
[M, S, K], descending, NaN-padded: the whole spectrum where the map is small,
else the top k), the mean squared singular value ‖J‖_F²/min(m, n) and
log|det J| per sample (NaN where the map is not square), and the error of a
map that could not be measured. A series is a tensor series (small per-step
payloads: 10 maps × 8 samples × 32 values ≈ 10 kB a step); its metadata,
`JacobianInfo`, names the network output the end-to-end map ends at.

The builder works with any object carrying `JacobianSpectrum`'s fields
(input_dim, output_dim, singular_values, full, mean_squared, log_abs_det), so
it needs no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

if TYPE_CHECKING:
    from deepscope.analysis.jacobian import JacobianSpectrum

# The name of the whole network's map (input → output) among a step's maps.
NETWORK = ""

# A map's result: its spectrum, or why it could not be measured (a message or the exception).
MapResult = Union["JacobianSpectrum", str, BaseException]

_FIELDS = ("input_dim", "output_dim", "singular_values", "full", "mean_squared", "log_abs_det")


def jacobian_info(output: str = "") -> pb.PluginData:
    """The series' `PluginData`: the network output the end-to-end map ends at (e.g. "logits").

    Raises:
      TypeError: output is not a string.
    """
    if not isinstance(output, str):
        raise TypeError(f"output must be a string naming the network's output, got {output!r}")
    return pb.PluginData(kind=pb.JACOBIAN, jacobian=pb.JacobianInfo(output=output))


def _error_text(result) -> str:
    if isinstance(result, BaseException):
        text = f"{type(result).__name__}: {result}"
    else:
        text = str(result)
    text = text.strip() or "not measured"
    return text if len(text) <= 500 else text[:497] + "..."


def jacobian_step(results: Mapping[str, MapResult], seconds: float = 0.0) -> pb.JacobianStep:
    """One step's `JacobianStep` from map name → result.

    Args:
      results: map name ("" for the whole network) → its `JacobianSpectrum`,
        or, for a map that could not be measured, the error (a message or the
        exception). The maps' sample counts may differ (rows are NaN-padded
        to the largest).
      seconds: the measurement's host seconds.

    Raises:
      ValueError: no maps, a repeated or non-string name, a spectrum whose
        arrays do not fit each other (shapes, negative dims or values).
      TypeError: a result that is neither a spectrum nor an error.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            "results must be a non-empty mapping of map name ('' for the whole network) to "
            "the JacobianSpectrum of deepscope.jacobian_singular_values (or an error message)"
        )
    names, spectra, errors = [], [], []
    for name, result in results.items():
        if not isinstance(name, str):
            raise ValueError(f"map names must be strings ('' for the whole network), got {name!r}")
        names.append(name)
        if isinstance(result, (str, BaseException)):
            spectra.append(None)
            errors.append(_error_text(result))
            continue
        if not all(hasattr(result, field) for field in _FIELDS):
            raise TypeError(
                f"result of map {name!r} must be a JacobianSpectrum (from "
                "deepscope.jacobian_singular_values) or an error message, got "
                f"{type(result).__name__}"
            )
        spectra.append(_checked(name, result))
        errors.append("")
    samples = max((s[2].shape[0] for s in spectra if s is not None), default=0)
    width = max((s[2].shape[1] for s in spectra if s is not None), default=0)
    count = len(names)
    dims = np.zeros((count, 2), dtype=np.int64)
    values = np.full((count, samples, width), np.nan, dtype=np.float32)
    mean_squared = np.full((count, samples), np.nan, dtype=np.float32)
    log_abs_det = np.full((count, samples), np.nan, dtype=np.float32)
    full = [False] * count
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, as measured
        for i, spectrum in enumerate(spectra):
            if spectrum is None:
                continue
            dims[i], full[i], sv, ms, ld = spectrum
            values[i, : sv.shape[0], : sv.shape[1]] = sv
            mean_squared[i, : ms.shape[0]] = ms
            log_abs_det[i, : ld.shape[0]] = ld
    return pb.JacobianStep(
        maps=names,
        dims=arrays.encode_array(dims),
        singular_values=arrays.encode_array(values),
        full=full,
        mean_squared=arrays.encode_array(mean_squared),
        log_abs_det=arrays.encode_array(log_abs_det),
        errors=errors,
        seconds=float(seconds),
    )


def _checked(name: str, result) -> tuple:
    """(dims [2], full, σ [S, K], mean squared [S], log|det| [S]) of a spectrum, checked."""
    dims = (int(result.input_dim), int(result.output_dim))
    if min(dims) < 1:
        raise ValueError(f"map {name!r}: input and output dims must be positive, got {dims}")
    sv = np.asarray(result.singular_values, dtype=np.float64)
    if sv.ndim != 2 or sv.shape[0] < 1 or sv.shape[1] < 1:
        raise ValueError(
            f"map {name!r}: singular_values must be [samples, values], got shape {list(sv.shape)}"
        )
    if sv.shape[1] > min(dims):
        raise ValueError(
            f"map {name!r}: {sv.shape[1]} singular values for a {dims[1]} × {dims[0]} "
            f"Jacobian (at most {min(dims)})"
        )
    if np.any(sv < 0):
        raise ValueError(f"map {name!r}: a singular value is negative ({float(np.nanmin(sv))})")
    arrays_1d = []
    for what in ("mean_squared", "log_abs_det"):
        values = np.asarray(getattr(result, what), dtype=np.float64).reshape(-1)
        if values.shape != (sv.shape[0],):
            raise ValueError(
                f"map {name!r}: {what} must hold one value per sample ({sv.shape[0]}), got "
                f"shape {list(values.shape)}"
            )
        arrays_1d.append(values)
    return np.asarray(dims), bool(result.full), sv, arrays_1d[0], arrays_1d[1]


def _as_mapping(spectra) -> Mapping[str, MapResult]:
    if isinstance(spectra, Mapping):
        return spectra
    if all(hasattr(spectra, field) for field in _FIELDS):
        return {NETWORK: spectra}  # one spectrum: the whole network's
    raise TypeError(
        "spectra must be a JacobianSpectrum (the whole network's) or a mapping of map name "
        f"('' for the whole network) to JacobianSpectrum, got {type(spectra).__name__}"
    )


def jacobian_pb(
    tag: str,
    spectra: Mapping[str, MapResult] | JacobianSpectrum,
    *,
    output: str = "",
    seconds: float | None = None,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` with one step of Jacobian spectra, its metadata included.

    For people who write events with another writer:
    `file_writer.add_summary(jacobian_pb("jacobian", {"": net, "fc1": fc1}), step)`.

    Args:
      tag: the series' name, e.g. "jacobian".
      spectra: map name ("" for the whole network) → `JacobianSpectrum` of
        `deepscope.jacobian_singular_values` (or an error message for a map
        that could not be measured); one `JacobianSpectrum` is the network's.
      output: the network output the end-to-end map ends at, e.g. "logits".
      seconds: the measurement's host seconds; by default the sum of the
        spectra's own.
      description: shown by TensorBoard next to the tag.

    Raises:
      ValueError, TypeError: as `jacobian_step` and `jacobian_info` say.
    """
    results = _as_mapping(spectra)
    if seconds is None:
        seconds = sum(
            float(getattr(r, "seconds", 0.0) or 0.0)
            for r in results.values()
            if not isinstance(r, (str, BaseException))
        )
    if not math.isfinite(float(seconds)):
        seconds = 0.0
    step = jacobian_step(results, seconds)
    return tensor_summary(tag, step.SerializeToString(), jacobian_info(output), description)


class JacobianSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_jacobian_singular_values`."""

    def add_jacobian_singular_values(
        self,
        tag: str,
        spectra: Mapping[str, MapResult] | JacobianSpectrum,
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
        output: str = "",
        seconds: float | None = None,
    ) -> None:
        """Log one step of Jacobian singular values of layers and of the network.

        Args:
          tag: the series, e.g. "jacobian".
          spectra: map name ("" for the whole network) → the `JacobianSpectrum`
            of `deepscope.jacobian_singular_values` on the same probe samples
            (or an error message for a map not measured); one spectrum alone
            is the network's.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          description: shown next to the tag.
          output: the network output the end-to-end map ends at (e.g.
            "logits"); kept from the tag's first event (TensorBoard keeps only
            its metadata).
          seconds: the measurement's cost in seconds (default: the spectra's own).

        Raises:
          ValueError, TypeError: bad names or results (the message says which).
        """
        summary_pb = jacobian_pb(
            tag, spectra, output=output, seconds=seconds, description=description
        )
        self._write(summary_pb, global_step, walltime)
