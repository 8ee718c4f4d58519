"""`watch()`: measure a model while it trains, through the optimizer's step hooks.

The `Monitor` that `watch()` returns is the scheduler only: it counts the
optimizer's steps (the global step, found for a resumed run by `resume`),
runs each measurer (`deepscope.Measurer`: update ratios, spectra, channel
correlations, saliency, layer statistics, or a user's own) on its cadence
around the optimizer step, calls the optional `prepare(next_step)` of those
that have one after every optimizer step (layer statistics attach their
forward hooks there, only before a step they measure), records their
failures (training always goes on), times them, and
writes what they hold when asked to, when the writer flushes or closes, at
interpreter exit and, opted in, on SIGTERM.
"""

from __future__ import annotations

import atexit
import operator
import os
import signal
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from deepscope.writer import distributed, resume
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.measurer import (
    MAX_ERRORS_KEPT,
    Measurer,
    MeasurerStats,
    check_every,
    check_measurers,
)
from deepscope.writer.rank_writer import RankWriter
from deepscope.writer.summary_writer import SummaryWriter
from deepscope.writer.watch_correlation import DEFAULT_CORRELATION_EVERY, Correlations
from deepscope.writer.watch_layer_statistics import (
    DEFAULT_LAYER_STATISTICS_EVERY,
    LayerStats,
    ParameterNorms,
)
from deepscope.writer.watch_saliency import DEFAULT_SALIENCY_EVERY, Saliency
from deepscope.writer.watch_spectra import DEFAULT_SPECTRA_EVERY, Spectra
from deepscope.writer.watch_update_ratios import (
    DEFAULT_EVERY,
    DEFAULT_MAX_EVENT_DELAY,
    DEFAULT_MEASUREMENTS_PER_EVENT,
    UpdateRatios,
)

__all__ = ["Monitor", "MonitorStats", "watch"]

# The open monitor of each watched optimizer (an optimizer is watched once at a time).
_MONITORS: weakref.WeakKeyDictionary[torch.optim.Optimizer, Monitor] = weakref.WeakKeyDictionary()
# Every open monitor, written out at interpreter exit (weakly held: never kept alive by this).
_OPEN: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _flush_open_monitors() -> None:
    """At interpreter exit: write what every open monitor holds (a script may never close())."""
    for monitor in list(_OPEN):
        try:
            monitor.flush()
        except Exception:  # nothing can be reported any more; the others still flush
            pass


atexit.register(_flush_open_monitors)


