"""Update-ratio summaries: the builders and `SummaryWriter.add_update_ratios`.

An update ratio is ‖ΔW‖₂/‖W‖₂ of one parameter over one optimizer step. A
series (one tag) is a tensor series: each event holds an `UpdateRatiosStep`
(float32 ratios [P] for one step, or [K, P] for a block of K steps, with the
indices of parameters that got no update or whose weight was zero), and the
series' metadata (`UpdateRatiosInfo`, on the tag's first event) lists the P
parameter names. An event whose names differ from the metadata's (a restarted
run with other parameters) carries its own.

For people who write events with another writer:
`file_writer.add_summary(update_ratios_pb(tag, ratios), step)`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary


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


def update_ratios_plugin_data(names: Sequence[str]) -> pb.PluginData:
    """The series' metadata: a `PluginData` of kind UPDATE_RATIOS listing the parameter names."""
    return pb.PluginData(
        kind=pb.UPDATE_RATIOS, update_ratios=pb.UpdateRatiosInfo(names=list(names))
    )


def update_ratios_summary(
    tag: str,
    step: pb.UpdateRatiosStep,
    metadata_names: Sequence[str] | None,
    description: str = "",
) -> summary_pb2.Summary:
    """Wrap an `UpdateRatiosStep` in a `Summary`.

    Args:
      metadata_names: the series' parameter names for its metadata; None leaves
        the metadata out.
    """
    plugin_data = None if metadata_names is None else update_ratios_plugin_data(metadata_names)
    return tensor_summary(tag, step.SerializeToString(), plugin_data, description)


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


class UpdateRatioSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_update_ratios`, and the block form watch() writes.

    Needs the writer core's `_write` and `_series_plugin_data`.
    """

    def add_update_ratios(
        self,
        tag: str,
        ratios: Mapping[str, RatioValue],
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
    ) -> None:
        """Log one step of update-to-weight ratios ‖ΔW‖₂/‖W‖₂.

        Args:
          tag: the series, e.g. "model".
          ratios: parameter name → ratio (float or 0-d tensor); None marks a
            parameter that got no update in this step, `deepscope.ZERO_WEIGHT`
            one whose weight was exactly zero before the step and moved (the
            ratio is undefined: a fresh bias at step 0). Non-finite values are
            kept and shown as such.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          description: shown next to the tag.
        """
        names, values, no_update, zero_weight = ratios_from_mapping(ratios)
        self._add_update_ratio_values(
            tag, names, values, no_update, global_step, walltime, description, zero_weight
        )

    def _add_update_ratio_values(
        self,
        tag: str,
        names: Sequence[str],
        values: np.ndarray,
        no_update: Sequence[int] = (),
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
        zero_weight: Sequence[int] = (),
    ) -> None:
        """`add_update_ratios` for names and float values of shape [len(names)].

        `no_update` holds the indices of parameters that got no update,
        `zero_weight` those whose weight was exactly zero before the step and
        moved (the ratio is undefined); the values there are ignored.
        """
        step = update_ratios_step(
            names,
            values,
            no_update,
            self._update_ratio_series_names(tag),
            zero_weight=zero_weight,
        )
        self._write(update_ratios_summary(tag, step, names, description), global_step, walltime)

    def _add_update_ratio_block(
        self,
        tag: str,
        names: Sequence[str],
        values: np.ndarray,
        steps: Sequence[int],
        wall_times: Sequence[float],
        no_update: np.ndarray | None = None,
        description: str = "",
        zero_weight: np.ndarray | None = None,
    ) -> None:
        """Log K steps of update ratios in one event (what watch() does).

        Fewer, larger events keep reads fast: TensorBoard's cost per read, and
        its sampling, count events. The event is filed under the last step.

        Args:
          values: float ratios, shape [K, len(names)], row k at `steps[k]`.
          steps, wall_times: K ascending global steps and their wall times.
          no_update: bool [K, len(names)], True where a parameter got no update.
          zero_weight: bool [K, len(names)], True where a parameter's weight was
            exactly zero before the step and moved (the ratio is undefined).
        """
        step = update_ratios_step(
            names,
            np.asarray(values, dtype=np.float32),
            () if no_update is None else np.flatnonzero(no_update),
            self._update_ratio_series_names(tag),
            steps=steps,
            wall_times=wall_times,
            zero_weight=() if zero_weight is None else np.flatnonzero(zero_weight),
        )
        self._write(
            update_ratios_summary(tag, step, names, description),
            int(steps[-1]) if len(steps) else None,
            float(wall_times[-1]) if len(wall_times) else None,
        )

    def _update_ratio_series_names(self, tag: str) -> list[str] | None:
        """The parameter names in `tag`'s metadata as this writer wrote it (None before)."""
        plugin_data = self._series_plugin_data(tag)
        if plugin_data is None or plugin_data.kind != pb.UPDATE_RATIOS:
            return None
        return list(plugin_data.update_ratios.names)
