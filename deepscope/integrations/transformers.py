"""`DeepscopeCallback`: `deepscope.watch()` attached to a Hugging Face `transformers.Trainer`.

    from transformers import Trainer, TrainingArguments
    from deepscope.integrations.transformers import DeepscopeCallback

    trainer = Trainer(model=model, args=TrainingArguments("out", report_to=["tensorboard"]),
                      train_dataset=data, callbacks=[DeepscopeCallback(every=50)])

What it does, per `Trainer.train()`:

- At `on_train_begin` (after a checkpoint is resumed, so `state.global_step`
  is the resumed run's), `deepscope.watch(model, optimizer, writer,
  start_step=state.global_step, **watch_options)`, with the Trainer's model
  and its torch optimizer (accelerate's `AcceleratedOptimizer` unwrapped: its
  `.optimizer`). Steps are optimizer steps, as `state.global_step` counts
  them: with `gradient_accumulation_steps=k` one step is k batches. The
  pre-step measurements (the weights' copy, the gradient norms) see the
  gradients after the Trainer's clipping, as the optimizer does.
- The writer writes into the run's TensorBoard directory, the one the
  Trainer's own TensorBoard scalars go to: the first of `log_dir` (given
  here), `args.logging_dir` (transformers 4.x), `$TENSORBOARD_LOGGING_DIR`
  (what transformers 5's TensorBoardCallback reads), the directory of the
  newest event file this process wrote under `<output_dir>/runs/` (the
  TensorBoardCallback's, made at its own `on_train_begin`, which runs before
  the callbacks a user adds), else a new `<output_dir>/runs/<date>_<host>`
  (transformers' own default name). Only the world's process zero
  (`state.is_world_process_zero`) makes a writer; the other processes call
  `watch()` with `writer=None` and write nothing.
- A model's `ModelOutput` (`.logits`, `.loss`, hidden states) is measured by
  `watch()`'s own rules (layer statistics split it into its fields, e.g.
  "(model):logits").
- At `on_train_end`: every hook is removed, what is held is written and the
  writer is closed. (A `train()` that raised leaves them until the next
  `train()` starts, which closes them first, or until interpreter exit,
  when what is held is written.)

The monitor of the last run stays readable as `callback.monitor` (its
`stats`, `step`) after it is closed; `callback.log_dir` is where it wrote.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from deepscope.integrations._attached import Attached, check_watch_options

try:
    from transformers import TrainerCallback
except ImportError as error:  # pragma: no cover - exercised with transformers blocked
    raise ImportError(
        "deepscope.integrations.transformers needs Hugging Face transformers (with "
        "accelerate, which its Trainer uses), which is not installed: "
        "pip install deepscope[transformers]"
    ) from error

__all__ = ["DeepscopeCallback", "run_log_dir"]


def _newest_event_dir_of_this_process(root: Path) -> str | None:
    """The directory of the newest event file under `root` that this process wrote, or None.

    torch's event files are named `events.out.tfevents.<time>.<host>.<pid>.<n>`.
    """
    pid = str(os.getpid())
    newest: tuple[float, str] | None = None
    if not root.is_dir():
        return None
    for path in root.rglob("events.out.tfevents.*"):
        parts = path.name.split(".")
        if len(parts) < 6 or parts[-2] != pid:
            continue
        try:
            made = path.stat().st_mtime
        except OSError:
            continue
        if newest is None or made > newest[0]:
            newest = (made, str(path.parent))
    return None if newest is None else newest[1]


def run_log_dir(args: Any, log_dir: str | os.PathLike | None = None) -> str:
    """Where deepscope writes for a Trainer with these `TrainingArguments` (see the module doc)."""
    if log_dir is not None:
        return os.fspath(log_dir)
    logging_dir = getattr(args, "logging_dir", None)  # transformers 4.x
    if logging_dir:
        return os.fspath(logging_dir)
    from_env = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if from_env:
        return os.path.expanduser(from_env)
    runs = Path(os.fspath(args.output_dir)) / "runs"
    found = _newest_event_dir_of_this_process(runs)
    if found is not None:
        return found
    return str(runs / f"{datetime.now().strftime('%b%d_%H-%M-%S')}_{socket.gethostname()}")


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's AcceleratedOptimizer (or `optimizer` itself)."""
    inner = optimizer
    for _ in range(4):  # wrappers of wrappers
        wrapped = getattr(inner, "optimizer", None)
        if not isinstance(wrapped, torch.optim.Optimizer):
            break
        inner = wrapped
    return inner


class DeepscopeCallback(TrainerCallback):
    """Attach `deepscope.watch()` to `transformers.Trainer.train()`, writing into its log dir.

    Args:
      log_dir: where to write; None (the default): the run's TensorBoard
        directory (see `run_log_dir`).
      **watch_options: any keyword argument of `deepscope.watch` except model,
        optimizer, writer and start_step, which come from the Trainer (e.g.
        `every=50`, `spectra_every=200`). They are checked when training
        starts (`watch()` raises for bad ones).
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, **watch_options: Any):
        self.watch_options = check_watch_options(watch_options, "transformers")
        self._log_dir_given = log_dir
        self.log_dir: str | None = None
        self.monitor = None
        self._attached: Attached | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._detach()  # a previous train()'s, had it raised
        if model is None or optimizer is None:
            raise RuntimeError(
                "deepscope: the Trainer passed no model or optimizer to on_train_begin; "
                "DeepscopeCallback needs a transformers.Trainer (>= 4.40)"
            )
        writes = bool(getattr(state, "is_world_process_zero", True))
        log_dir = run_log_dir(args, self._log_dir_given) if writes else None
        self._attached = Attached(
            model, _torch_optimizer(optimizer), log_dir, state.global_step, self.watch_options
        )
        self.log_dir = log_dir
        self.monitor = self._attached.monitor

    def on_train_end(self, args, state, control, **kwargs):
        self._detach()

    def _detach(self) -> None:
        attached, self._attached = self._attached, None
        if attached is not None:
            attached.close()
