"""`watch()`: measure a model while it trains, through the optimizer's step hooks.

On every `every`-th optimizer step the monitor copies every watched weight
just before `optimizer.step()` and measures ‖W_after − W_before‖₂ / ‖W_before‖₂
just after it: the true update, whatever the optimizer (momentum, Adam, weight
decay, LBFGS's closure). Whether a parameter got an update is decided from what
changed, after the step: "no update" means the weight is bit for bit unchanged.
A weight that was exactly zero before the step (a fresh bias) has no defined
ratio; it is logged as `zero_weight`, not as a fault. The hooks never
synchronise with the device: results are copied to the host asynchronously and
written once they have arrived.
"""

from __future__ import annotations

import operator
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from deepscope import module_names
from deepscope.analysis import update_ratios as ratios_math
from deepscope.writer import resume
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.summary_writer import SummaryWriter
from deepscope.writer.watch_correlation import DEFAULT_CORRELATION_EVERY, CorrelationWatcher
from deepscope.writer.watch_saliency import DEFAULT_SALIENCY_EVERY, SaliencyWatcher
from deepscope.writer.watch_spectra import DEFAULT_SPECTRA_EVERY, SpectraWatcher

DEFAULT_EVERY = 50
# Measurements written together as one event, unless the oldest has waited
# DEFAULT_MAX_EVENT_DELAY seconds: fewer events keep TensorBoard's reads fast.
DEFAULT_MEASUREMENTS_PER_EVENT = 10
DEFAULT_MAX_EVENT_DELAY = 10.0
MAX_ERRORS_KEPT = 20
# A measured value's mark, sent to the host with the ratios.
_ORDINARY, _NO_UPDATE, _ZERO_WEIGHT = 0.0, 1.0, 2.0


@dataclass
class _Measurement:
    """A measurement whose numbers may still be on their way from the device."""

    step: int
    walltime: float
    # float32 [2, P] host tensor, filled asynchronously when `ready` is set:
    # row 0 the ratios, row 1 each value's mark (_ORDINARY, _NO_UPDATE or _ZERO_WEIGHT).
    values: torch.Tensor
    ready: torch.cuda.Event | None = None

    def arrived(self) -> bool:
        return self.ready is None or self.ready.query()


# The open monitor of each watched optimizer (an optimizer is watched once at a time).
_MONITORS: weakref.WeakKeyDictionary[torch.optim.Optimizer, Monitor] = weakref.WeakKeyDictionary()


