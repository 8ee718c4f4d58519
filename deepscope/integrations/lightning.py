"""`DeepscopeCallback`: `deepscope.watch()` attached to a PyTorch Lightning `Trainer`.

    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger
    from deepscope.integrations.lightning import DeepscopeCallback

    trainer = Trainer(logger=TensorBoardLogger("runs"), callbacks=[DeepscopeCallback(every=50)])

One class for both packages: it derives from `lightning.pytorch.Callback` and
from `pytorch_lightning.Callback`, whichever of them is installed, so a
Trainer from either accepts it. With neither installed, importing this module
raises ImportError saying what to install (`pip install deepscope[lightning]`).

What it does, per `Trainer.fit`:

- At `on_train_start` (after a checkpoint's `ckpt_path` is restored, so that
  `trainer.global_step` is the resumed run's), `deepscope.watch(pl_module,
  optimizer, writer, start_step=trainer.global_step, **watch_options)` on the
  trainer's first optimizer (`trainer.optimizers[0]`, the raw torch
  optimizer; with several, the others are not watched and a warning says so).
  Steps are optimizer steps, as `trainer.global_step` counts them: with
  `accumulate_grad_batches=k` one step is k batches.
- The writer writes into the run's log dir: `log_dir` when given, else the
  `log_dir` of the trainer's first `TensorBoardLogger` (the directory of the
  user's own scalars: TensorBoard shows both as one run), else
  `<trainer.default_root_dir>/deepscope`. Only global rank 0
  (`trainer.is_global_zero`) makes a writer; under Lightning's DDP the other
  ranks call `watch()` with `writer=None` (they write nothing; see
  `deepscope.watch` for what is measured where).
- Lightning runs the forward and backward pass inside `optimizer.step()` (as
  its closure), after torch's step pre-hooks have run. So the monitor's
  pre-step work (the update ratios' copy of the weights, the gradient norms)
  runs at Lightning's `on_before_optimizer_step` instead, once the gradients
  of the step exist (accumulated, unscaled under AMP, not yet clipped: as
  Lightning documents that hook); the post-step work stays on the optimizer's
  step post-hook.
- At `on_train_end`, `on_fit_end`, `on_exception` and `teardown`: every hook
  is removed, what is held is written and the writer is closed (once).

The monitor of the last fit stays readable as `callback.monitor` (its
`stats`, `step`) after it is closed; `callback.log_dir` is where it wrote.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from deepscope.integrations._attached import Attached, check_watch_options

__all__ = ["DeepscopeCallback"]


def _callback_bases() -> tuple[type, ...]:
    """Every installed Lightning package's `Callback` class (lightning.pytorch first)."""
    bases: list[type] = []
    for module, name in (("lightning.pytorch", "Callback"), ("pytorch_lightning", "Callback")):
        try:
            imported = __import__(module, fromlist=[name])
        except Exception:  # not installed, or broken: the other may still serve
            continue
        base = getattr(imported, name, None)
        if isinstance(base, type) and base not in bases:
            bases.append(base)
    if not bases:
        raise ImportError(
            "deepscope.integrations.lightning needs PyTorch Lightning (lightning.pytorch or "
            "pytorch_lightning), which is not installed: pip install deepscope[lightning]"
        )
    return tuple(bases)


_BASES = _callback_bases()


def _is_tensorboard_logger(logger: Any) -> bool:
    """A Lightning TensorBoardLogger of either package (or of lightning.fabric)."""
    return any(cls.__name__ == "TensorBoardLogger" for cls in type(logger).__mro__)


def run_log_dir(trainer: Any, log_dir: str | os.PathLike | None = None) -> str:
    """Where deepscope writes for `trainer`: `log_dir`, a TensorBoardLogger's, or a fallback.

    The first of the trainer's loggers that is a `TensorBoardLogger` gives its
    `log_dir` (`<save_dir>/<name>/<version>[/<sub_dir>]`, the directory of its
    scalars); without one, `<trainer.default_root_dir>/deepscope`.
    """
    if log_dir is not None:
        return os.fspath(log_dir)
    for logger in getattr(trainer, "loggers", None) or []:
        if _is_tensorboard_logger(logger):
            return os.fspath(logger.log_dir)
    return os.path.join(os.fspath(trainer.default_root_dir), "deepscope")


