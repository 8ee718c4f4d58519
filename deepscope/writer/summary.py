"""Summary builders: plain functions that return a `Summary` protobuf.

For people who write events with another writer (TensorFlow's, tensorboardX,
their own): `file_writer.add_summary(update_ratios_pb(...), step)`.
`deepscope.SummaryWriter` uses the same builders.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb


def _string_tensor(payload: bytes) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        string_val=[payload],
    )


def blob_sequence_summary(
    tag: str,
    blobs: Sequence[bytes],
    plugin_data: pb.PluginData | None,
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` holding one step of a blob-sequence series (spectra, correlations, saliency).

    Args:
      blobs: the step's blobs; by deepscope's convention the first is the
        kind's serialized `*Step` message.
      plugin_data: the series' constant facts for its metadata; None leaves the
        metadata out (TensorBoard keeps only a series' first metadata).
    """
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=list(blobs),
    )
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin_data is not None:
        value.metadata.CopyFrom(
            metadata.create_summary_metadata(plugin_data, description=description)
        )
    return summary_pb2.Summary(value=[value])


def update_ratios_step(
    names: Sequence[str],
    values: np.ndarray,
    no_update: Sequence[int] = (),
    series_names: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    wall_times: Sequence[float] | None = None,
    zero_weight: Sequence[int] = (),
) -> pb.UpdateRatiosStep:
    """One event's `UpdateRatiosStep`: one step, or a block of K steps.

    Args:
      names: parameter names, P of them.
      values: float ratios ‖ΔW‖/‖W‖, shape [P] for one step or [K, P] for a
        block; non-finite values are kept.
      no_update: indices into the flattened values of parameters that got no
        update (their value is ignored).
      zero_weight: indices into the flattened values of parameters whose
        weight was exactly zero before the step and moved (a zero-initialised
        bias): the ratio is undefined there, not a numerical fault (their
        value is ignored and stored as NaN).
      series_names: the names in the series' metadata; if they differ from
        `names` the event carries its own.
      steps, wall_times: for a block, the global step and wall time of each row.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim > 2 or values.shape[-1:] != (len(names),):
        raise ValueError(
            f"{len(names)} parameter names need values of shape [{len(names)}] or "
            f"[steps, {len(names)}], got {list(values.shape)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("parameter names must be unique")
    block = values.ndim == 2
    if block != (steps is not None) or (steps is None) != (wall_times is None):
        raise ValueError("a block of values [K, P] needs steps and wall_times, one per row")
    if block and not (len(steps) == len(wall_times) == values.shape[0]):
        raise ValueError(f"{values.shape[0]} rows need as many steps and wall times")
    no_update = _sorted_indices(no_update, values.size, "no_update")
    zero_weight = _sorted_indices(zero_weight, values.size, "zero_weight")
    both = set(no_update) & set(zero_weight)
    if both:
        raise ValueError(
            f"value {min(both)} is marked both no_update and zero_weight; a parameter "
            "that did not move is no_update"
        )
    if no_update or zero_weight:
        values = values.copy()
        values.reshape(-1)[no_update + zero_weight] = np.nan
    step = pb.UpdateRatiosStep(
        ratios=arrays.encode_array(values),
        no_update=no_update,
        zero_weight=zero_weight,
        names_crc32=metadata.names_crc32(names),
    )
    if block:
        step.steps.extend(int(s) for s in steps)
        step.wall_times.extend(float(t) for t in wall_times)
    if series_names is not None and list(series_names) != list(names):
        step.names.extend(names)
    return step


def _sorted_indices(indices: Sequence[int], size: int, what: str) -> list[int]:
    """`indices` as sorted unique ints, each checked to lie in [0, size)."""
    result = sorted({int(i) for i in indices})
    if result and not 0 <= result[0] <= result[-1] < size:
        raise ValueError(f"{what} index out of range for {size} values")
    return result


class RatioMark(enum.Enum):
    """A ratio mapping's value that is not a number (see `ZERO_WEIGHT`)."""

    ZERO_WEIGHT = "zero_weight"

    def __repr__(self) -> str:
        return f"deepscope.{self.name}"


# A ratio mapping's value for a parameter whose weight was exactly zero before
# the step and moved (a zero-initialised bias): ‖ΔW‖/‖W‖ is undefined there.
ZERO_WEIGHT = RatioMark.ZERO_WEIGHT

RatioValue = float | None | RatioMark


def ratios_from_mapping(
    ratios: Mapping[str, RatioValue],
) -> tuple[list[str], np.ndarray, list[int], list[int]]:
    """Split name → ratio into names, float32 values, no-update and zero-weight indices.

    A value is a number, None (no update) or `ZERO_WEIGHT` (the weight was 0
    before the step and moved; the ratio is undefined).
    """
    if not isinstance(ratios, Mapping) or not ratios:
        raise ValueError(
            "ratios must be a non-empty mapping of parameter name to ‖ΔW‖/‖W‖, "
            'e.g. {"fc.weight": 1.2e-3} (None marks a parameter that got no update, '
            "deepscope.ZERO_WEIGHT one whose weight was zero before the step)"
        )
    names = [str(name) for name in ratios]
    values = np.empty(len(names), dtype=np.float32)
    no_update, zero_weight = [], []
    for i, value in enumerate(ratios.values()):
        if value is None or value is ZERO_WEIGHT:
            (no_update if value is None else zero_weight).append(i)
            values[i] = math.nan
            continue
        try:
            with np.errstate(over="ignore"):  # beyond float32 is stored as inf, as measured
                values[i] = float(value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"ratio for {names[i]!r} must be a number, None (no update) or "
                f"deepscope.ZERO_WEIGHT (zero weight before the step), got {value!r}"
            ) from error
    return names, values, no_update, zero_weight


def update_ratios_pb(
    tag: str, ratios: Mapping[str, RatioValue], description: str = ""
) -> summary_pb2.Summary:
    """A `Summary` with one step of update ratios, its metadata included.

    Args:
      tag: the series' name, e.g. "model" or "update_ratios".
      ratios: parameter name → ‖ΔW‖₂/‖W‖₂ of this step; None marks a parameter
        that got no update, `deepscope.ZERO_WEIGHT` one whose weight was exactly
        zero before the step and moved (the ratio is undefined, e.g. a fresh
        bias at step 0). Values may be floats or 0-d tensors/arrays.
      description: shown by TensorBoard next to the tag.
    """
    names, values, no_update, zero_weight = ratios_from_mapping(ratios)
    step = update_ratios_step(names, values, no_update, zero_weight=zero_weight)
    return update_ratios_summary(tag, step, metadata_names=names, description=description)


def update_ratios_summary(
    tag: str,
    step: pb.UpdateRatiosStep,
    metadata_names: Sequence[str] | None,
    description: str = "",
) -> summary_pb2.Summary:
    """Wrap an `UpdateRatiosStep` in a `Summary`.

    Args:
      metadata_names: the series' parameter names for its metadata; None leaves
        the metadata out (TensorBoard keeps only a series' first metadata, so a
        writer that already wrote it saves the bytes).
    """
    value = summary_pb2.Summary.Value(tag=tag, tensor=_string_tensor(step.SerializeToString()))
    if metadata_names is not None:
        plugin_data = pb.PluginData(
            kind=pb.UPDATE_RATIOS, update_ratios=pb.UpdateRatiosInfo(names=list(metadata_names))
        )
        value.metadata.CopyFrom(
            metadata.create_summary_metadata(plugin_data, description=description)
        )
    return summary_pb2.Summary(value=[value])
