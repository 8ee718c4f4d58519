"""watch()'s spectra measurer: singular value spectra of every eligible weight, periodically.

Default cadence: every DEFAULT_SPECTRA_EVERY = 200 optimizer steps, measured
on this project's 2-core CPU (benchmarks/bench_spectra.py,
benchmarks/results/spectra.json) with a CIFAR ResNet-18 (batch 32, SGD): one
measurement of all 21 weights (svdvals, metrics, writing) cost 1.4 training
steps on the heavily shared machine of the recorded run (0.7% at every 200),
and about a third of a step when it was quiet (0.4 s against 1.2 s). 200 keeps
the overhead under 2% with a margin of 3x or more for machines where SVDs are
relatively slower than training (GPUs train a step in milliseconds).

Large models do not fit one step: on GPT-2 small (50 weights, the 50257 x 768
token embedding among them) one measurement of everything took 20 s on 2 quiet
cores (about 3 training steps) and 100-350 s when other processes competed for
the cores. So each call has a time budget (`time_budget`, DEFAULT_TIME_BUDGET
seconds): layers are measured largest first until the budget is spent and the
rest are carried over to the following optimizer steps (see `Spectra`).

Conv layers also get their operator norm (the largest singular value of the
linear map the layer applies to its input, its Lipschitz constant; Sedghi,
Gupta & Long 2019) at every measurement by default, and their whole operator
spectrum with `operator="full"`: the input's spatial size is recorded once per
conv by a forward pre-hook (removed once it fired, and by `close`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from deepscope import module_names
from deepscope.analysis import conv_operator
from deepscope.analysis import spectrum as spectrum_math
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer import distributed
from deepscope.writer import spectrum as spectrum_writer
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.measurer import Measurer, check_every
from deepscope.writer.spectrum import spectrum_info

DEFAULT_SPECTRA_EVERY = 200
# Seconds of spectra per optimizer step, at most (but always at least one layer per call).
# 2 s is a fraction of a large model's CPU training step (GPT-2 small: about 7 s on 2
# cores) and holds GPT-2's largest weight, the 50257 x 768 embedding, with one thread
# (0.7-5 s measured); smaller models (a ResNet-18: 0.4 s for all 21 weights) never reach it.
DEFAULT_TIME_BUDGET = 2.0
# Under FSDP2, the largest weight gathered whole for its spectrum (bytes).
DEFAULT_MAX_GATHER_BYTES = 1 << 30
MAX_ERRORS_KEPT = 20
MAX_TAGS_KEPT = 50


@dataclass
class SpectraStats:
    """What the spectra measurer did.

    measurements: times it ran (calls of `measure`, carried-over steps included).
    spectra: layer spectra measured and written.
    unchanged: steps written as "unchanged since step N" (weight bit for bit the
      one measured then), not measured again.
    frozen: tags of the frozen layers (requires_grad False) left out at the last
      cadence step (first MAX_TAGS_KEPT); `include_frozen=True` measures them.
    deferred: layer measurements that did not fit the time budget of their
      cadence step and were carried over to a later step (logged at that step).
    pending: tags still waiting to be measured in the current cadence period now
      (first MAX_TAGS_KEPT); `pending_count` counts them all.
    late_periods: cadence steps that began while layers of the previous period
      were still pending (the budget is too small for the cadence: those layers
      are measured first, so every layer is still measured in turn).
    over_budget: calls that took longer than the budget (one layer alone can).
    threads: the torch thread count of the last measurement (0 before one).
    non_finite: spectra not measured because the weight was not finite.
    failed: spectra not measured because the SVD did not converge (or gave
      non-finite values). seconds: host seconds spent measuring and writing.
    errors: the first MAX_ERRORS_KEPT messages of both kinds.
    partial: spectra of big matrices that held their top k singular values only (or the
      norm alone: `SpectrumStep.coverage`), their full SVD not fitting the time budget.
    operators: conv operator spectra measured and written (norm or full).
    operator_full: of those, whole operator spectra (`operator="full"`).
    operator_norm_only: `operator="full"` steps that fell back to the norm because
      the whole spectrum did not fit the time budget.
    operator_failed: operator spectra recorded with an error (non-finite weight, an
      input size the stride does not divide, ...); messages in `errors`.
    operator_waiting: conv layers measured before any forward pass showed their
      input size (their im2col spectrum alone was logged).
    skipped_sharded: under FSDP2, tags of weights too big to gather whole
      (`max_gather_bytes`): never measured.
    """

    measurements: int = 0
    spectra: int = 0
    unchanged: int = 0
    frozen: list[str] = field(default_factory=list)
    deferred: int = 0
    pending: list[str] = field(default_factory=list)
    pending_count: int = 0
    late_periods: int = 0
    over_budget: int = 0
    threads: int = 0
    non_finite: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    partial: int = 0
    operators: int = 0
    operator_full: int = 0
    operator_norm_only: int = 0
    operator_failed: int = 0
    operator_waiting: int = 0
    skipped_sharded: list[str] = field(default_factory=list)


@dataclass
class _Layer:
    tag: str
    weight: spectrum_math.LayerWeight
    layout: spectrum_math.MatrixLayout
    # Cost of its SVD in units of groups * rows * cols * min(rows, cols) (flops up to a
    # constant): what the budget's estimate scales by, and the largest-first order.
    units: float
    # The conv module whose operator spectrum is measured (None: not a conv, or off).
    conv: torch.nn.Module | None = None


def is_operator_conv(module: torch.nn.Module) -> bool:
    """A Conv1d/2d/3d (lazy ones included), whose operator spectrum can be measured;
    transposed convolutions are not."""
    return isinstance(module, torch.nn.modules.conv._ConvNd) and not module.transposed


def _operator_units(conv: torch.nn.Module, size: tuple[int, ...]) -> float:
    """Cost of a whole operator spectrum: frequencies x out x in/groups x min(out, in/groups)."""
    out, fan_in = int(conv.weight.shape[0]), int(conv.weight.shape[1])
    rows = out // max(1, int(conv.groups))
    return float(np.prod(size)) * conv.groups * rows * fan_in * min(rows, fan_in)


@dataclass
class _Measured:
    step: int
    fingerprint: tuple
    info: pb.SpectrumInfo
    # Whether that step carries the conv's operator spectrum (a conv measured before its
    # input size was known is measured again once it is, even if its weight is unchanged).
    with_operator: bool = False


def _units(layout: spectrum_math.MatrixLayout, time_budget: float | None = None) -> float:
    """groups * rows * cols * min(rows, cols), scaled down for a big matrix that will get its
    top k singular values only (`analysis.spectrum.choose_coverage` under `time_budget`)."""
    groups, rows, cols = layout.matrix_shape
    units = float(groups) * rows * cols * min(rows, cols)
    coverage = spectrum_math.choose_coverage(layout.matrix_shape, time_budget=time_budget)
    if coverage != "full":
        units *= spectrum_math.svd_cost_units(
            layout.matrix_shape, coverage
        ) / spectrum_math.svd_cost_units(layout.matrix_shape, "full")
    return units


# Same-sized integer dtypes to read a weight's bits as.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _checksums(weights: list[torch.Tensor]) -> list[tuple[int, int] | None]:
    """A bitwise checksum of each weight, with one host synchronisation per device.

    Why a checksum and not `param._version` alone: `_version` counts in-place
    writes through autograd's view of the tensor, and misses some: the fused
    optimizers (`torch.optim.AdamW(fused=True)`) and writes through `param.data`
    leave it as it was (checked on torch 2.13). A checksum reads each weight once
    (memory bandwidth: about 0.1 s for GPT-2's 124M parameters on 2 CPU cores, far
    below their SVDs) and runs only when spectra are measured, every `every` steps,
    never on the training hot path.

    The checksum is (Σ bits, Σ_r (r+1)·Σ bits of row r) over the weight's bit
    patterns as int64 (wrapping): any change of one value changes the first;
    values moving between rows change the second; an optimizer step that keeps
    both would need its integer deltas to cancel exactly in two weighted sums.
    None for a weight whose bits cannot be viewed (an unusual dtype): always "changed".
    """
    out: list[tuple[int, int] | None] = [None] * len(weights)
    by_device: dict[torch.device, list[int]] = {}
    for i, w in enumerate(weights):
        if w.dtype.is_floating_point and w.element_size() in _BITS and w.ndim >= 1:
            by_device.setdefault(w.device, []).append(i)
    for device, indices in by_device.items():
        sums = []
        for i in indices:
            w = weights[i].detach()
            bits = w.view(_BITS[w.element_size()]).reshape(w.shape[0], -1)
            rows = bits.sum(dim=1, dtype=torch.int64)
            weight = torch.arange(1, rows.numel() + 1, device=device, dtype=torch.int64)
            sums.append(torch.stack([rows.sum(), (rows * weight).sum()]))
        values = torch.stack(sums).tolist()  # the one synchronisation for this device
        for i, (a, b) in zip(indices, values):
            out[i] = (int(a), int(b))
    return out


def _fingerprint(weight: torch.Tensor, checksum: tuple[int, int] | None) -> tuple | None:
    if checksum is None:
        return None
    version = getattr(weight, "_version", None)
    return (weight.data_ptr(), tuple(weight.shape), weight.dtype, weight.device, version, checksum)


def busy_cores() -> float | None:
    """Runnable tasks beyond this process's own threads: os.getloadavg()'s 1-minute load
    minus torch's thread count (this process's share while it trains), or None where the
    load average is unknown (Windows)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return max(0.0, load - torch.get_num_threads())


