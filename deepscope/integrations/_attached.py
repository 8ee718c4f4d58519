"""What both callbacks share: a monitor attached for one training run, and the writer it owns.

A callback makes the writer itself (on the process that writes: global rank
0, or the only process), so it also closes it; the other ranks pass
`writer=None` to `watch()`, which gives them a writer that makes no file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

# watch()'s arguments the callbacks fill in from the trainer themselves.
SET_BY_CALLBACK = ("model", "optimizer", "writer", "start_step")


def check_watch_options(options: Mapping[str, Any], framework: str) -> dict[str, Any]:
    """`options` for `deepscope.watch()`, refusing those the callback sets from the trainer."""
    taken = [name for name in SET_BY_CALLBACK if name in options]
    if taken:
        raise TypeError(
            f"DeepscopeCallback takes watch()'s options only: {', '.join(taken)} "
            f"come from the {framework} trainer (the model, its optimizer, a writer into the "
            "run's log dir, the trainer's global step); to choose the directory pass log_dir=..."
        )
    return dict(options)


class Attached:
    """A `deepscope.Monitor` attached by a callback, and the writer the callback made (or None).

    Args:
      model, optimizer: what `watch()` measures (the raw torch optimizer).
      log_dir: where this process writes; None on a rank that does not write.
      start_step: the trainer's global step of the next optimizer step.
      options: the rest of `watch()`'s keyword arguments.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        log_dir: str | os.PathLike | None,
        start_step: int,
        options: Mapping[str, Any],
    ):
        import deepscope

        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.writer = None if log_dir is None else deepscope.SummaryWriter(self.log_dir)
        try:
            self.monitor = deepscope.watch(
                model, optimizer, self.writer, start_step=int(start_step), **options
            )
        except BaseException:
            if self.writer is not None:
                self.writer.close()
            raise

    def close(self) -> None:
        """Remove the monitor's hooks, write what it holds, close the writer. Never raises."""
        try:
            self.monitor.close()
        except Exception as error:  # training is over; say so rather than fail the run
            warnings.warn(f"deepscope: closing the monitor failed: {error!r}", stacklevel=2)
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as error:
                warnings.warn(f"deepscope: closing the writer failed: {error!r}", stacklevel=2)