def _refuse_if_watched(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError if an open monitor already watches `optimizer`."""
    monitor = _MONITORS.get(optimizer)
    if monitor is None:
        return
    log_dir = getattr(monitor.writer, "log_dir", None)
    where = [f"tag {monitor.tag!r}"] if monitor.tag else []
    where += [f"log dir {log_dir!r}"] if log_dir else []
    raise ValueError(
        "this optimizer is already watched by a deepscope monitor"
        + (f" ({', '.join(where)})" if where else "")
        + ": a second one would log every step twice. Call close() on the first "
        "monitor before watching again (or use `with deepscope.watch(...) as monitor:`)"
    )


@dataclass
class MonitorStats:
    """What the monitor did: counts, and the seconds its hooks took (host time).

    measurers: per measurer name, its `MeasurerStats` (runs, seconds, errors, non_finite).
    steps_seen: optimizer steps the hooks saw. hook_seconds: host seconds in the
    hooks, every measurer included. error_count, errors: all measurers' failures
    (the first MAX_ERRORS_KEPT messages). measurer_runs, measurer_seconds: the
    runs and seconds per measurer name. measurements, non_finite, zero_weight:
    the update ratios' (steps measured; non-finite ratios logged, kept as
    measured; ratios undefined because the weight was exactly zero before the
    step, e.g. zero-initialised biases at step 0); 0 without an UpdateRatios.
    """

    steps_seen: int = 0
    hook_seconds: float = 0.0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    measurers: dict[str, MeasurerStats] = field(default_factory=dict)
    _update_ratios: UpdateRatios | None = field(default=None, repr=False, compare=False)

    @property
    def measurer_runs(self) -> dict[str, int]:
        return {name: stats.runs for name, stats in self.measurers.items()}

    @property
    def measurer_seconds(self) -> dict[str, float]:
        return {name: stats.seconds for name, stats in self.measurers.items()}

    @property
    def measurements(self) -> int:
        return self._update_ratios.measurements if self._update_ratios else 0

    @property
    def non_finite(self) -> int:
        return self._update_ratios.non_finite if self._update_ratios else 0

    @property
    def zero_weight(self) -> int:
        return self._update_ratios.zero_weight if self._update_ratios else 0


class Monitor:
    """Runs measurers on a cadence through the optimizer's step hooks; made by `deepscope.watch`.

    Use `close()` (or a `with` block) to remove every hook and write what is
    still held.

    Args:
      model, optimizer, writer: as for `watch()`.
      measurers: the `deepscope.Measurer`s to run (unique names).
      start_step: the global step of the first optimizer step; None: found (see `watch`).
      flush_on_sigterm: write what is held on SIGTERM, then chain to the
        previous handler (see `watch`).
      process_group, collective_timeout: the ranks measured across, and how
        long deepscope's collectives wait (see `watch`).
      pre_step: "hook" (default: the optimizer's step pre-hook runs the
        measurers' pre-step work) or "manual" (`before_step()` does; see it).

    Attributes: ranks (`deepscope.writer.distributed.Ranks`: this process's
    rank, the world size, whether the model is sharded, bytes sent).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        writer: SummaryWriter,
        measurers: Sequence[Measurer],
        start_step: int | None = None,
        flush_on_sigterm: bool = False,
        process_group=None,
        collective_timeout: float = distributed.DEFAULT_TIMEOUT,
        pre_step: str = "hook",
    ):
        if pre_step not in ("hook", "manual"):
            raise ValueError(
                f"pre_step must be 'hook' (the optimizer's step pre-hook runs the pre-step "
                f"measurements) or 'manual' (you call monitor.before_step() once the step's "
                f"gradients exist), got {pre_step!r}"
            )
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        _refuse_if_watched(optimizer)
        ranks = distributed.find_ranks(model, process_group, collective_timeout)
        model = distributed.unwrap_replicas(model)
        if ranks.distributed and not ranks.writes:
            writer = RankWriter(ranks.rank)  # rank 0 alone writes
        if not isinstance(writer, SummaryWriter):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
                + (
                    f"; under torch.distributed rank 0 needs one (got {writer!r}); the "
                    "other ranks may pass None"
                    if ranks.distributed
                    else ""
                )
            )
        measurers = check_measurers(measurers)
        if ranks.distributed and not ranks.writes:
            measurers = [m for m in measurers if m.on_every_rank(ranks)]
        self.ranks = ranks
        # Measurers whose measure() joins collectives: called on every due step, even
        # after their before_step failed here, so that no other rank waits for this one.
        self._collective = {
            m.name for m in measurers if ranks.distributed and m.on_every_rank(ranks)
        }
        if start_step is not None and (
            isinstance(start_step, bool)
            or not hasattr(start_step, "__index__")
            or operator.index(start_step) < 0
        ):
            raise ValueError(
                f"start_step must be a global step (an int >= 0) or None to find it, "
                f"got {start_step!r}"
            )
        if flush_on_sigterm and threading.current_thread() is not threading.main_thread():
            raise ValueError(
                "flush_on_sigterm=True needs watch() to be called from the main thread "
                "(Python runs signal handlers there only)"
            )
        self.writer = writer
        self.model = model
        self.measurers: dict[str, Measurer] = {m.name: m for m in measurers}
        update_ratios = next((m for m in measurers if isinstance(m, UpdateRatios)), None)
        self.stats = MonitorStats(
            measurers={name: MeasurerStats() for name in self.measurers},
            _update_ratios=update_ratios,
        )
        started: list[Measurer] = []
        try:
            failure: BaseException | None = None
            try:
                for measurer in measurers:
                    measurer.ranks = ranks
                    measurer.start(model, optimizer, writer)
                    started.append(measurer)
            except Exception as error:
                failure = error
            if not ranks.agree(failure is None, "starting the measurers"):
                if failure is not None:
                    raise failure
                raise distributed.RankFailure(
                    "deepscope.watch(): starting the measurers failed on another rank "
                    "(its watch() raised the error); nothing is watched"
                )
        except BaseException:
            for measurer in started:  # leave nothing of a monitor that never started
                try:
                    measurer.close()
                except Exception:
                    pass  # the first error is the one to see
            raise
        self._update_ratios = update_ratios
        # The global step of the next optimizer step.
        self.step = self._agreed_start_step(
            optimizer,
            writer,
            update_ratios.tag if update_ratios else None,
            None if start_step is None else operator.index(start_step),
            started,
        )
        self._due: list[Measurer] = []  # due at the step in progress, before_step done
        # Measurers that attach something for the next step's forward pass (`prepare`).
        self._preparing = [m for m in measurers if callable(getattr(m, "prepare", None))]
        self._flushing = False
        self._closed = False
        self.pre_step = pre_step
        self._handles = [optimizer.register_step_post_hook(self._after_step)]
        if pre_step == "hook":
            self._handles.append(optimizer.register_step_pre_hook(self._before_step))
        self._optimizer = weakref.ref(optimizer)
        _MONITORS[optimizer] = self
        _OPEN.add(self)
        self._flush_hook = None
        if hasattr(writer, "register_flush_hook"):
            self._flush_hook = writer.register_flush_hook(_WeakFlush(self))
        self._sigterm: tuple[Any, Any] | None = None
        if flush_on_sigterm:
            self._install_sigterm_handler()

    def _agreed_start_step(self, optimizer, writer, tag, start_step, started) -> int:
        """The global step of the first optimizer step: found on rank 0, the same on every rank."""
        step, failure = -1, None
        if self.ranks.writes or start_step is not None:
            try:
                step = resume.resolve_start_step(optimizer, writer, tag, start_step)
            except Exception as error:
                failure = error
        try:
            agreed = self.ranks.broadcast_int(step, "the start step")
        except Exception as error:
            failure = failure or error
            agreed = -1
        if agreed < 0 or failure is not None:
            for measurer in started:
                try:
                    measurer.close()
                except Exception:
                    pass
            if failure is not None:
                raise failure
            raise distributed.RankFailure(
                "deepscope.watch(): finding the start step failed on rank 0 (its watch() "
                "raised the error); nothing is watched"
            )
        return agreed

    # -- what the update ratios used to expose on the monitor ---------------------

    @property
    def tag(self) -> str | None:
        """The update ratios' tag (None without an UpdateRatios measurer)."""
        return self._update_ratios.tag if self._update_ratios else None

    @property
    def every(self) -> int | None:
        """The update ratios' cadence (None without an UpdateRatios measurer)."""
        return self._update_ratios.every if self._update_ratios else None

    @property
    def names(self) -> list[str]:
        """Names of the parameters whose update ratios are logged, in order."""
        return self._update_ratios.names if self._update_ratios else []

    # -- the hooks ----------------------------------------------------------------

    def before_step(self) -> None:
        """Run the measurers' pre-step work now, for `watch(..., pre_step="manual")`.

        Call it once per optimizer step, after the step's gradients exist and
        before the update: where a framework computes them inside
        `optimizer.step(closure)` (PyTorch Lightning), the optimizer's pre-hook
        runs too early and would see the previous step's gradients. Calling it
        again before the step replaces the earlier call's work (a step that
        GradScaler skipped leaves nothing behind).
        """
        optimizer = self._optimizer()
        if self._closed or optimizer is None:
            return
        self._before_step(optimizer, (), {})

    def _before_step(self, optimizer, args, kwargs) -> None:
        start = time.perf_counter()
        self._due = []
        try:
            for name, measurer in self.measurers.items():
                stats = self.stats.measurers[name]
                began = time.perf_counter()
                due = False
                try:
                    due = bool(measurer.due(self.step))
                    if due:
                        stats.runs += 1
                        if name in self._collective:
                            self._due.append(measurer)  # measure() joins, whatever happens here
                        measurer.before_step(self.step, self.model, optimizer, self.writer)
                        if name not in self._collective:
                            self._due.append(measurer)
                except Exception as error:  # never crash the training we watch
                    self._record_error(name, "before the optimizer step", error)
                finally:
                    stats.seconds += time.perf_counter() - began
        finally:
            self.stats.hook_seconds += time.perf_counter() - start

    def _after_step(self, optimizer, args, kwargs) -> None:
        start = time.perf_counter()
        try:
            self.stats.steps_seen += 1
            for measurer in self._due:
                stats = self.stats.measurers[measurer.name]
                began = time.perf_counter()
                try:
                    measurer.measure(self.step, self.model, optimizer, self.writer)
                except Exception as error:  # never crash the training we watch
                    self._record_error(measurer.name, "after the optimizer step", error)
                finally:
                    stats.seconds += time.perf_counter() - began
                    stats.non_finite = _non_finite(measurer)
            for measurer in self._preparing:
                stats = self.stats.measurers[measurer.name]
                began = time.perf_counter()
                try:
                    measurer.prepare(self.step + 1)
                except Exception as error:  # never crash the training we watch
                    self._record_error(measurer.name, "preparing the next step", error)
                finally:
                    stats.seconds += time.perf_counter() - began
        finally:
            self._due = []
            self.step += 1
            self.stats.hook_seconds += time.perf_counter() - start

    def _record_error(self, name: str, where: str, error: Exception) -> None:
        who = f"deepscope (rank {self.ranks.rank})" if self.ranks.distributed else "deepscope"
        message = f"{who}: measuring {name} {where} failed at step {self.step}: {error!r}"
        stats = self.stats.measurers.get(name)
        if stats is not None:
            stats.error_count += 1
            if len(stats.errors) < MAX_ERRORS_KEPT:
                stats.errors.append(message)
        self.stats.error_count += 1
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(message)
        if stats is None or stats.error_count == 1:
            warn_from_hook(
                message + " (training goes on; failures are counted in "
                f"monitor.stats.measurers[{name!r}].error_count, the first ones kept in its "
                "errors and in monitor.stats.errors)",
            )

    # -- writing what is held -------------------------------------------------------

    def _flush_measurers(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            for name, measurer in self.measurers.items():
                stats = self.stats.measurers[name]
                began = time.perf_counter()
                try:
                    measurer.flush()
                except Exception as error:
                    self._record_error(name, "while flushing", error)
                finally:
                    stats.seconds += time.perf_counter() - began
                    stats.non_finite = _non_finite(measurer)
        finally:
            self._flushing = False

    def flush(self) -> None:
        """Write every held measurement (waits for the device) and flush the writer."""
        self._flush_measurers()
        self._flushing = True  # the writer's flush hook: done just now
        try:
            self.writer.flush()
        finally:
            self._flushing = False

    def _install_sigterm_handler(self) -> None:
        previous = signal.getsignal(signal.SIGTERM)
        monitor = weakref.ref(self)

        def flush_then_chain(signum, frame):
            watched = monitor()
            if watched is not None:
                try:
                    watched.flush()
                except Exception:  # the process is being stopped: still chain
                    pass
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_IGN:
                return
            else:  # SIG_DFL, or a handler not installed from Python: the default action
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, flush_then_chain)
        self._sigterm = (flush_then_chain, previous)

    def _remove_sigterm_handler(self) -> None:
        if self._sigterm is None:
            return
        handler, previous = self._sigterm
        self._sigterm = None
        if threading.current_thread() is not threading.main_thread():
            return  # left installed; it flushes nothing once the monitor is gone
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    def close(self) -> None:
        """Remove every hook and write what is held. The writer stays open."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles = []
        optimizer = self._optimizer()
        if optimizer is not None and _MONITORS.get(optimizer) is self:
            del _MONITORS[optimizer]
        _OPEN.discard(self)
        self._remove_sigterm_handler()
        self.flush()
        if self._flush_hook is not None:
            self._flush_hook.remove()
            self._flush_hook = None
        for name, measurer in self.measurers.items():
            try:
                measurer.close()
            except Exception as error:
                self._record_error(name, "while closing", error)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _WeakFlush:
    """The writer's flush hook: writes what the monitor holds, without keeping it alive."""

    def __init__(self, monitor: Monitor):
        self._monitor = weakref.ref(monitor)

    def __call__(self) -> None:
        monitor = self._monitor()
        if monitor is not None:
            monitor._flush_measurers()

    def __repr__(self) -> str:
        return "<deepscope monitor: write held measurements>"


