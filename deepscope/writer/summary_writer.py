"""`deepscope.SummaryWriter`: torch's SummaryWriter with deepscope's `add_*` verbs.

It writes into the same event files as the user's scalars, so one
`tensorboard --logdir` shows both.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from torch.utils.tensorboard import SummaryWriter as _TorchSummaryWriter

from deepscope.writer import summary
from deepscope.writer.correlation import CorrelationSummaries
from deepscope.writer.saliency import SaliencySummaries
from deepscope.writer.spectrum import SpectrumSummaries


class SummaryWriter(
    SpectrumSummaries, CorrelationSummaries, SaliencySummaries, _TorchSummaryWriter
):
    """A `torch.utils.tensorboard.SummaryWriter` with deepscope's summaries.

    Every `add_*` takes `global_step` and `walltime` (seconds since the epoch)
    as torch's do.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Tag → the parameter names this writer put in the tag's metadata.
        self._update_ratio_names: dict[str, list[str]] = {}
        # Tags whose metadata this writer has written (it goes in a tag's first event only).
        self._tags_with_metadata: set[str] = set()

    def _first_event(self, tag: str) -> bool:
        """True the first time it is asked about `tag`: that event carries the metadata."""
        if tag in self._tags_with_metadata:
            return False
        self._tags_with_metadata.add(tag)
        return True

    def add_update_ratios(
        self,
        tag: str,
        ratios: Mapping[str, summary.RatioValue],
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
        names, values, no_update, zero_weight = summary.ratios_from_mapping(ratios)
        self.add_update_ratio_values(
            tag, names, values, no_update, global_step, walltime, description, zero_weight
        )

    def add_update_ratio_values(
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
        self._add_update_ratios_event(
            tag,
            names,
            values,
            no_update,
            zero_weight,
            None,
            None,
            global_step,
            walltime,
            description,
        )

    def add_update_ratio_block(
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
        values = np.asarray(values, dtype=np.float32)
        flat_no_update = () if no_update is None else np.flatnonzero(no_update)
        flat_zero_weight = () if zero_weight is None else np.flatnonzero(zero_weight)
        self._add_update_ratios_event(
            tag,
            names,
            values,
            flat_no_update,
            flat_zero_weight,
            steps,
            wall_times,
            int(steps[-1]) if len(steps) else None,
            float(wall_times[-1]) if len(wall_times) else None,
            description,
        )

    def _add_update_ratios_event(
        self,
        tag,
        names,
        values,
        no_update,
        zero_weight,
        steps,
        wall_times,
        global_step,
        walltime,
        description,
    ) -> None:
        series_names = self._update_ratio_names.get(tag)
        step = summary.update_ratios_step(
            names,
            values,
            no_update,
            series_names,
            steps=steps,
            wall_times=wall_times,
            zero_weight=zero_weight,
        )
        metadata_names = None
        if series_names is None:
            metadata_names = self._update_ratio_names[tag] = list(names)
        self._write(
            summary.update_ratios_summary(tag, step, metadata_names, description),
            global_step,
            walltime,
        )

    def _write(self, summary_pb, global_step: int | None, walltime: float | None) -> None:
        walltime = time.time() if walltime is None else walltime
        self._get_file_writer().add_summary(summary_pb, global_step, walltime)