class DeepscopeCallback(*_BASES):
    """Attach `deepscope.watch()` to a Lightning `Trainer.fit`, writing into the run's log dir.

    Args:
      log_dir: where to write; None (the default): the trainer's TensorBoardLogger's
        `log_dir`, else `<trainer.default_root_dir>/deepscope` (see `run_log_dir`).
      **watch_options: any keyword argument of `deepscope.watch` except model,
        optimizer, writer and start_step, which come from the trainer (e.g.
        `every=50`, `spectra_every=200`, `measure=[deepscope.UpdateRatios(every=10)]`).
        They are checked when training starts (`watch()` raises for bad ones).
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, **watch_options: Any):
        super().__init__()
        self.watch_options = check_watch_options(watch_options, "Lightning")
        self._log_dir_given = log_dir
        self.log_dir: str | None = None
        self.monitor = None
        self._attached: Attached | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._pre_step_here = False  # the monitor's pre-step runs at on_before_optimizer_step
        self._armed = False  # the next on_before_optimizer_step starts a step
        self._rearm_handle = None

    # -- attach ------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self._detach()  # a previous fit's, had it not ended
        optimizers = list(getattr(trainer, "optimizers", None) or [])
        if not optimizers:
            warnings.warn(
                "deepscope: the trainer has no optimizer (configure_optimizers returned none): "
                "nothing is watched",
                stacklevel=2,
            )
            return
        if len(optimizers) > 1:
            warnings.warn(
                f"deepscope: the trainer has {len(optimizers)} optimizers; DeepscopeCallback "
                "watches the first (trainer.optimizers[0]) only",
                stacklevel=2,
            )
        optimizer = optimizers[0]
        writes = bool(getattr(trainer, "is_global_zero", True))
        log_dir = run_log_dir(trainer, self._log_dir_given) if writes else None
        # Lightning computes the step's gradients inside optimizer.step(closure), after
        # the optimizer's pre-hooks: the pre-step measurements run at
        # on_before_optimizer_step instead (monitor.before_step()).
        self._attached = Attached(
            pl_module,
            optimizer,
            log_dir,
            trainer.global_step,
            {**self.watch_options, "pre_step": "manual"},
        )
        self.log_dir = log_dir
        self.monitor = self._attached.monitor
        self._optimizer = optimizer
        self._pre_step_here = True
        self._armed = True
        self._rearm_handle = optimizer.register_step_post_hook(self._rearm)

    # -- the step ----------------------------------------------------------------

    def _rearm(self, optimizer, args, kwargs) -> None:
        self._armed = True

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int):
        # A step GradScaler skipped has no post-hook: the next batch starts a step again.
        self._armed = True

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not (self._pre_step_here and self._armed and self._attached is not None):
            return
        raw = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer's wrapped one
        if raw is not self._optimizer and optimizer is not self._optimizer:
            return
        self._armed = False  # once per step (LBFGS calls its closure several times)
        self.monitor.before_step()

    # -- detach ------------------------------------------------------------------

    def _detach(self) -> None:
        if self._rearm_handle is not None:
            self._rearm_handle.remove()
            self._rearm_handle = None
        attached, self._attached = self._attached, None
        self._optimizer = None
        self._pre_step_here = False
        if attached is not None:
            attached.close()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._detach()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._detach()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._detach()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._detach()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled by ddp_spawn before fit: hooks and monitors stay in their process.
        state = self.__dict__.copy()
        state.update(_attached=None, monitor=None, _optimizer=None, _rearm_handle=None)
        state.update(_pre_step_here=False, _armed=False)
        return state