def available_cores() -> int:
    """Cores this process may run on (os.sched_getaffinity; os.cpu_count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(configured: int = 0) -> int:
    """Torch threads for the SVDs: fewer when other processes keep the cores busy.

    `configured` > 0 is used as is. Otherwise: the cores free of other work,
    floor(available_cores() - busy_cores()), between 1 and torch's current thread
    count. Why: LAPACK/MKL threads that compete for busy cores spin in
    sched_yield; on 2 cores under load one thread took 3.3-5.2 s where two took
    10-47 s, while two are faster when the machine is quiet.
    """
    current = torch.get_num_threads()
    if configured > 0:
        return configured
    busy = busy_cores()
    if busy is None:
        return current
    free = math.floor(available_cores() - busy + 0.5)
    return max(1, min(current, free))


class Spectra(Measurer):
    """Logs the spectrum of every eligible weight every `every` optimizer steps.

    A `deepscope.Measurer` named "spectra". Eligible: every module whose
    `weight` has 2 or more dimensions (`deepscope.analysis.spectrum.module_weight`:
    Linear, ConvNd, ConvTransposeNd, Embedding, EmbeddingBag, Bilinear, and
    custom modules with such a weight), found anew at each cadence step (lazy
    modules join once initialised), except frozen ones (`requires_grad=False`)
    unless `include_frozen`. A weight shared by several modules is measured
    once, under its first name. Tags are "<prefix>/<module name>" with the name
    from `model.named_modules()` ("<prefix>/model" for the model itself),
    without `torch.compile`'s `_orig_mod.` (`deepscope.module_names`): a
    compiled model logs the same tags as the eager one.

    Unchanged weights: a weight that is bit for bit the one of its last measured
    spectrum (same storage, same `_version`, same bitwise checksum; see
    `_checksums`) is not decomposed again: a small step "unchanged since step N"
    is written instead (`SpectrumStep.unchanged`), which the plugin serves as
    step N's spectrum.

    Time budget: each call measures layers largest first (by SVD cost) until
    `time_budget` seconds are spent — always at least one layer, and the next
    layers only while their estimated cost (from the seconds per unit of cost
    measured so far) still fits. The rest are carried over: while layers are
    pending, `every` reads 1, so that the monitor calls `measure` again at the
    next optimizer steps; each layer is measured at most once per cadence period
    and is logged at the step it was measured at. A cadence step that finds
    layers of the previous period still pending measures them first (least
    recently measured first), so every layer is measured in turn. What was
    deferred is in `stats` and warned about once.

    Threads: the SVDs run with `choose_threads(threads)` torch threads (fewer
    when `os.getloadavg()` says other processes keep the cores busy), set with
    `torch.set_num_threads` around the measurement and restored after it.

    All layers of a call are decomposed together (`layer_spectra`: one batched
    svdvals call per shape) under torch.no_grad; nothing touches `.grad`, the
    modules' training mode, or the weights. Results are copied to the host once
    per batch (a synchronisation every `every` steps and on carried-over steps,
    not on every step).

    A non-finite weight or an SVD that does not converge is written as a step
    with its error, counted in `stats` and warned about once; training goes on.

    Conv operators: `start` puts a forward pre-hook on every Conv1d/2d/3d (not
    transposed ones) that records the spatial size of its input once and then
    removes itself (`close` removes those that never fired; convs that appear
    later are hooked at the next cadence step). From then on each measurement of
    a conv also logs its operator spectrum (`operator`); a conv measured before
    any forward pass has its im2col spectrum alone (`stats.operator_waiting`).

    Args:
      every: cadence in optimizer steps.
      prefix: tag prefix.
      dtype: torch.float32 (default) or torch.float64 for the SVDs.
      time_budget: seconds per call (DEFAULT_TIME_BUDGET); None: everything at once.
      include_frozen: also measure weights with requires_grad=False.
      threads: torch threads for the SVDs; None: decide from the machine's load.
      operator: conv layers' operator spectra (`SpectrumStep.operator`, computed for
        circular padding on the input size the layer saw): "norm" (default: the
        operator norm, its Lipschitz constant, a few ms a layer), "full" (the whole
        operator spectrum, its `operator_top_k` largest values and quantiles, where
        it fits the time budget; the norm elsewhere) or None (none).
      operator_top_k: largest operator singular values kept with "full".
      max_gather_bytes: under FSDP2 (sharded weights), the largest weight gathered
        whole to measure its spectrum (default 1 GiB); bigger ones are skipped,
        listed in `stats.skipped_sharded` and warned about once.
      name: the measurer's name (default "spectra").

    Under FSDP2 every rank takes part (gathering a weight is a collective):
    rank 0 decides, layer by layer, what to measure within the time budget and
    says it to the others (one broadcast per layer), every rank gathers that
    one weight (`DTensor.full_tensor()`), and rank 0 alone measures and writes
    it; the gathered copy is freed before the next. Layers that do not fit the
    budget are not carried over to the next steps (every rank must agree on
    when the measurer runs): they wait for the next cadence step, counted in
    `stats.deferred`, least recently measured first then.

    `start(model, optimizer, writer)` (done by `watch()`) says what to measure
    and where to write; `measure(step)` then measures at global step `step`.
    """

    name = "spectra"

    def __init__(
        self,
        every: int = DEFAULT_SPECTRA_EVERY,
        *,
        prefix: str = "spectra",
        dtype: torch.dtype = torch.float32,
        time_budget: float | None = DEFAULT_TIME_BUDGET,
        include_frozen: bool = False,
        threads: int | None = None,
        operator: str | None = "norm",
        operator_top_k: int = spectrum_writer.DEFAULT_OPERATOR_TOP_K,
        max_gather_bytes: int = DEFAULT_MAX_GATHER_BYTES,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        if (
            isinstance(max_gather_bytes, bool)
            or not isinstance(max_gather_bytes, int)
            or max_gather_bytes < 1
        ):
            raise ValueError(
                f"max_gather_bytes must be a positive number of bytes, got {max_gather_bytes!r}"
            )
        self.max_gather_bytes = max_gather_bytes
        if operator is not None and operator not in spectrum_writer.OPERATOR_CHOICES:
            raise ValueError(
                f"operator must be 'norm' (every conv's operator norm, the default), 'full' "
                f"(their whole operator spectra, within the time budget) or None (im2col "
                f"spectra only), got {operator!r}"
            )
        if isinstance(operator_top_k, bool) or not isinstance(operator_top_k, int):
            raise ValueError(f"operator_top_k must be a positive integer, got {operator_top_k!r}")
        if operator_top_k < 1:
            raise ValueError(f"operator_top_k must be a positive integer, got {operator_top_k!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if time_budget is not None and (
            isinstance(time_budget, bool)
            or not isinstance(time_budget, int | float)
            or not time_budget > 0
        ):
            raise ValueError(
                f"time_budget must be a positive number of seconds or None (no budget), "
                f"got {time_budget!r}"
            )
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(
                f"threads must be a positive integer or None (decide from the load), "
                f"got {threads!r}"
            )
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.prefix = prefix
        self.dtype = dtype
        self.time_budget = None if time_budget is None else float(time_budget)
        self.include_frozen = bool(include_frozen)
        self.threads = threads
        self.operator = operator
        self.operator_top_k = operator_top_k
        self.stats = SpectraStats()
        # Conv modules' input spatial sizes, recorded once by a forward pre-hook (by id).
        self.input_sizes: dict[int, tuple[int, ...]] = {}
        self._hooks: dict[int, torch.utils.hooks.RemovableHandle] = {}
        self._operator_seconds_per_unit: float | None = None
        # Per conv (by id): where its next operator norm's Lanczos starts.
        self._warm_starts: dict[int, conv_operator.NormWarmStart] = {}
        self._pending: list[_Layer] = []
        self._measured: dict[str, _Measured] = {}
        self._last_measured_step: dict[str, int] = {}
        self._seconds_per_unit: float | None = None
        self._warned_deferred = False
        self._clock = time.perf_counter  # seconds; tests replace it

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Measure `model`'s weights, written to `writer` (a deepscope.SummaryWriter)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not hasattr(writer, "_add_spectrum"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        self.model = model
        self.writer = writer
        self._hook_convs()

    # ------------------------------------------------------------------ input sizes

    def _hook_convs(self) -> None:
        """A one-shot forward pre-hook on every conv whose input size is not known yet."""
        if self.operator is None or self.model is None:
            return
        for _, module in module_names.named_modules(self.model):
            key = id(module)
            if is_operator_conv(module) and key not in self.input_sizes and key not in self._hooks:
                self._hooks[key] = module.register_forward_pre_hook(self._size_hook(module))

    def _size_hook(self, module: torch.nn.Module):
        key = id(module)

        def record_input_size(mod, args) -> None:
            # Never raises into the forward pass: an input it cannot read is left alone.
            try:
                x = args[0] if args else None
                if isinstance(x, torch.Tensor):
                    self.input_sizes[key] = conv_operator.conv_input_size(mod, tuple(x.shape))
            except Exception:  # noqa: BLE001 - a hook must not stop training
                return
            handle = self._hooks.pop(key, None)
            if handle is not None and key in self.input_sizes:
                handle.remove()
            elif handle is not None:
                self._hooks[key] = handle

        return record_input_size

    def _remove_hooks(self) -> None:
        for handle in self._hooks.values():
            handle.remove()
        self._hooks.clear()

    @property
    def non_finite(self) -> int:
        """Spectra not measured because the weight was not finite (`stats.non_finite`)."""
        return self.stats.non_finite

    @property
    def every(self) -> int:
        """The monitor's cadence for this measurer: 1 while layers are carried over."""
        return 1 if self._pending else self.cadence

    @every.setter
    def every(self, value: int) -> None:
        self.cadence = check_every(value, "every")

    def layers(self) -> list[tuple[str, spectrum_math.LayerWeight]]:
        """(tag, LayerWeight) of every eligible weight now, in `named_modules()` order.

        Frozen weights (requires_grad False) are left out unless `include_frozen`.
        """
        return [(tag, layer) for tag, layer, frozen, _ in self._found() if not frozen]

    def _found(
        self,
    ) -> Iterator[tuple[str, spectrum_math.LayerWeight, bool, torch.nn.Module]]:
        """(tag, LayerWeight, left out as frozen, module) of every eligible weight."""
        seen = set()
        for name, module in module_names.named_modules(self.model):
            layer = spectrum_math.module_weight(module)
            if layer is None or id(layer.weight) in seen:
                continue
            seen.add(id(layer.weight))
            frozen = not self.include_frozen and not layer.weight.requires_grad
            yield f"{self.prefix}/{name or 'model'}", layer, frozen, module

    def _start_period(self) -> None:
        """A cadence step: every eligible layer is due, least recently measured first,
        then largest first."""
        if self._pending:
            self.stats.late_periods += 1
        carried = {layer.tag for layer in self._pending}
        self._hook_convs()  # convs added since (or whose hook saw no tensor)
        due, frozen = [], []
        for tag, weight, is_frozen, module in self._found():
            if is_frozen:
                frozen.append(tag)
                continue
            layout = spectrum_math.matrix_layout(
                weight.weight.shape, groups=weight.groups, layer_kind=weight.layer_kind
            )
            conv = module if self.operator is not None and is_operator_conv(module) else None
            due.append(_Layer(tag, weight, layout, _units(layout, self.time_budget), conv))
        self.stats.frozen = frozen[:MAX_TAGS_KEPT]
        # Layers left over from the last period first (round robin), then the least
        # recently measured, then the largest; equal shapes end up next to each other,
        # so that they share batched SVD calls.
        due.sort(
            key=lambda layer: (
                layer.tag not in carried,
                self._last_measured_step.get(layer.tag, -1),
                -layer.units,
                layer.layout.matrix_shape,
            )
        )
        self._pending = due

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Measure due layers at global step `step`, within the time budget.

        A call at a cadence step (or with nothing pending: a direct call) starts a
        new period in which every eligible layer is due; a call with layers pending
        continues with them.
        """
        if self.model is None:
            raise RuntimeError("Spectra.measure before start(model, optimizer, writer)")
        if self._gathering and not self.ranks.writes:
            self._follow_gathers()
            return
        try:
            self._measure_here(step)
        finally:
            if self._gathering:
                self._pending = []  # not carried over: the ranks agree on `every`
                self.stats.pending, self.stats.pending_count = [], 0
                self.ranks.broadcast_int(-1, "spectra: done gathering")

    def on_every_rank(self, ranks) -> bool:
        """Sharded weights (FSDP2): every rank joins the gathers; replicas: rank 0 alone."""
        return ranks.sharded

    @property
    def _gathering(self) -> bool:
        return self.ranks.sharded and self.ranks.distributed

    def _gather_order(self) -> list[tuple[str, torch.Tensor]]:
        """(tag, weight) of every measured weight, in the same order on every rank."""
        return [(tag, layer.weight) for tag, layer in self.layers()]

    def _follow_gathers(self) -> None:
        """On ranks other than 0: gather each weight rank 0 names, until it says done."""
        weights = [weight for _, weight in self._gather_order()]
        while True:
            index = self.ranks.broadcast_int(-1, "spectra: the next weight to gather")
            if index < 0 or index >= len(weights):
                return
            distributed.full_tensor(weights[index].detach())

    def _gathered(self, layer: _Layer) -> _Layer | None:
        """On rank 0: `layer` with its whole weight, gathered from every rank (None: too big)."""
        weight = layer.weight.weight
        if not distributed.is_dtensor(weight):
            return layer
        size = weight.numel() * weight.element_size()
        if size > self.max_gather_bytes:
            if layer.tag not in self.stats.skipped_sharded:
                self.stats.skipped_sharded.append(layer.tag)
                warn_from_hook(
                    f"deepscope: the spectrum of {layer.tag} is not measured: its weight is "
                    f"{size / 2**20:.0f} MiB, more than max_gather_bytes "
                    f"({self.max_gather_bytes / 2**20:.0f} MiB) to gather whole under FSDP2 "
                    f"(listed in monitor.measurers[{self.name!r}].stats.skipped_sharded)"
                )
            return None
        order = [tag for tag, _ in self._gather_order()]
        self.ranks.broadcast_int(order.index(layer.tag), "spectra: the next weight to gather")
        full = distributed.full_tensor(weight.detach())
        return dataclasses.replace(layer, weight=layer.weight._replace(weight=full))

    def _measure_here(self, step: int) -> None:
        start = self._clock()
        previous_threads = torch.get_num_threads()
        new_period = step % self.cadence == 0 or not self._pending
        try:
            if new_period:
                self._start_period()
            threads = choose_threads(self.threads or 0)
            self.stats.threads = threads
            if threads != previous_threads:
                torch.set_num_threads(threads)
            with torch.no_grad():
                self._measure_due(step, start)
        except BaseException:
            # The monitor records the error; the layers left are not retried at every step.
            self._pending = []
            raise
        finally:
            if torch.get_num_threads() != previous_threads:
                torch.set_num_threads(previous_threads)
            elapsed = self._clock() - start
            self.stats.measurements += 1
            self.stats.seconds += elapsed
            if self.time_budget is not None and elapsed > self.time_budget:
                self.stats.over_budget += 1
            self.stats.pending = [layer.tag for layer in self._pending[:MAX_TAGS_KEPT]]
            self.stats.pending_count = len(self._pending)
        if self._pending and new_period:
            self._report_deferred(step)

    def _measure_due(self, step: int, start: float) -> None:
        measured_any = False
        while self._pending:
            # The next run of equal-shaped layers (they share one batched SVD call);
            # under FSDP2 one layer at a time, gathered whole.
            shape = self._pending[0].layout.matrix_shape
            run = 1
            while (
                not self._gathering
                and run < len(self._pending)
                and self._pending[run].layout.matrix_shape == shape
            ):
                run += 1
            if self._gathering:
                whole = self._gathered(self._pending[0])
                if whole is None:
                    self._pending.pop(0)
                    continue
                self._pending[0] = whole
            chunk = self._pending[:run]
            checksums = _checksums([layer.weight.weight for layer in chunk])
            fingerprints = [
                _fingerprint(layer.weight.weight, c) for layer, c in zip(chunk, checksums)
            ]
            changed, done = [], set()
            for layer, fingerprint in zip(chunk, fingerprints):
                last = self._measured.get(layer.tag)
                if (
                    fingerprint is not None
                    and last is not None
                    and last.fingerprint == fingerprint
                    and not self._operator_now_possible(layer, last)
                ):
                    self.writer.add_unchanged_spectrum(
                        layer.tag, last.step, global_step=step, info=last.info
                    )
                    self.stats.unchanged += 1
                    self._last_measured_step[layer.tag] = step
                    done.add(id(layer))
                else:
                    changed.append((layer, fingerprint))
            estimating = self._seconds_per_unit is None
            taken = self._fitting(changed, measured_any, start)
            if taken:
                self._measure_layers(step, taken, start)
                measured_any = True
            done.update(id(layer) for layer, _ in taken)
            self._pending = [layer for layer in self._pending if id(layer) not in done]
            if len(taken) < len(changed) and not (estimating and taken):
                # The budget is spent: the rest wait for the next step. (A first layer
                # taken alone to get the estimate is not that: its equal-shaped
                # companions are weighed against the budget next.)
                break

    def _fitting(self, changed: list, measured_any: bool, start: float) -> list:
        """The first of `changed` that fit what is left of the budget (at least one per call)."""
        if self.time_budget is None or not changed:
            return changed
        elapsed = self._clock() - start
        if self._seconds_per_unit is None:
            # No estimate yet: one layer, whose time gives the estimate for the rest.
            return [] if measured_any and elapsed >= self.time_budget else changed[:1]
        taken = []
        total = elapsed
        for layer, fingerprint in changed:
            cost = layer.units * self._seconds_per_unit
            if total + cost > self.time_budget and (taken or measured_any):
                break
            taken.append((layer, fingerprint))
            total += cost
        return taken

    def _measure_layers(self, step: int, taken: list, call_start: float) -> None:
        chunk_start = self._clock()
        # Big matrices whose full SVD would not fit the budget get their top k singular
        # values (or the norm alone), marked so in the step (analysis.spectrum, "auto").
        spectra = spectrum_math.layer_spectra(
            [layer.weight for layer, _ in taken],
            dtype=self.dtype,
            coverage="auto",
            time_budget=self.time_budget,
        )
        # What scales with the layers' size is the decomposition; writing a step costs
        # about a millisecond, except the writer's first write (0.3 s: its event file and
        # imports), which charged to the first layer's size made every other layer look
        # too costly for the budget at step 0.
        decomposed = self._clock() - chunk_start
        for (layer, fingerprint), spectrum in zip(taken, spectra):
            operator = self._operator(layer, step, start=call_start)
            extra = {} if operator is None else {"operator": operator}
            written = self.writer._add_spectrum(layer.tag, spectrum, global_step=step, **extra)
            self.stats.spectra += 1
            if getattr(spectrum, "coverage", "full") != "full":
                self.stats.partial += 1
            self._last_measured_step[layer.tag] = step
            if written.error:
                self._measured.pop(layer.tag, None)  # measured again next time
                self._count_error(layer.tag, step, spectrum, written.error)
            elif fingerprint is not None:
                self._measured[layer.tag] = _Measured(
                    step, fingerprint, spectrum_info(spectrum), with_operator=operator is not None
                )
        units = sum(layer.units for layer, _ in taken)
        if units > 0:  # the spectra's own cost (operators are budgeted on their own)
            self._seconds_per_unit = decomposed / units

    def _operator(self, layer: _Layer, step: int, *, start: float) -> pb.OperatorSpectrum | None:
        """A conv layer's operator spectrum at `step`, or None (no conv, or no input seen yet).

        The norm by default; the whole spectrum with `operator="full"` when its estimated
        cost fits what is left of the time budget (else the norm, counted in
        `stats.operator_norm_only`). Never raises: trouble is the message's `error`.
        """
        conv = layer.conv
        if conv is None:
            return None
        size = self.input_sizes.get(id(conv))
        if size is None:
            self.stats.operator_waiting += 1
            return None
        op_start = self._clock()
        divides = all(n % s == 0 for n, s in zip(size, conv.stride))
        full = self.operator == "full" and divides and self._full_fits(conv, size, start)
        try:
            size, strides, dilations = spectrum_writer.operator_geometry(
                layer.weight.weight.shape,
                size,
                stride=tuple(conv.stride),
                dilation=tuple(conv.dilation),
                groups=int(conv.groups),
                layer_kind=layer.weight.layer_kind,
                full=full,
            )
            message = spectrum_writer.operator_spectrum(
                layer.weight.weight,  # the conv's weight (gathered, under FSDP2)
                size,
                stride=strides,
                dilation=dilations,
                groups=int(conv.groups),
                full=full,
                top_k=self.operator_top_k,
                warm_start=self._warm_starts.setdefault(id(conv), conv_operator.NormWarmStart()),
            )
        except Exception as error:  # noqa: BLE001 - recorded in the step; training goes on
            message = pb.OperatorSpectrum(
                input_size=list(size),
                padding_rule="circular",
                norm_only=not full,
                operator_norm=math.nan,
                error=f"the operator spectrum could not be computed: {error}",
            )
        self.stats.operators += 1
        if full and not message.error:
            self.stats.operator_full += 1
            units = _operator_units(conv, size)
            if units > 0:
                self._operator_seconds_per_unit = (self._clock() - op_start) / units
        elif self.operator == "full":
            self.stats.operator_norm_only += 1
        if message.error:
            self.stats.operator_failed += 1
            text = f"deepscope: operator spectrum of {layer.tag} at step {step}: {message.error}"
            if len(self.stats.errors) < MAX_ERRORS_KEPT:
                self.stats.errors.append(text)
            if self.stats.operator_failed == 1:
                warn_from_hook(
                    text + " (recorded in the step; training goes on; counted in "
                    f"monitor.measurers[{self.name!r}].stats.operator_failed, warned once)"
                )
        return message

    def _operator_now_possible(self, layer: _Layer, last: _Measured) -> bool:
        """A conv whose last measured step had no operator spectrum, now measurable."""
        return (
            layer.conv is not None and not last.with_operator and id(layer.conv) in self.input_sizes
        )

    def _full_fits(self, conv: torch.nn.Module, size: tuple[int, ...], start: float) -> bool:
        """Whether a whole operator spectrum fits what is left of this call's time budget
        (by the seconds per unit of the last one; the first one is always tried)."""
        if self.time_budget is None or self._operator_seconds_per_unit is None:
            return True
        left = self.time_budget - (self._clock() - start)
        return _operator_units(conv, size) * self._operator_seconds_per_unit <= left

    def _report_deferred(self, step: int) -> None:
        self.stats.deferred += len(self._pending)
        if self._warned_deferred:
            return
        self._warned_deferred = True
        warn_from_hook(
            f"deepscope: spectra at step {step}: {len(self._pending)} layer(s) did not fit the "
            f"time budget of {self.time_budget} s and are carried over to the next optimizer "
            f"steps, largest first (each logged at the step it is measured at), e.g. "
            f"{self._pending[0].tag}; see monitor.measurers[{self.name!r}].stats (deferred, "
            "pending); raise spectra_options={'time_budget': ...} or set it to None to "
            "measure everything at once. Warned once.",
        )

    def _count_error(self, tag: str, step: int, spectrum, error: str) -> None:
        if spectrum.error.startswith("non-finite weight"):
            self.stats.non_finite += 1
        else:
            self.stats.failed += 1
        message = f"deepscope: spectrum of {tag} at step {step} not measured: {error}"
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(message)
        if self.stats.non_finite + self.stats.failed == 1:
            warn_from_hook(
                message + " (recorded with its error; training goes on; such spectra are "
                "counted in monitor.measurers['spectra'].stats, warned about once)",
            )

    def flush(self) -> None:
        """Nothing is held back: every measurement is written as it is made."""

    def close(self) -> None:
        """Removes the input-size hooks that have not fired; layers still pending stay
        unmeasured (`stats.pending`). Drops the operator norms' warm starts."""
        self._remove_hooks()
        self._warm_starts.clear()


class SpectraWatcher(Spectra):
    """`Spectra` already started on `model` and `writer` (the older spelling, kept for scripts).

    `SpectraWatcher(model, writer, every, ...)` is
    `Spectra(every, ...)` followed by `start(model, None, writer)`.
    """

    def __init__(self, model: torch.nn.Module, writer, every: int = DEFAULT_SPECTRA_EVERY, **kw):
        super().__init__(every, **kw)
        self.start(model, None, writer)