def _refuse_if_watched(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError if an open monitor already watches `optimizer`."""
    monitor = _MONITORS.get(optimizer)
    if monitor is None:
        return
    log_dir = getattr(monitor.writer, "log_dir", None)
    raise ValueError(
        f"this optimizer is already watched by a deepscope monitor (tag {monitor.tag!r}"
        + (f", log dir {log_dir!r}" if log_dir else "")
        + "): a second one would log every step twice. Call close() on the first "
        "monitor before watching again (or use `with deepscope.watch(...) as monitor:`)"
    )


class PeriodicMeasurer(Protocol):
    """A measurement the monitor runs after every `every`-th optimizer step.

    `measure(step)` runs inside the optimizer's post-step hook, after the
    update, with `step` the global step; it raises on failure (the monitor
    records the error and training goes on). Spectra, channel correlations
    and saliency are measured this way.
    """

    name: str  # e.g. "spectra": the key of its cost in MonitorStats
    every: int

    def measure(self, step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class MonitorStats:
    """What the monitor did: counts, and the seconds its hooks took (host time)."""

    steps_seen: int = 0
    measurements: int = 0
    hook_seconds: float = 0.0
    # Per periodic measurer (e.g. "spectra"): how many times it ran and the
    # seconds it took (host time; included in hook_seconds).
    measurer_runs: dict[str, int] = field(default_factory=dict)
    measurer_seconds: dict[str, float] = field(default_factory=dict)
    error_count: int = 0
    # Non-finite ratios logged (kept as measured, shown as such); zero weights
    # (undefined ratios, see `zero_weight`) are not among them.
    non_finite: int = 0
    # Ratios logged as undefined because the weight was exactly zero before
    # the step (zero-initialised biases at step 0).
    zero_weight: int = 0
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS_KEPT messages


class Monitor:
    """Hooks that measure a model on a cadence; made by `deepscope.watch`.

    Use `close()` (or a `with` block) to remove every hook and write what is
    still pending.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        writer: SummaryWriter,
        every: int = DEFAULT_EVERY,
        tag: str = "update_ratios",
        start_step: int | None = None,
        measurements_per_event: int = DEFAULT_MEASUREMENTS_PER_EVENT,
        max_event_delay: float = DEFAULT_MAX_EVENT_DELAY,
        measurers: Sequence[PeriodicMeasurer] = (),
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        _refuse_if_watched(optimizer)
        if not hasattr(writer, "add_update_ratio_block"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        if not hasattr(every, "__index__") or operator.index(every) < 1:
            raise ValueError(f"every must be a positive number of optimizer steps, got {every!r}")
        every = operator.index(every)
        if start_step is not None and (
            not hasattr(start_step, "__index__") or operator.index(start_step) < 0
        ):
            raise ValueError(
                f"start_step must be a global step (an int >= 0) or None to find it, "
                f"got {start_step!r}"
            )
        if operator.index(measurements_per_event) < 1:
            raise ValueError(
                f"measurements_per_event must be at least 1, got {measurements_per_event!r}"
            )
        self.writer = writer
        self.every = every
        self.measurements_per_event = measurements_per_event
        self.max_event_delay = float(max_event_delay)
        self.tag = tag
        self.stats = MonitorStats()
        self._names, self._params = _named_optimizer_params(model, optimizer)
        # The global step of the next optimizer step.
        self.step = resume.resolve_start_step(
            optimizer, writer, tag, None if start_step is None else operator.index(start_step)
        )
        self._pending: list[_Measurement] = []  # still on their way from the device
        self._block: list[_Measurement] = []  # arrived, to be written as one event
        self._before: list[torch.Tensor] | None = None
        self._before_norms: torch.Tensor | None = None
        self.measurers: dict[str, PeriodicMeasurer] = {m.name: m for m in measurers}
        for name in self.measurers:
            self.stats.measurer_runs[name] = 0
            self.stats.measurer_seconds[name] = 0.0
        self._handles = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        self._optimizer = weakref.ref(optimizer)
        _MONITORS[optimizer] = self

    @property
    def names(self) -> list[str]:
        """Names of the monitored parameters, in the order they are logged."""
        return list(self._names)

    def _before_step(self, optimizer, args, kwargs) -> None:
        start = time.perf_counter()
        try:
            self._write_arrived()
            if self.step % self.every != 0:
                return
            # Every watched parameter, with a gradient or not: whether it got an
            # update is known only after the step (LBFGS computes its gradients
            # inside step(), in the closure).
            self._before = ratios_math.snapshot(self._params)
            self._before_norms = ratios_math.frobenius_norms(self._before)
        except Exception as error:  # never crash the training we watch
            self._record_error("before the optimizer step", error)
            self._before = None
        finally:
            self.stats.hook_seconds += time.perf_counter() - start

    def _after_step(self, optimizer, args, kwargs) -> None:
        start = time.perf_counter()
        try:
            self.stats.steps_seen += 1
            if self._before is not None:
                self._measure()
        except Exception as error:
            self._record_error("after the optimizer step", error)
        try:
            self._run_measurers()
        finally:
            self._before = None
            self._before_norms = None
            self.step += 1
            self.stats.hook_seconds += time.perf_counter() - start

    def _measure(self) -> None:
        update = ratios_math.measure_update(self._before, self._params, self._before_norms)
        marks = torch.where(update.unchanged, _NO_UPDATE, _ORDINARY)
        marks = torch.where(update.zero_weight, _ZERO_WEIGHT, marks)
        full = torch.stack([update.ratios, marks.to(update.ratios.dtype)])
        measurement = _Measurement(self.step, time.time(), full)
        if full.is_cuda:
            host = torch.empty(full.shape, dtype=full.dtype, pin_memory=True)
            host.copy_(full, non_blocking=True)
            measurement.values = host
            measurement.ready = torch.cuda.Event()
            measurement.ready.record()
        self._pending.append(measurement)
        self.stats.measurements += 1
        self._write_arrived()

    def _run_measurers(self) -> None:
        for name, measurer in self.measurers.items():
            if self.step % measurer.every != 0:
                continue
            start = time.perf_counter()
            try:
                measurer.measure(self.step)
            except Exception as error:  # never crash the training we watch
                self._record_error(f"{name} after the optimizer step", error)
            finally:
                self.stats.measurer_runs[name] += 1
                self.stats.measurer_seconds[name] += time.perf_counter() - start

    def _write_arrived(self, wait: bool = False) -> None:
        """Move arrived measurements into the block; write it when full, old, or asked to."""
        while self._pending and (wait or self._pending[0].arrived()):
            measurement = self._pending.pop(0)
            if measurement.ready is not None:
                measurement.ready.synchronize()
            self._block.append(measurement)
        if self._block and (
            wait
            or len(self._block) >= self.measurements_per_event
            or time.time() - self._block[0].walltime >= self.max_event_delay
        ):
            block, self._block = self._block, []
            packed = np.stack([m.values.numpy() for m in block])
            values, marks = packed[:, 0], packed[:, 1]
            no_update, zero_weight = marks == _NO_UPDATE, marks == _ZERO_WEIGHT
            self._count_non_finite(values, no_update | zero_weight, block)
            self.stats.zero_weight += int(np.count_nonzero(zero_weight))
            self.writer.add_update_ratio_block(
                self.tag,
                self._names,
                values,
                steps=[m.step for m in block],
                wall_times=[m.walltime for m in block],
                no_update=no_update,
                zero_weight=zero_weight,
            )

    def _count_non_finite(self, values: np.ndarray, not_measured: np.ndarray, block) -> None:
        bad = ~np.isfinite(values) & ~not_measured
        count = int(np.count_nonzero(bad))
        if count and not self.stats.non_finite:
            k, j = np.argwhere(bad)[0]
            warn_from_hook(
                f"deepscope: non-finite update ratio for {self._names[j]} at step "
                f"{block[k].step} (an infinite or NaN weight or update?); it is logged as "
                "measured and counted in monitor.stats.non_finite",
                stacklevel=4,
            )
        self.stats.non_finite += count

    def _record_error(self, where: str, error: Exception) -> None:
        message = f"deepscope: measuring {where} failed at step {self.step}: {error!r}"
        self.stats.error_count += 1
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(message)
        if self.stats.error_count == 1:
            warn_from_hook(
                message + " (training goes on; failures are counted in monitor.stats.error_count,"
                " the first ones kept in monitor.stats.errors)",
                stacklevel=2,
            )

    def flush(self) -> None:
        """Write every pending measurement (waits for the device) and flush the writer."""
        self._write_arrived(wait=True)
        for name, measurer in self.measurers.items():
            try:
                measurer.flush()
            except Exception as error:
                self._record_error(f"{name} while flushing", error)
        self.writer.flush()

    def close(self) -> None:
        """Remove every hook and write what is pending. The writer stays open."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        optimizer = self._optimizer()
        if optimizer is not None and _MONITORS.get(optimizer) is self:
            del _MONITORS[optimizer]
        self.flush()
        for name, measurer in self.measurers.items():
            try:
                measurer.close()
            except Exception as error:
                self._record_error(f"{name} while closing", error)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _named_optimizer_params(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[list[str], list[torch.Tensor]]:
    """The optimizer's trainable parameters, named as in `model.named_parameters()`.

    Names never carry `torch.compile`'s `_orig_mod.`: they are those of the
    eager model, whichever of the two was passed.
    """
    names_by_id = {id(p): name for name, p in module_names.named_parameters(model)}
    names, params, seen = [], [], set()
    for g, group in enumerate(optimizer.param_groups):
        for k, param in enumerate(group["params"]):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            names.append(names_by_id.get(id(param), f"param_groups[{g}][{k}]"))
            params.append(param)
    if not params:
        raise ValueError("the optimizer holds no trainable parameters to watch")
    return names, params


def watch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    writer: SummaryWriter,
    every: int = DEFAULT_EVERY,
    tag: str = "update_ratios",
    start_step: int | None = None,
    measurements_per_event: int = DEFAULT_MEASUREMENTS_PER_EVENT,
    max_event_delay: float = DEFAULT_MAX_EVENT_DELAY,
    spectra_every: int | None = DEFAULT_SPECTRA_EVERY,
    correlation_layers: Sequence[str] | None = None,
    probe: torch.Tensor | Sequence[torch.Tensor] | None = None,
    correlation_every: int = DEFAULT_CORRELATION_EVERY,
    saliency_probe: tuple[torch.Tensor, torch.Tensor | None] | torch.Tensor | None = None,
    saliency_every: int = DEFAULT_SALIENCY_EVERY,
    saliency_methods: Sequence[str] = ("gradient",),
    saliency_options: Mapping[str, Mapping[str, Any]] | None = None,
    spectra_options: Mapping[str, Any] | None = None,
    correlation_channel_dims: Mapping[str, int] | None = None,
    correlation_options: Mapping[str, Any] | None = None,
    saliency_embeddings: torch.nn.Module | str | None = None,
    saliency_tokens: Sequence[Sequence[str]] | None = None,
) -> Monitor:
    """Measure `model` while `optimizer` trains it, logging to `writer`.

    Every `every`-th optimizer step (counting from `start_step`, which is the
    `global_step` the first step is logged at) logs ‖ΔW‖₂/‖W‖₂ of every
    trainable parameter the optimizer holds, under `tag`. Returns a `Monitor`;
    `monitor.close()` (or `with deepscope.watch(...)`) removes every hook. An
    optimizer is watched by one open monitor at a time (a second `watch()`
    raises ValueError until the first is closed).

    start_step None (the default) finds it, so that a resumed run continues
    its steps: the optimizer's own step count when it keeps one (Adam, AdamW,
    RMSprop, ...: `state[p]["step"]`, restored by `load_state_dict`), else,
    if the writer's log dir already holds `tag`, the step after the last one
    logged there (with a warning: the exact step is unknown, pass it), else 0.
    A given `start_step` that would log steps already in the log dir warns.
    Steps the optimizer does not take (a step GradScaler skips for inf/NaN
    gradients) are not counted, as the optimizer does not count them.

    What a step did is read from the weights themselves: a parameter whose
    weight is bit for bit unchanged got no update (no gradient, or a zero
    step); one whose weight was exactly zero before the step and moved (a
    fresh bias) is logged as zero weight, its ratio undefined (counted in
    `monitor.stats.zero_weight`, never warned about). Any optimizer works,
    LBFGS's closure included. Memory: on a measured step every watched
    parameter is copied once before the step, also those without a gradient
    (whether they move is known only after the step): one extra copy of the
    trainable weights, freed after the step.

    Measurements are written `measurements_per_event` at a time as one event
    (fewer events keep TensorBoard's reads fast), or sooner once the oldest
    has waited `max_event_delay` seconds; `monitor.flush()` and `close()`
    write what is held.

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
    Options given for a kind that is off raise ValueError.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        _refuse_if_watched(optimizer)  # before any measurer hooks the model
    _check_options_have_a_kind(
        spectra_on=bool(spectra_every),
        correlations_on=correlation_layers is not None or probe is not None,
        saliency_on=saliency_probe is not None,
        spectra_options=spectra_options,
        correlation_channel_dims=correlation_channel_dims,
        correlation_options=correlation_options,
        saliency_embeddings=saliency_embeddings,
        saliency_tokens=saliency_tokens,
    )
    measurers: list[PeriodicMeasurer] = []
    if spectra_every:
        options = _options(spectra_options, "spectra_options", {"every": "spectra_every"})
        measurers.append(SpectraWatcher(model, writer, every=spectra_every, **options))
    if correlation_layers is not None or probe is not None:
        if correlation_layers is None or probe is None:
            raise ValueError(
                "channel correlations need both correlation_layers (module names, as in "
                "model.named_modules()) and probe (a fixed batch of inputs)"
            )
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
            CorrelationWatcher(
                model,
                writer,
                layers=correlation_layers,
                probe=probe,
                every=correlation_every,
                **options,
            )
        )
    if saliency_probe is not None:
        options = {
            key: value
            for key, value in (("embeddings", saliency_embeddings), ("tokens", saliency_tokens))
            if value is not None
        }
        measurers.append(
            SaliencyWatcher(
                model,
                writer,
                probe=saliency_probe,
                every=saliency_every,
                methods=saliency_methods,
                method_options=saliency_options,
                **options,
            )
        )
    try:
        return Monitor(
            model,
            optimizer,
            writer,
            every=every,
            tag=tag,
            start_step=start_step,
            measurements_per_event=measurements_per_event,
            max_event_delay=max_event_delay,
            measurers=measurers,
        )
    except Exception:
        for measurer in measurers:  # leave no hook of a monitor that never started
            try:
                measurer.close()
            except Exception:
                pass  # the first error is the one to see
        raise


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
    spectra_on: bool, correlations_on: bool, saliency_on: bool, **options: Any
) -> None:
    """Raise ValueError for an option given to a kind that is off (it would do nothing)."""
    kind_of = {
        "spectra_options": ("spectra", spectra_on, "spectra_every"),
        "correlation_channel_dims": ("channel correlations", correlations_on, "correlation_layers"),
        "correlation_options": ("channel correlations", correlations_on, "correlation_layers"),
        "saliency_embeddings": ("saliency", saliency_on, "saliency_probe"),
        "saliency_tokens": ("saliency", saliency_on, "saliency_probe"),
    }
    for name, value in options.items():
        kind, on, switch = kind_of[name]
        if value is not None and not on:
            raise ValueError(
                f"{name} is given but the {kind} measurement is off: set {switch} to turn it on"
            )