def _non_finite(measurer: Measurer) -> int:
    try:
        return int(getattr(measurer, "non_finite", 0) or 0)
    except Exception:
        return 0


class _Default:
    """A keyword's default that says it was not given (shown as the default itself)."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


_NOT_GIVEN = _Default(None)


def _given(value: Any) -> bool:
    return not isinstance(value, _Default)


def _value(value: Any) -> Any:
    return value.value if isinstance(value, _Default) else value


def watch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    writer: SummaryWriter,
    measure: Sequence[Measurer] | None = None,
    every: int = _Default(DEFAULT_EVERY),
    tag: str = _Default("update_ratios"),
    start_step: int | None = None,
    measurements_per_event: int = _Default(DEFAULT_MEASUREMENTS_PER_EVENT),
    max_event_delay: float = _Default(DEFAULT_MAX_EVENT_DELAY),
    spectra_every: int | None = _Default(DEFAULT_SPECTRA_EVERY),
    correlation_layers: Sequence[str] | None = _NOT_GIVEN,
    probe: torch.Tensor | Sequence[torch.Tensor] | None = _NOT_GIVEN,
    correlation_every: int = _Default(DEFAULT_CORRELATION_EVERY),
    saliency_probe: tuple[torch.Tensor, torch.Tensor | None] | torch.Tensor | None = _NOT_GIVEN,
    saliency_every: int = _Default(DEFAULT_SALIENCY_EVERY),
    saliency_methods: Sequence[str] = _Default(("gradient",)),
    saliency_options: Mapping[str, Mapping[str, Any]] | None = _NOT_GIVEN,
    spectra_options: Mapping[str, Any] | None = _NOT_GIVEN,
    correlation_channel_dims: Mapping[str, int] | None = _NOT_GIVEN,
    correlation_options: Mapping[str, Any] | None = _NOT_GIVEN,
    saliency_embeddings: torch.nn.Module | str | None = _NOT_GIVEN,
    saliency_tokens: Sequence[Sequence[str]] | None = _NOT_GIVEN,
    parameter_norms_every: int | None = _Default(DEFAULT_EVERY),
    layer_statistics_every: int | None = _Default(DEFAULT_LAYER_STATISTICS_EVERY),
    layer_statistics_options: Mapping[str, Any] | None = _NOT_GIVEN,
    flush_on_sigterm: bool = False,
    process_group=None,
    collective_timeout: float = distributed.DEFAULT_TIMEOUT,
    pre_step: str = "hook",
) -> Monitor:
    """Measure `model` while `optimizer` trains it, logging to `writer`.

    measure: the complete list of measurers to run (`deepscope.UpdateRatios`,
    `Spectra`, `Correlations`, `Saliency`, or your own `deepscope.Measurer`),
    e.g. `measure=[deepscope.UpdateRatios(every=50), deepscope.Spectra(every=200)]`.
    Without it, the keyword arguments below say what to measure (by default:
    update ratios and gradient/weight norms every 50 steps, activation
    statistics every 100 (covariances every 1000) and spectra every 200); giving `measure`
    together with any of them raises ValueError (say it in the measurer instead).
    Returns a `Monitor`; `monitor.close()` (or `with deepscope.watch(...)`)
    removes every hook. An optimizer is watched by one open monitor at a time (a
    second `watch()` raises ValueError until the first is closed). Cadences
    count optimizer steps from `start_step`, the `global_step` the first step
    is logged at.

    start_step None (the default) finds it, so that a resumed run continues
    its steps: the optimizer's own step count when it keeps one (Adam, AdamW,
    RMSprop, ...: `state[p]["step"]`, restored by `load_state_dict`), else,
    if the writer's log dir already holds the update ratios' tag, the step after
    the last one logged there (with a warning: the exact step is unknown, pass
    it), else 0. A given `start_step` that would log steps already in the log
    dir warns. Steps the optimizer does not take (a step GradScaler skips for
    inf/NaN gradients) are not counted, as the optimizer does not count them.
    Without an UpdateRatios measurer the log dir is not read.

    Update ratios (`deepscope.UpdateRatios`): every `every`-th optimizer step
    logs ‖ΔW‖₂/‖W‖₂ of every trainable parameter the optimizer holds, under
    `tag`. What a step did is read from the weights themselves: a parameter
    whose weight is bit for bit unchanged got no update (no gradient, or a zero
    step); one whose weight was exactly zero before the step and moved (a fresh
    bias) is logged as zero weight, its ratio undefined (counted in
    `monitor.stats.zero_weight`, never warned about). Any optimizer works,
    LBFGS's closure included. Memory: on a measured step every watched
    parameter is copied once before the step, also those without a gradient
    (whether they move is known only after the step): one extra copy of the
    trainable weights, freed after the step.

    Measurements are written `measurements_per_event` at a time as one event
    (fewer events keep TensorBoard's reads fast), or sooner once the oldest
    has waited `max_event_delay` seconds (default 2 s; the event file is then
    flushed). So a `kill -9` loses at most the last `max_event_delay` seconds
    of update ratios (or the last optimizer step's, when a step takes longer).
    What is held is also written by `monitor.flush()` and `close()`, whenever
    the writer flushes or closes, and at interpreter exit (a script that never
    calls close() loses nothing). flush_on_sigterm=True (main thread only)
    also writes it on SIGTERM, the usual preemption signal, then chains to the
    handler that was installed before (or, if none, restores the default
    action and re-sends the signal, so the process still ends).

    Also, each on its own cadence (counted in optimizer steps, like `every`):
      spectra_every: singular value spectra of every eligible weight (None or 0: off).
      correlation_layers, probe, correlation_every: channel correlations of the
        named modules' outputs on the fixed `probe` batch (off unless both given).
      saliency_probe, saliency_every, saliency_methods: saliency maps of the
        probe inputs (a tensor, or (inputs, labels)) by each method (off unless given);
        saliency_options maps a method to its options, e.g.
        {"integrated_gradients": {"n_steps": 64}}.

    Options of those kinds, passed on to their measurers only when given (each
    is described in the kind's section of the README):
      spectra_options: e.g. {"time_budget": 2.0, "include_frozen": False, "threads": 1}.
      correlation_channel_dims: layer name → the channel dim of its output,
        overriding the default rule per layer.
      correlation_options: e.g. {"matrix_dtype": "float16", "packing": "upper_triangle"}.
      saliency_embeddings: for token-id inputs, the input embedding module (or
        its name) whose output the maps are computed over.
      saliency_tokens: for token-id inputs, the probe's token texts (N lists of
        L strings), shown in the tab instead of the ids.
      layer_statistics_options: passed to `deepscope.LayerStats`, e.g.
        {"layers": ["encoder"], "on": probe_batch, "covariance_every": 500,
        "max_samples": 1024, "variance_threshold": 0.95, "saturation_tolerance": 0.02}.
    Options given for a kind that is off raise ValueError.

    pre_step: "hook" (default) runs the pre-step measurements (gradient
    norms, the update ratios' snapshot) in the optimizer's step pre-hook;
    "manual" leaves them to `monitor.before_step()`, for loops that compute
    the gradients inside `optimizer.step(closure)` (PyTorch Lightning: its
    callback, `deepscope.integrations.lightning.DeepscopeCallback`, does this).

    Under torch.distributed (DDP, FSDP2's fully_shard), call watch() on every
    rank with the same arguments; rank 0 alone writes (the other ranks may
    pass writer=None, and write nothing). process_group: the ranks to measure
    across (None: the default group, when torch.distributed is initialized).
    A DDP-wrapped model is measured through the module it wraps. What is the
    same on every replica (update ratios, norms, spectra, probe measurements)
    is measured on rank 0 alone; what each rank sees of its own batch
    (activation statistics, channel correlations, confusion counts) is summed
    over the ranks; sharded (DTensor) parameters are measured from per-shard
    sums, and spectra gather one weight at a time (see
    `deepscope.writer.distributed`). collective_timeout: seconds one of
    deepscope's collectives waits for the other ranks before the cross-rank
    measurements are turned off (recorded; training goes on).

    Layer statistics (`deepscope.ParameterNorms` and `deepscope.LayerStats`, on
    by default, both under tags "layer_statistics/..."):
      parameter_norms_every: ‖∇W‖₂, ‖W‖₂ and their ratio of every trainable
        parameter, at the optimizer's pre-step hook (default: `every`, the
        update ratios' cadence; None or 0: off). Under 0.1% of a ResNet-18 step
        per measurement (benchmarks/bench_layer_statistics.py).
      layer_statistics_every: activation statistics of every leaf module on
        the measured step's own training batch (default 100; None or 0: off);
        the forward hooks are attached only for that step, so the other steps
        cost nothing. Covariance spectra (effective dimension, delve
        saturation, effective rank) at the multiples of the smallest multiple
        of layer_statistics_every that is at least 1000 (every 10th
        measurement at the default 100).
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        _refuse_if_watched(optimizer)  # before any measurer is made
    shortcuts = {
        "every": every,
        "tag": tag,
        "measurements_per_event": measurements_per_event,
        "max_event_delay": max_event_delay,
        "spectra_every": spectra_every,
        "correlation_layers": correlation_layers,
        "probe": probe,
        "correlation_every": correlation_every,
        "saliency_probe": saliency_probe,
        "saliency_every": saliency_every,
        "saliency_methods": saliency_methods,
        "saliency_options": saliency_options,
        "spectra_options": spectra_options,
        "correlation_channel_dims": correlation_channel_dims,
        "correlation_options": correlation_options,
        "saliency_embeddings": saliency_embeddings,
        "saliency_tokens": saliency_tokens,
        "parameter_norms_every": parameter_norms_every,
        "layer_statistics_every": layer_statistics_every,
        "layer_statistics_options": layer_statistics_options,
    }
    if isinstance(measure, int) and not isinstance(measure, bool):
        raise TypeError(
            f"watch()'s fourth argument is measure=[...], a list of measurers, got {measure!r}: "
            f"for the update ratios' cadence pass every={measure!r}"
        )
    if measure is not None:
        given = [name for name, value in shortcuts.items() if _given(value)]
        if given:
            raise ValueError(
                f"watch() got measure=[...] and {', '.join(f'{n}=' for n in given)}: measure "
                "is the complete list of measurers, so give those settings to the measurers "
                "themselves (e.g. deepscope.UpdateRatios(every=10), deepscope.Spectra(every=200))"
            )
        measurers = check_measurers(measure)
    else:
        values = {name: _value(v) for name, v in shortcuts.items()}
        if not _given(parameter_norms_every):  # the update ratios' cadence
            values["parameter_norms_every"] = values["every"]
        measurers = _shortcut_measurers(**values)
    return Monitor(
        model,
        optimizer,
        writer,
        measurers,
        start_step=start_step,
        flush_on_sigterm=flush_on_sigterm,
        process_group=process_group,
        collective_timeout=collective_timeout,
        pre_step=pre_step,
    )


def _shortcut_measurers(
    every,
    tag,
    measurements_per_event,
    max_event_delay,
    spectra_every,
    correlation_layers,
    probe,
    correlation_every,
    saliency_probe,
    saliency_every,
    saliency_methods,
    saliency_options,
    spectra_options,
    correlation_channel_dims,
    correlation_options,
    saliency_embeddings,
    saliency_tokens,
    parameter_norms_every,
    layer_statistics_every,
    layer_statistics_options,
) -> list[Measurer]:
    """The measurers today's keyword arguments of watch() stand for."""
    _check_options_have_a_kind(
        spectra_on=bool(spectra_every),
        correlations_on=correlation_layers is not None or probe is not None,
        saliency_on=saliency_probe is not None,
        layer_statistics_on=bool(layer_statistics_every),
        spectra_options=spectra_options,
        correlation_channel_dims=correlation_channel_dims,
        correlation_options=correlation_options,
        saliency_embeddings=saliency_embeddings,
        saliency_tokens=saliency_tokens,
        layer_statistics_options=layer_statistics_options,
    )
    measurers: list[Measurer] = [
        UpdateRatios(
            every=check_every(every, "every"),
            tag=tag,
            measurements_per_event=measurements_per_event,
            max_event_delay=max_event_delay,
        )
    ]
    if spectra_every:
        check_every(spectra_every, "spectra_every")
        options = _options(spectra_options, "spectra_options", {"every": "spectra_every"})
        measurers.append(Spectra(every=spectra_every, **options))
    if correlation_layers is not None or probe is not None:
        if correlation_layers is None or probe is None:
            raise ValueError(
                "channel correlations need both correlation_layers (module names, as in "
                "model.named_modules()) and probe (a fixed batch of inputs)"
            )
        check_every(correlation_every, "correlation_every")
        options = _options(
            correlation_options,
            "correlation_options",
            {
                "every": "correlation_every",
                "layers": "correlation_layers",
                "probe": "probe",
                "channel_dims": "correlation_channel_dims",
            },
        )
        if correlation_channel_dims is not None:
            options["channel_dims"] = correlation_channel_dims
        measurers.append(
            Correlations(layers=correlation_layers, probe=probe, every=correlation_every, **options)
        )
    if saliency_probe is not None:
        check_every(saliency_every, "saliency_every")
        options = {
            key: value
            for key, value in (("embeddings", saliency_embeddings), ("tokens", saliency_tokens))
            if value is not None
        }
        measurers.append(
            Saliency(
                probe=saliency_probe,
                every=saliency_every,
                methods=saliency_methods,
                method_options=saliency_options,
                **options,
            )
        )
    if parameter_norms_every:
        measurers.append(
            ParameterNorms(every=check_every(parameter_norms_every, "parameter_norms_every"))
        )
    if layer_statistics_every:
        check_every(layer_statistics_every, "layer_statistics_every")
        options = _options(
            layer_statistics_options,
            "layer_statistics_options",
            {"every": "layer_statistics_every"},
        )
        measurers.append(LayerStats(every=layer_statistics_every, **options))
    return measurers


def _options(
    options: Mapping[str, Any] | None, what: str, set_by_watch: Mapping[str, str]
) -> dict[str, Any]:
    """`options` as a dict, refusing keys that watch() sets from its own arguments."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{what} must be a mapping of option name to value, got {options!r}")
    taken = [key for key in options if key in set_by_watch]
    if taken:
        raise ValueError(
            f"{what} cannot hold {taken[0]!r}: pass watch(..., {set_by_watch[taken[0]]}=...)"
        )
    return dict(options)


def _check_options_have_a_kind(
    spectra_on: bool,
    correlations_on: bool,
    saliency_on: bool,
    layer_statistics_on: bool,
    **options: Any,
) -> None:
    """Raise ValueError for an option given to a kind that is off (it would do nothing)."""
    kind_of = {
        "spectra_options": ("spectra", spectra_on, "spectra_every"),
        "correlation_channel_dims": ("channel correlations", correlations_on, "correlation_layers"),
        "correlation_options": ("channel correlations", correlations_on, "correlation_layers"),
        "saliency_embeddings": ("saliency", saliency_on, "saliency_probe"),
        "saliency_tokens": ("saliency", saliency_on, "saliency_probe"),
        "layer_statistics_options": (
            "layer statistics",
            layer_statistics_on,
            "layer_statistics_every",
        ),
    }
    for name, value in options.items():
        kind, on, switch = kind_of[name]
        if value is not None and not on:
            raise ValueError(
                f"{name} is given but the {kind} measurement is off: set {switch} to turn it on"
            )
