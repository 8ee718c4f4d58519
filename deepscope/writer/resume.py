"""Where a resumed run's monitor should start counting steps.

`watch(..., start_step=None)` finds the global step of the first optimizer
step it sees: from the optimizer's own step count when it keeps one (Adam,
AdamW, RMSprop, ... hold `state[p]["step"]`, saved and loaded with the
optimizer's state dict), else after the last step of the tag already in the
writer's log dir, else 0. Both are read once, when `watch()` is called, never
in a hook.
"""

from __future__ import annotations

import os
import warnings

import torch
from tensorboard.backend.event_processing import event_file_loader, io_wrapper
from tensorboard.compat.proto import event_pb2

# Optimizers that record their step count in `state[p]["step"]` from the first
# step on: an empty state means they have taken no step. (Plain SGD, LBFGS and
# others keep no count: an empty or step-less state says nothing.)
_COUNTING_OPTIMIZERS = tuple(
    cls
    for cls in (
        getattr(torch.optim, name, None)
        for name in (
            "Adam",
            "AdamW",
            "Adamax",
            "NAdam",
            "RAdam",
            "RMSprop",
            "Adagrad",
            "Adadelta",
            "ASGD",
            "Rprop",
            "SparseAdam",
            "Adafactor",
        )
    )
    if isinstance(cls, type)
)


def optimizer_step_count(optimizer: torch.optim.Optimizer) -> int | None:
    """How many steps `optimizer` has taken, if its state says; None when unknown.

    The largest `state[p]["step"]` over its parameters (a parameter that missed
    steps for want of a gradient counts fewer). Reads device values: call it
    outside the training loop's hot path.
    """
    counts = []
    for state in optimizer.state.values():
        step = state.get("step") if isinstance(state, dict) else None
        if step is None:
            continue
        try:
            counts.append(int(step.item() if isinstance(step, torch.Tensor) else step))
        except (TypeError, ValueError, RuntimeError):
            continue
    if counts:
        return max(counts)
    if not optimizer.state and isinstance(optimizer, _COUNTING_OPTIMIZERS):
        return 0  # it would have recorded a step: it has taken none
    return None


def last_logged_step(log_dir: str, tag: str) -> int | None:
    """The largest step of `tag` in the event files directly in `log_dir`; None if none.

    Reads only the records that mention the tag (the others are skipped
    unparsed). Raises OSError (or tensorboard's errors) if the directory
    cannot be read.
    """
    if not os.path.isdir(log_dir) and "://" not in log_dir:
        return None
    needle = tag.encode("utf-8")
    last = None
    for path in sorted(io_wrapper.ListDirectoryAbsolute(log_dir)):
        if not io_wrapper.IsSummaryEventsFile(path):
            continue
        for record in event_file_loader.RawEventFileLoader(path).Load():
            if needle not in record:
                continue
            event = event_pb2.Event.FromString(record)
            if any(value.tag == tag for value in event.summary.value):
                last = event.step if last is None else max(last, event.step)
    return last


def resolve_start_step(
    optimizer: torch.optim.Optimizer, writer, tag: str | None, start_step: int | None
) -> int:
    """The global step of the next optimizer step, warning where logged steps would repeat.

    Args:
      writer: the monitor's SummaryWriter; its log dir is read for `tag`.
      tag: the update ratios' tag (the series logged at every cadence step);
        None (no update ratios measured): the log dir is not read.
      start_step: the caller's choice, or None to find it (see the module doc).
    """
    log_dir = getattr(writer, "log_dir", None)
    last = None
    if log_dir and tag is not None:
        try:
            writer.flush()  # this writer's own earlier events count too
            last = last_logged_step(str(log_dir), tag)
        except Exception as error:
            warnings.warn(
                f"deepscope: could not read the log dir {log_dir!r} to see which steps of "
                f"{tag!r} are already logged ({error!r}); "
                + (
                    f"logging starts at step {start_step} as asked"
                    if start_step is not None
                    else "if this run resumes an earlier one, pass watch(..., start_step=N)"
                ),
                RuntimeWarning,
                stacklevel=4,
            )
    if start_step is not None:
        if last is not None and start_step <= last:
            _warn_overlap(log_dir, tag, last, f"start_step={start_step}", start_step)
        return start_step
    counted = optimizer_step_count(optimizer)
    if counted is not None:
        if last is not None and counted <= last:
            _warn_overlap(log_dir, tag, last, f"the optimizer has taken {counted} steps", counted)
        return counted
    if last is None:
        return 0
    warnings.warn(
        f"deepscope: the log dir {log_dir!r} already holds {tag!r} up to step {last}, and "
        f"{type(optimizer).__name__} keeps no step count, so the exact step of this run is "
        f"unknown: logging continues after the last logged step, at {last + 1}. Pass "
        "watch(..., start_step=N) with the true global step (e.g. the one saved in your "
        "checkpoint), or start_step=0 with a new log dir for a new run",
        RuntimeWarning,
        stacklevel=4,
    )
    return last + 1


def _warn_overlap(log_dir, tag: str, last: int, why: str, start: int) -> None:
    warnings.warn(
        f"deepscope: {why}, so logging starts at step {start}, but the log dir {log_dir!r} "
        f"already holds {tag!r} up to step {last}: steps {start}..{last} will be logged "
        f"twice. Pass watch(..., start_step={last + 1}) to continue after them, or log to a "
        "new directory",
        RuntimeWarning,
        stacklevel=5,
    )
