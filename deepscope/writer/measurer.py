"""The measurer protocol: what `deepscope.watch()` runs on a cadence through the optimizer's hooks.

A measurer is one diagnostic (update ratios, spectra, channel correlations,
saliency, or a user's own). The monitor made by `watch()` is only the
scheduler: it counts optimizer steps, asks each measurer whether it is due,
calls it around the optimizer step, records its failures (training always
goes on) and times it. Everything a measurer logs goes through the writer, so
it appears in TensorBoard like any other series: a per-layer quantity of your
own with `writer.add_layer_values(tag, {layer: value}, global_step=step)`.

The protocol (subclass `Measurer`; only `measure` or `before_step` is needed):

- `name`: unique among a monitor's measurers; the key of its stats in
  `monitor.stats.measurers[name]` and of `monitor.measurers[name]`.
- `every`: its cadence in optimizer steps (an int >= 1).
- `start(model, optimizer, writer)`: called once by `watch()` before the first
  step, to check arguments against the model and attach what it needs.
- `due(step)`: whether it measures at global step `step`; called once per
  optimizer step, before the step, and must be cheap. Default: `step % every == 0`.
- `before_step(step, model, optimizer, writer)`: on due steps, in the
  optimizer's pre-step hook: the gradients of this step are there, the
  weights are not updated yet. If it raises, `measure` is skipped at that step.
- `measure(step, model, optimizer, writer)`: on due steps, just after the
  optimizer step (the weights are updated).
- `prepare(next_step)`: optional; called after every optimizer step (due or
  not, after the due measurers' `measure`) with the global step of the next
  one, so a measurer can attach what that step's forward pass needs (forward
  hooks) only when it is due. Must be cheap.
- `flush()`: write whatever is held back (called by `monitor.flush()`, when the
  writer flushes or closes, at interpreter exit); `close()`: release what
  `start` attached (called once by `monitor.close()`).
- `non_finite`: an int attribute, the non-finite values it met (shown in its
  stats; 0 unless the measurer counts them).
- `on_every_rank(ranks)`: under torch.distributed, whether it runs on every
  rank (it combines what each rank sees, or touches sharded parameters)
  rather than on rank 0 alone (the default: replicas are identical). The
  monitor sets `self.ranks` (a `deepscope.writer.distributed.Ranks`) before
  `start`; on ranks other than 0 the writer it is given writes nothing.

Exceptions raised by any of these (except `start`, whose errors reach the
caller of `watch()`) are recorded in the measurer's `MeasurerStats`, the first
one warned about, and training goes on.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from deepscope.writer.distributed import SINGLE_PROCESS, Ranks

MAX_ERRORS_KEPT = 20


def check_every(value: Any, what: str = "every") -> int:
    """`value` as a cadence in optimizer steps: an int >= 1 (not a bool), else ValueError.

    `what` is the argument's name as the user typed it (e.g. "correlation_every"),
    so that the message says which argument is wrong.
    """
    if isinstance(value, bool) or not hasattr(value, "__index__") or operator.index(value) < 1:
        raise ValueError(
            f"{what} must be a positive number of optimizer steps (an int, at least 1), "
            f"got {value!r}"
        )
    return operator.index(value)


@dataclass
class MeasurerStats:
    """What one measurer did, the same shape for every measurer.

    runs: optimizer steps it was due at (and ran, or failed).
    seconds: host seconds spent in its calls (due, before_step, measure, flush).
    error_count: exceptions its calls raised (each recorded, training went on).
    errors: the first MAX_ERRORS_KEPT of their messages.
    non_finite: non-finite values it met (its own `non_finite` count).
    """

    runs: int = 0
    seconds: float = 0.0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    non_finite: int = 0


class Measurer:
    """Base of every measurer `watch(..., measure=[...])` runs; see the module doc.

    A user's measurer of a few lines, logging a per-layer quantity of its own::

        class GradNorms(deepscope.Measurer):
            name = "grad_norms"

            def before_step(self, step, model, optimizer, writer):  # gradients are there
                norms = {n: p.grad.norm() for n, p in model.named_parameters()
                         if p.grad is not None}
                writer.add_layer_values("grad_norm", norms, global_step=step,
                                        quantity="‖∇W‖₂")

        deepscope.watch(model, optimizer, writer,
                        measure=[deepscope.UpdateRatios(every=50), GradNorms(every=10)])

    Args:
      every: cadence in optimizer steps (an int >= 1).
      name: overrides the class's `name` (to run two of one class side by side).
    """

    name: str = ""
    non_finite: int = 0
    ranks: Ranks = SINGLE_PROCESS

    def __init__(self, every: int, *, name: str | None = None):
        self.every = check_every(every, "every")
        if name is not None:
            self.name = name

    def on_every_rank(self, ranks: Ranks) -> bool:
        """Under torch.distributed: run on every rank (True) or on rank 0 alone (default)."""
        return False

    def start(self, model, optimizer, writer) -> None:
        """Called once by `watch()` before the first step: check and attach. Default: nothing."""

    def due(self, step: int) -> bool:
        """Whether it measures at global step `step` (called before every optimizer step)."""
        return step % self.every == 0

    def before_step(self, step: int, model, optimizer, writer) -> None:
        """On due steps, before the optimizer step (gradients are there). Default: nothing."""

    def measure(self, step: int, model, optimizer, writer) -> None:
        """On due steps, after the optimizer step. Default: nothing."""

    def flush(self) -> None:
        """Write what is held back. Default: nothing is held."""

    def close(self) -> None:
        """Release what `start` attached. Default: nothing to release."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, every={self.every!r})"


def check_measurers(measurers: Any) -> list[Measurer]:
    """`measurers` as a list of Measurers with unique names; TypeError/ValueError otherwise."""
    if isinstance(measurers, Measurer):
        measurers = [measurers]
    try:
        measurers = list(measurers)
    except TypeError:
        raise TypeError(
            f"measure must be a list of deepscope measurers, got {type(measurers).__name__}"
        ) from None
    if not measurers:
        raise ValueError(
            "measure is empty: give at least one measurer, e.g. "
            "measure=[deepscope.UpdateRatios(every=50)]"
        )
    seen: dict[str, Measurer] = {}
    for measurer in measurers:
        if not isinstance(measurer, Measurer):
            raise TypeError(
                f"measure holds {measurer!r} ({type(measurer).__name__}), which is not a "
                "deepscope.Measurer: a measurer subclasses deepscope.Measurer, has a `name` "
                "and an `every` (optimizer steps), and implements measure(step, model, "
                "optimizer, writer) and/or before_step(step, model, optimizer, writer)"
            )
        name = getattr(measurer, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{type(measurer).__name__} has no name: set the class attribute `name` "
                "(or pass name=...) to a non-empty string"
            )
        if name in seen:
            raise ValueError(
                f"two measurers are named {name!r} ({seen[name]!r} and {measurer!r}): "
                "names key monitor.stats.measurers; pass name=... to tell them apart"
            )
        check_every(getattr(measurer, "every", None), f"{name}.every")
        seen[name] = measurer
    return measurers
