"""watch()'s layer-statistics measurers: activations of every layer, gradient and weight norms.

`LayerStats` logs, per module output tensor, its activation statistics (mean,
std, RMS, max |a|, the fractions zero, saturated, non-finite and dead; and on
covariance steps its channel-covariance eigenvalues with effective dimension,
delve saturation and effective rank) under "layer_statistics/activations".
`ParameterNorms` logs, per trainable parameter, ‖∇W‖₂, ‖W‖₂ and their ratio
under "layer_statistics/parameters", from the optimizer's pre-step hook.
The math is `deepscope.analysis.layer_statistics`; the rows are written by
`writer.add_layer_statistics`.

What `LayerStats` measures (`on`):

- on="train" (the default): the measured step's own training batch. Forward
  hooks are attached right after the optimizer step before a due step (by
  `prepare`, which the monitor calls after every optimizer step; and at
  `start`, for the first step) and removed right after the due step, so
  the steps in between run without any hook: they cost nothing. Every
  forward call a hooked module makes while they are attached, with
  gradients enabled, is merged into its row (micro-batches of gradient
  accumulation, a module used twice); calls under `torch.no_grad()` (an
  evaluation pass between two steps) are left out. An optimizer that runs
  its forward passes inside `step()` (LBFGS's closure) has them measured too.
- on=<probe>: a fixed batch (a tensor, an (inputs, labels) tuple, a mapping of
  inputs, or a list of batches) run through the model after the optimizer
  step, in eval mode without gradients; every module's training mode and
  the RNG states are restored after, no `.grad` is touched.

The rows (`layers=None`): every leaf module (one without children), named as
in `model.named_modules()` (without torch.compile's `_orig_mod.`), in the
order of the forward pass; a module's output is split into tensors by
`output_tensors`' rule (a tuple's items "module:0", a Hugging Face
`ModelOutput`'s fields "module:logits", ...; the model itself is "(model)").
Parts that are not floating-point tensors (integer ids, strings, None) are
skipped; modules without any are listed once (a warning and the measurer's
`skipped`, module → reason). Non-finite activations are counted
(`non_finite_fraction`, the measurer's `non_finite`), never raised.

torch.compile: forward hooks are not called inside a compiled graph (and,
attached before it is compiled, they would be compiled into it). With
on="train" the layers inside a compiled region are not hooked; a compiled
leaf (`model.fc = torch.compile(model.fc)`) is hooked on its wrapper. At the
first measured step the layers that could not be measured are named once (a
warning and `compiled_layers`); a measured step at which a forward ran but
no layer hook was called raises (the monitor records it: a warning and the
error in `monitor.stats.measurers[name]`), so nothing is silently not logged.
on=<probe> runs the eager module and measures every layer.

Host syncs: none inside the hooks (sums stay on the device); one batched
copy per measurement, asynchronous on CUDA (written at a later step or at
flush, as update ratios are).

Costs (benchmarks/bench_layer_statistics.py, ResNet-18 on CPU, batch 32): see
DEFAULT_LAYER_STATISTICS_EVERY and DEFAULT_COVARIANCE_EVERY below.
"""

from __future__ import annotations

import difflib
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepscope import module_names
from deepscope.analysis import layer_statistics as ls
from deepscope.writer import distributed
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.measurer import Measurer, check_every
from deepscope.writer.probe import batch_to, model_device, probe_batches, probing, run_probe
from deepscope.writer.watch_update_ratios import DEFAULT_EVERY, _named_optimizer_params

# Activation statistics: one measured step in DEFAULT_LAYER_STATISTICS_EVERY (see the
# benchmark: on ResNet-18 a measured step costs about 5-8% more, so 1/100 of that is
# well under the 1% target, with room for machines where the reductions are slower).
DEFAULT_LAYER_STATISTICS_EVERY = 100
# Channel covariances (eigenvalues, effective dimension, delve saturation, effective rank)
# at one measured step in 10: co-moments cost C² per sample and an eigendecomposition C³.
# LayerStats' default is the smallest multiple of its `every` that is >= this (so the
# default every=100 gets 1000; every=3 gets 1002): covariances need a measured step.
DEFAULT_COVARIANCE_EVERY = 1000
# Parameter norms: at the update ratios' cadence.
DEFAULT_PARAMETER_NORMS_EVERY = DEFAULT_EVERY
ACTIVATIONS_TAG = "layer_statistics/activations"
PARAMETERS_TAG = "layer_statistics/parameters"
ROOT_NAME = "(model)"  # the row name of the model's own output (its module name is "")
_NAMES_SUGGESTED = 3


def default_covariance_every(every: int) -> int:
    """LayerStats' default covariance cadence for a measurement cadence of `every` steps.

    The smallest multiple of `every` (optimizer steps, an int >= 1) that is
    >= DEFAULT_COVARIANCE_EVERY (1000): covariances are taken on measured steps
    only, so the cadence must be a multiple of `every`; every=100 keeps 1000,
    every=3 gets 1002, every=1500 gets 1500.
    """
    every = check_every(every)
    return -(-DEFAULT_COVARIANCE_EVERY // every) * every


class _DerivedDefault:
    """LayerStats' covariance_every default: derived from `every` (see default_covariance_every)."""

    def __repr__(self) -> str:
        return f"<the smallest multiple of every that is >= {DEFAULT_COVARIANCE_EVERY}>"


_COVARIANCE_DEFAULT = _DerivedDefault()


# --------------------------------------------------------------------------- host copies


@dataclass
class _Pending:
    """A measurement whose numbers may still be on their way from the device."""

    step: int
    walltime: float
    host: torch.Tensor  # float64, flat
    finish: object  # callable(host numpy array) -> None: builds and writes the rows
    ready: object = None  # torch.cuda.Event or None

    def arrived(self) -> bool:
        return self.ready is None or self.ready.query()


def _flat_to_host(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, object]:
    """`tensors` flattened to one float64 tensor and copied to the host: one copy.

    On CUDA the copy is asynchronous (pinned memory; returns its event), so
    the caller never waits for the device; elsewhere it is done on return.
    """
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    if flat.is_cuda:
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event
    return flat.cpu(), None


class _HostQueue:
    """Measurements waiting for their host copy; written in step order once arrived."""

    def __init__(self):
        self.pending: list[_Pending] = []

    def put(self, pending: _Pending) -> None:
        self.pending.append(pending)
        self.write(wait=False)

    def write(self, wait: bool) -> None:
        while self.pending and (wait or self.pending[0].arrived()):
            item = self.pending.pop(0)
            if item.ready is not None:
                item.ready.synchronize()
            item.finish(item.host.numpy())


def _check_writer(writer) -> None:
    if not hasattr(writer, "add_layer_statistics"):
        raise TypeError(
            "writer must be a deepscope.SummaryWriter with add_layer_statistics "
            "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
        )


def _check_tag(tag) -> str:
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    return tag


# --------------------------------------------------------------------------- parameter norms


class ParameterNorms(Measurer):
    """Logs ‖∇W‖₂, ‖W‖₂ and ‖∇W‖₂/‖W‖₂ of every trainable parameter, under `tag`.

    Measured in the optimizer's pre-step hook (this step's gradients, the
    weights before the update) by multi-tensor `torch._foreach_norm`, with no
    host sync: the [P, 3] table is copied once, asynchronously on CUDA. A
    parameter without a gradient at a step has NaN gradient norm and ratio.

    Args:
      every: cadence in optimizer steps (default: the update ratios', 50).
      tag: the series' tag.
      name: the measurer's name (default "parameter_norms").

    Attributes: names (the parameters, in order, after `start`); measurements;
    non_finite (non-finite norms logged: an infinite or NaN gradient or weight;
    not ‖∇W‖₂/‖W‖₂ of a weight exactly zero, such as a fresh bias: that ratio is
    logged as computed, inf or NaN, and means "undefined", which the tab shows
    as "‖W‖ = 0: ratio undefined", as update ratios do).
    """

    name = "parameter_norms"

    def __init__(
        self,
        every: int = DEFAULT_PARAMETER_NORMS_EVERY,
        tag: str = PARAMETERS_TAG,
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        self.tag = _check_tag(tag)
        self.names: list[str] = []
        self.measurements = 0
        self.non_finite = 0
        self.writer = None
        self._params: list[torch.Tensor] = []
        self._queue = _HostQueue()

    def start(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, writer) -> None:
        _check_writer(writer)
        self.names, self._params = _named_optimizer_params(model, optimizer)
        self.writer = writer

    def due(self, step: int) -> bool:
        self._queue.write(wait=False)
        return step % self.every == 0

    def on_every_rank(self, ranks) -> bool:
        """Sharded parameters (FSDP2): every rank norms its shard; replicas: rank 0."""
        return ranks.sharded

    def _sharded_table(self, step: int) -> torch.Tensor | None:
        """The [P, 3] table of sharded parameters from per-shard squares, all-reduced.

        Every rank joins (one whose own part failed too); 2 float32 per
        parameter move. None on the ranks that do not write.
        """
        count = len(self._params)
        squares, failure = None, None
        try:
            grads = [
                None if p.grad is None else distributed.local_part(p.grad) for p in self._params
            ]
            grad_norms, weight_norms = ls.parameter_norms(
                [distributed.local_part(p) for p in self._params], grads
            )
            copies = torch.tensor(
                [distributed.replication(p) for p in self._params], dtype=torch.float32
            ).to(weight_norms.device)
            squares = torch.cat([grad_norms.square() / copies, weight_norms.square() / copies])
        except Exception as error:
            failure = error
        total = self.ranks.all_reduce_float32(squares, 2 * count, "parameter norms")
        if failure is not None:
            raise failure
        # The update ratios of this step need the same ‖W‖²: they reduce ‖ΔW‖² alone.
        self.ranks.weight_squares = (step, tuple(map(id, self._params)), total[count:].clone())
        if not self.ranks.writes:
            return None
        grad_norms, weight_norms = total[:count].sqrt(), total[count:].sqrt()
        return torch.stack([grad_norms, weight_norms, grad_norms / weight_norms], dim=1)

    def before_step(self, step: int, model=None, optimizer=None, writer=None) -> None:
        began = time.perf_counter()
        if self.ranks.sharded and self.ranks.distributed:
            table = self._sharded_table(step)
            if table is None:
                return
        else:
            table = ls.parameter_table(self._params)
        host, ready = _flat_to_host([table])
        rows = len(self._params)
        # No gradient at this step (frozen, or unused by this loss): "not measured".
        without = [i for i, param in enumerate(self._params) if param.grad is None]

        def finish(values: np.ndarray) -> None:
            values = values.reshape(rows, len(ls.PARAMETER_STATISTICS))
            self._count_non_finite(values, without, step)
            self.writer.add_layer_statistics(
                self.tag,
                parameters=self._rows(values, without),
                global_step=step,
                walltime=walltime,
                seconds=time.perf_counter() - began if ready is None else 0.0,
            )

        walltime = time.time()
        self.measurements += 1
        self._queue.put(_Pending(step, walltime, host, finish, ready))

    def _rows(self, values: np.ndarray, without: list[int]):
        from deepscope.writer import layer_statistics as builder

        rows = builder.ParameterRows(self.names, values, statistics=ls.PARAMETER_STATISTICS)
        if hasattr(rows, "without_gradient"):  # the builder marks "no gradient" apart from NaN
            rows.without_gradient = without
        return rows

    def _count_non_finite(self, values: np.ndarray, without: list[int], step: int) -> None:
        # The gradient statistics of a parameter without a gradient are "not measured" (NaN).
        measured = np.ones(values.shape, dtype=bool)
        measured[without, 0] = measured[without, 2] = False
        measured[:, 2] &= values[:, 1] != 0  # a zero weight (a fresh bias): ratio undefined
        bad = ~np.isfinite(values) & measured
        count = int(np.count_nonzero(bad))
        if count and not self.non_finite:
            i = int(np.argwhere(bad)[0][0])
            warn_from_hook(
                f"deepscope: non-finite gradient or weight norm of {self.names[i]} at step "
                f"{step}; it is logged as measured and counted in "
                f"monitor.measurers[{self.name!r}].non_finite",
            )
        self.non_finite += count

    def flush(self) -> None:
        """Write every held measurement (waits for the device)."""
        self._queue.write(wait=True)

    def close(self) -> None:
        self.flush()


# --------------------------------------------------------------------------- layer statistics


@dataclass
class _Layer:
    """One measured module: its user name, where its hook goes, its class and bounds."""

    name: str  # user name ("" for the model itself)
    module: torch.nn.Module  # the eager module (its class, bounds, channel rule)
    target: torch.nn.Module  # where the forward hook is attached (a compiled leaf's wrapper)
    bounds: tuple[float, float] | None

    @property
    def row_prefix(self) -> str:
        return self.name or ROOT_NAME


@dataclass
class _Row:
    """One module output tensor's sums over the calls seen while armed."""

    layer: int
    key: str
    sums: ls.ActivationSums
    covariance: ls.CovarianceSums | None = None


def _row_key(row: _Row) -> int:
    """A row's name as an int, the same on every rank (layer index and a crc of its key)."""
    return (row.layer << 24) | (zlib.crc32(row.key.encode()) & 0xFFFFFF)


class LayerStats(Measurer):
    """Logs activation statistics of every layer (or the named ones) every `every` steps.

    A `deepscope.Measurer` (name "layer_statistics"); see the module doc for
    what is measured, when the hooks are attached, and torch.compile.

    Args:
      every: optimizer steps between measurements.
      layers: module names as in `model.named_modules()` (with or without
        `_orig_mod.`; "" for the model's own output); None: every leaf module.
        A name the model lacks raises ValueError at `start` (listing close
        matches).
      on: "train" (the measured step's own batch) or a probe batch (see the
        module doc).
      tag: the series' tag.
      covariance_every: optimizer steps between covariance measurements (a
        multiple of `every`, else ValueError; None or 0: never). Default: the
        smallest multiple of `every` that is >= 1000 (every=100: 1000; every=3:
        1002; `default_covariance_every`). On those steps every row also gets
        its channel covariance's eigenvalues and the three metrics.
      max_samples: positions (rows) a batch's covariance uses at most, a
        deterministic strided subsample.
      variance_threshold: delve saturation's share of the variance, in (0, 1].
      saturation_tolerance: a bounded activation's value within this fraction
        of its range from a bound is saturated (`analysis.layer_statistics.bounds`).
      name: the measurer's name.

    Attributes: measurements; non_finite (non-finite activation values seen);
    steps_without_forward (measured steps with no training forward pass since
    the previous optimizer step: nothing to measure, nothing logged);
    skipped (module name → why it has no row: its output is not a tensor);
    compiled_layers (layers inside a torch.compile'd region, not measurable
    with on="train"); names (the row names of the last measurement); last_seconds
    (host seconds of the last measurement: its hooks in the forward pass, the
    statistics and eigenvalues, the host copy; not the writing).
    """

    name = "layer_statistics"

    def __init__(
        self,
        every: int = DEFAULT_LAYER_STATISTICS_EVERY,
        layers: Sequence[str] | None = None,
        on="train",
        tag: str = ACTIVATIONS_TAG,
        covariance_every: int | None = _COVARIANCE_DEFAULT,  # type: ignore[assignment]
        max_samples: int = ls.DEFAULT_MAX_SAMPLES,
        variance_threshold: float = ls.DEFAULT_VARIANCE_THRESHOLD,
        saturation_tolerance: float = ls.DEFAULT_TOLERANCE,
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        self.tag = _check_tag(tag)
        if layers is not None:
            if isinstance(layers, str):
                layers = [layers]
            layers = list(layers)
            if not layers or not all(isinstance(layer, str) for layer in layers):
                raise ValueError(
                    "layers must be None (every leaf module) or a non-empty list of module "
                    f"names as in model.named_modules(), got {layers!r}"
                )
            users = [module_names.strip_compile_prefix(layer) for layer in layers]
            if len(set(users)) != len(users):
                raise ValueError(f"layers names a module twice: {users}")
        self._given_layers = layers
        if isinstance(on, str):
            if on != "train":
                raise ValueError(
                    f"on must be 'train' (the measured step's own batch) or a probe batch "
                    f"(a tensor of inputs, an (inputs, labels) tuple, a mapping of inputs or "
                    f"a list of batches), got {on!r}"
                )
            self.on = "train"
            self.batches: list = []
        else:
            self.on = "probe"
            self.batches = list(probe_batches(on))
            if not self.batches:
                raise ValueError("the probe holds no batches: give a tensor of inputs")
        if covariance_every is _COVARIANCE_DEFAULT:
            covariance_every = default_covariance_every(self.every)
        elif covariance_every:
            covariance_every = check_every(covariance_every, "covariance_every")
            if covariance_every % self.every:
                raise ValueError(
                    f"covariance_every ({covariance_every}) must be a multiple of every "
                    f"({self.every}): covariances are measured on measured steps only"
                )
        self.covariance_every = covariance_every or None
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
            raise ValueError(f"max_samples must be an int >= 2, got {max_samples!r}")
        self.max_samples = max_samples
        if isinstance(variance_threshold, bool) or not 0.0 < float(variance_threshold) <= 1.0:
            raise ValueError(
                f"variance_threshold must be in (0, 1] (e.g. 0.99), got {variance_threshold!r}"
            )
        self.variance_threshold = float(variance_threshold)
        if isinstance(saturation_tolerance, bool) or not 0.0 <= float(saturation_tolerance) < 0.5:
            raise ValueError(
                "saturation_tolerance must be a fraction of the activation's range in "
                f"[0, 0.5) (e.g. 0.01), got {saturation_tolerance!r}"
            )
        self.saturation_tolerance = float(saturation_tolerance)
        self.model: torch.nn.Module | None = None
        self.writer = None
        self.measurements = 0
        self.non_finite = 0
        self.skipped: dict[str, str] = {}
        self.compiled_layers: list[str] = []
        self.names: list[str] = []
        self.last_seconds = 0.0
        self.steps_without_forward = 0
        self._layers: list[_Layer] = []
        self._queue = _HostQueue()
        self._handles: list = []
        self._armed = False
        self._covariance_now = False
        self._rows: dict[tuple[int, str], _Row] = {}
        self._forwards = 0  # forward passes of the model itself while armed
        self._hook_seconds = 0.0
        self._hook_error: BaseException | None = None
        self._said_compiled = False
        self._said_non_finite = False
        self._new_skipped: list[str] = []  # skipped rows not warned about yet
        self._on_device: tuple[torch.device | None, list] | None = None

    # -- setting up ----------------------------------------------------------------

    def start(self, model: torch.nn.Module, optimizer, writer) -> None:
        """Find the layers (ValueError naming unknown ones, with close matches); attach."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_writer(writer)
        self._layers, self.compiled_layers = _find_layers(
            model, self._given_layers, train=self.on == "train"
        )
        if not self._layers:
            raise ValueError(
                "no layer to measure: "
                + (
                    f"the layers {self.compiled_layers} are all inside torch.compile'd code, "
                    "whose forward hooks are not called; measure on a probe batch "
                    "(LayerStats(on=probe)), which runs the eager module"
                    if self.compiled_layers
                    else "the model has no modules"
                )
            )
        self.model = model
        self.writer = writer
        if self.on == "train":
            self._arm(covariance=self.covariance_every is not None)  # the first step may be due

    def _is_due(self, step: int) -> bool:
        return step % self.every == 0

    def _is_covariance_step(self, step: int) -> bool:
        return self.covariance_every is not None and step % self.covariance_every == 0

    def due(self, step: int) -> bool:
        self._queue.write(wait=False)
        due = self._is_due(step)
        if self.on == "train" and self._armed and not due:
            self._disarm()  # armed at start for a first step that is not due
        if due and self.on == "train" and self._armed:
            self._covariance_now = self._covariance_now and self._is_covariance_step(step)
        return due

    def prepare(self, step: int) -> None:
        """After every optimizer step (called by the monitor with the next step): with
        on="train", attach the hooks when `step` is due, so that its forward pass is seen."""
        if self.on == "train" and self.model is not None and not self._armed:
            if self._is_due(step):
                self._arm(covariance=self._is_covariance_step(step))

    # -- the hooks -------------------------------------------------------------------

    def _arm(self, covariance: bool) -> None:
        self._disarm()
        self._rows = {}
        self._forwards = 0
        self._hook_seconds = 0.0
        self._hook_error = None
        self._covariance_now = covariance
        self._handles = [
            layer.target.register_forward_hook(self._hook_for(index, need_grad=True))
            for index, layer in enumerate(self._layers)
        ]
        self._handles.append(self.model.register_forward_pre_hook(self._count_forward))
        self._armed = True

    def _disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._armed = False

    def _count_forward(self, module, args) -> None:
        if torch.is_grad_enabled():
            self._forwards += 1

    def _hook_for(self, index: int, need_grad: bool):
        layer = self._layers[index]

        def hook(module, inputs, output) -> None:
            if need_grad and not torch.is_grad_enabled():
                return  # an evaluation pass between two training steps
            began = time.perf_counter()
            try:
                self._accumulate(index, layer, output)
            except Exception as error:  # never crash the forward pass we watch
                if self._hook_error is None:
                    self._hook_error = error
            finally:
                self._hook_seconds += time.perf_counter() - began

        return hook

    def _accumulate(self, index: int, layer: _Layer, output) -> None:
        skipped: list[tuple[str, str]] = []
        tensors = ls.output_tensors(output, skipped)
        if skipped:
            for key, reason in skipped:
                self._skip(ls.row_name(layer.row_prefix, key), reason)
        with torch.no_grad():
            for key, tensor in tensors:
                tensor = tensor.detach()
                channel_dim = ls.channel_dim_of(tensor, layer.module)
                sums = ls.activation_sums(
                    tensor, channel_dim, layer.bounds, self.saturation_tolerance
                )
                covariance = None
                if self._covariance_now:
                    covariance = ls.covariance_sums(tensor, channel_dim, self.max_samples)
                row = self._rows.get((index, key))
                if row is None or row.sums.channels != sums.channels:
                    # A second call with another channel count (a module reused on other
                    # shapes) starts over: one row is one shape's values.
                    self._rows[(index, key)] = _Row(index, key, sums, covariance)
                    continue
                row.sums = row.sums.merge(sums)
                if covariance is not None:
                    row.covariance = (
                        covariance if row.covariance is None else row.covariance.merge(covariance)
                    )

    def _skip(self, row: str, reason: str) -> None:
        if row not in self.skipped:
            self.skipped[row] = reason
            self._new_skipped.append(row)

    # -- measuring -------------------------------------------------------------------

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        """Collect and log the measurement of `step` (train: the hooks of this step's
        forward; probe: a pass of the probe now); raises when nothing could be measured."""
        if self.model is None:
            raise RuntimeError("LayerStats.measure before start(model, optimizer, writer)")
        try:
            if self.ranks.distributed:
                rows, forwards, seconds, covariance = self._measure_ranks(step)
                if not self.ranks.writes:
                    return
            elif self.on == "train":
                covariance = self._covariance_now
                rows, forwards, seconds = self._collect_train()
            else:
                covariance = self._is_covariance_step(step)
                rows, forwards, seconds = self._run_probe(covariance)
            if self._new_skipped:
                self._warn_skipped()
                self._new_skipped = []
            self._log(step, rows, covariance, forwards, seconds)
            if self.compiled_layers and not self._said_compiled:
                # Said once, as the monitor records errors: a warning and an entry in
                # monitor.stats.measurers[name] (the rows above are logged).
                self._said_compiled = True
                raise RuntimeError(_compiled_message(self.compiled_layers, step, self.name))
        finally:
            if self.on == "train":
                self._disarm()

    def on_every_rank(self, ranks) -> bool:
        """Always: each rank sums what its own batch shows, and the sums are combined."""
        return True

    def _measure_ranks(self, step: int) -> tuple[list[_Row], int, float, bool]:
        """This rank's rows merged with every other rank's (all-gathered sums).

        Every rank joins the gather, also one whose own part failed (the
        measurement is then dropped everywhere). Rows are merged in rank
        order: the statistics of the concatenated global batch.
        """
        rows: list[_Row] = []
        forwards, seconds, failure = 0, 0.0, None
        covariance = self._covariance_now if self.on == "train" else self._is_covariance_step(step)
        try:
            if self.on == "train":
                rows, forwards, seconds = self._collect_train()
            else:
                rows, forwards, seconds = self._run_probe(covariance)
            packed = ls.pack_rows(
                [(_row_key(row), row.sums, row.covariance if covariance else None) for row in rows]
            )
        except Exception as error:
            failure, packed = error, None
        began = time.perf_counter()
        parts = self.ranks.all_gather(packed, "layer statistics")
        if failure is not None:
            raise failure
        if not self.ranks.writes:
            return [], forwards, seconds, covariance
        device = rows[0].sums.total.device if rows else None
        own = {_row_key(row): row for row in rows}
        merged: dict[int, _Row] = {}
        for rank, part in enumerate(parts):
            for key, sums, cov in ls.unpack_rows(part, device):
                row = merged.get(key)
                if row is None:
                    mine = own.get(key)
                    if mine is None:
                        raise RuntimeError(
                            f"layer statistics: rank {rank} measured a layer output that "
                            "rank 0 did not see; the ranks' models differ"
                        )
                    merged[key] = _Row(mine.layer, mine.key, sums, cov)
                    continue
                if row.sums.channels != sums.channels:
                    raise RuntimeError(
                        f"layer statistics: rank {rank}'s {self._layers[row.layer].row_prefix} "
                        f"output has {sums.channels} channels, rank 0's {row.sums.channels}"
                    )
                row.sums = row.sums.merge(sums)
                if cov is not None:
                    row.covariance = cov if row.covariance is None else row.covariance.merge(cov)
        forwards = max(forwards, 1) if merged else forwards
        return list(merged.values()), forwards, seconds + time.perf_counter() - began, covariance

    def _collect_train(self) -> tuple[list[_Row], int, float]:
        if not self._armed:
            raise RuntimeError(
                "layer statistics were due but the forward hooks were not attached "
                "(the monitor's step count and this measurer's disagree)"
            )
        rows, forwards, seconds = list(self._rows.values()), self._forwards, self._hook_seconds
        error, self._hook_error = self._hook_error, None
        self._disarm()
        self._rows = {}
        if error is not None:
            raise RuntimeError(f"measuring a layer's output failed: {error!r}") from error
        return rows, forwards, seconds

    def _device_batches(self) -> list:
        device = model_device(self.model)
        if device is None:
            return self.batches
        if self._on_device is None or self._on_device[0] != device:
            self._on_device = (device, [batch_to(batch, device) for batch in self.batches])
        return self._on_device[1]

    def _run_probe(self, covariance: bool) -> tuple[list[_Row], int, float]:
        began = time.perf_counter()
        eager = module_names.eager_module(self.model)
        self._rows = {}
        self._hook_error = None
        self._covariance_now = covariance
        self._hook_seconds = 0.0
        handles = [
            layer.module.register_forward_hook(self._hook_for(index, need_grad=False))
            for index, layer in enumerate(self._layers)
        ]
        devices = _cuda_devices(self.model)
        try:
            with torch.random.fork_rng(devices=devices, enabled=True), probing(self.model):
                for batch in self._device_batches():
                    run_probe(eager, batch)
        finally:
            for handle in handles:
                handle.remove()
        rows, self._rows = list(self._rows.values()), {}
        error, self._hook_error = self._hook_error, None
        if error is not None:
            raise RuntimeError(f"measuring a layer's output failed: {error!r}") from error
        return rows, len(self.batches), time.perf_counter() - began

    def _log(
        self, step: int, rows: list[_Row], covariance: bool, forwards: int, seconds: float
    ) -> None:
        began = time.perf_counter()
        if not rows:
            if forwards == 0:
                # No training forward pass since the previous optimizer step (a step on
                # gradients from elsewhere): nothing to measure, not a fault.
                self.steps_without_forward += 1
                return
            raise RuntimeError(
                f"layer statistics at step {step}: the model ran {forwards} forward "
                "pass(es) but none of the measured layers' forward hooks was called, so "
                "nothing was logged"
                + (
                    " (the model is compiled with torch.compile: hooks inside compiled "
                    "code are not called; measure on a probe with LayerStats(on=probe), "
                    "which runs the eager module)"
                    if module_names.is_compiled(self.model)
                    else " (does a torch.compile'd copy of the watched model run? Hooks "
                    "inside compiled code are not called: watch the compiled model, or "
                    "measure on a probe with LayerStats(on=probe))"
                )
            )
        table = ls.activation_table([row.sums for row in rows])
        non_finite = torch.stack([row.sums.non_finite for row in rows])
        tensors = [table.values, table.counts, table.channels, table.dead_channels, non_finite]
        covariances = [row.covariance for row in rows]
        measured = [i for i, c in enumerate(covariances) if c is not None] if covariance else []
        eigenvalues: list[torch.Tensor] = []
        if measured:
            eigenvalues = ls.covariance_eigenvalues_many([covariances[i] for i in measured])
            metrics = torch.stack(
                [ls.covariance_metrics(e, self.variance_threshold) for e in eigenvalues]
            )
            samples = torch.stack([covariances[i].count for i in measured])
            tensors += [metrics, samples, *eigenvalues]
        host, ready = _flat_to_host(tensors)
        names = [ls.row_name(self._layers[row.layer].row_prefix, row.key) for row in rows]
        types = [module_names.class_name(self._layers[row.layer].module) for row in rows]
        sizes = [len(e) for e in eigenvalues]
        walltime = time.time()
        elapsed = seconds + (time.perf_counter() - began)

        def finish(flat: np.ndarray) -> None:
            self._write(step, walltime, flat, names, types, measured, sizes, elapsed)

        self.names = names
        self.last_seconds = elapsed
        self.measurements += 1
        self._queue.put(_Pending(step, walltime, host, finish, ready))

    def _write(self, step, walltime, flat, names, types, measured, sizes, seconds) -> None:
        from deepscope.writer.layer_statistics import ActivationRows

        count = len(names)
        columns = len(ls.ACTIVATION_STATISTICS)
        offset = 0

        def take(n: int) -> np.ndarray:
            nonlocal offset
            part = flat[offset : offset + n]
            offset += n
            return part

        values = np.full((count, len(ls.STATISTICS)), np.nan)
        values[:, :columns] = take(count * columns).reshape(count, columns)
        counts, channels, dead, non_finite = (take(count) for _ in range(4))
        eigenvalues = None
        samples = np.zeros(count)
        if measured:
            metrics = take(len(measured) * 3).reshape(len(measured), 3)
            values[measured, columns:] = metrics
            samples[measured] = take(len(measured))
            eigenvalues = [None] * count
            for i, size in zip(measured, sizes):
                eigenvalues[i] = take(size)
        self._count_non_finite(names, non_finite, step)
        self.writer.add_layer_statistics(
            self.tag,
            activations=ActivationRows(
                names=names,
                values=values,
                statistics=ls.STATISTICS,
                types=types,
                counts=counts.astype(np.int64),
                channels=channels.astype(np.int64),
                dead_channels=dead.astype(np.int64),
                eigenvalues=eigenvalues,
                covariance_samples=samples.astype(np.int64),
            ),
            global_step=step,
            walltime=walltime,
            on=self.on,
            variance_threshold=self.variance_threshold,
            saturation_tolerance=self.saturation_tolerance,
            seconds=seconds,
        )

    def _count_non_finite(self, names: list[str], non_finite: np.ndarray, step: int) -> None:
        count = int(non_finite.sum())
        if count and not self._said_non_finite:
            self._said_non_finite = True
            first = names[int(np.argmax(non_finite > 0))]
            warn_from_hook(
                f"deepscope: {count} non-finite activation values at step {step} (first in "
                f"{first!r}); they are counted in non_finite_fraction and left out of the "
                f"other statistics, and in monitor.measurers[{self.name!r}].non_finite",
            )
        self.non_finite += count

    def _warn_skipped(self) -> None:
        listed = ", ".join(f"{row!r} ({self.skipped[row]})" for row in self._new_skipped[:20])
        more = len(self._new_skipped) - 20
        warn_from_hook(
            f"deepscope: layer statistics skip outputs that are not floating-point tensors: "
            f"{listed}{f', ... and {more} more' if more > 0 else ''}; listed once, kept in "
            f"monitor.measurers[{self.name!r}].skipped",
        )

    def flush(self) -> None:
        """Write every held measurement (waits for the device)."""
        self._queue.write(wait=True)

    def close(self) -> None:
        """Remove every hook (and the optimizer hook), write what is held."""
        self._disarm()
        self._rows = {}
        self.flush()


# --------------------------------------------------------------------------- finding layers


def _cuda_devices(model: torch.nn.Module) -> list[int]:
    device = model_device(model)
    if device is not None and device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def _has_children(module: torch.nn.Module) -> bool:
    return next(iter(module.children()), None) is not None


def _find_layers(
    model: torch.nn.Module, given: Sequence[str] | None, train: bool
) -> tuple[list[_Layer], list[str]]:
    """(the layers to hook, the user names of those inside a compiled region).

    `train`: hooks go where the training forward calls them: a module inside
    a torch.compile'd region cannot be hooked (its hooks are not called); a
    compiled module's wrapper can, and stands for it. With every layer
    (`given` None), each compiled region's output is measured in their place.
    """
    modules = dict(module_names.named_modules(model))
    if given is None:
        names = [name for name, module in modules.items() if not _has_children(module)]
    else:
        names = [module_names.strip_compile_prefix(name) for name in given]
        missing = [name for name in names if name not in modules]
        if missing:
            raise _unknown_layers_error(missing, list(modules))
    # Where each user name can be hooked from eager code: raw names outside any compiled
    # region (no `_orig_mod` segment), e.g. a compiled leaf's wrapper "fc1".
    hookable: dict[str, torch.nn.Module] = {}
    for raw, module in model.named_modules():
        if module_names.COMPILE_PREFIX in raw.split("."):
            continue
        hookable.setdefault(module_names.strip_compile_prefix(raw), module)
    layers, compiled = [], []
    for name in names:
        module = modules[name]
        target = hookable.get(name) if train else module
        if target is None:
            compiled.append(name)
            continue
        layers.append(_Layer(name, module, target, ls.saturation_bounds(module)))
    if compiled and given is None:
        # Every layer by default: a compiled region's own output stands for the layers
        # inside it (its wrapper's hook is called), e.g. "(model)" for a compiled model.
        measured = {layer.name for layer in layers}
        for name, target in hookable.items():
            wrapped = getattr(target, module_names.COMPILE_PREFIX, None)
            if isinstance(wrapped, torch.nn.Module) and name not in measured:
                module = modules[name]
                layers.append(_Layer(name, module, target, ls.saturation_bounds(module)))
    return layers, compiled


def _unknown_layers_error(missing: Sequence[str], known: Sequence[str]) -> ValueError:
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, [k for k in known if k], n=_NAMES_SUGGESTED)
        parts.append(
            f"{name!r} (did you mean {' or '.join(repr(c) for c in close)}?)"
            if close
            else repr(name)
        )
    listed = ", ".join(k for k in known[:20] if k)
    if len(known) > 20:
        listed += f", ... and {len(known) - 20} more"
    return ValueError(
        f"layer statistics: no module named {', '.join(parts)}; names are as in "
        f'model.named_modules() ("" for the model itself): {listed}'
    )


def _compiled_message(layers: Sequence[str], step: int, name: str) -> str:
    shown = ", ".join(repr(layer) for layer in layers[:10])
    if len(layers) > 10:
        shown += f", ... and {len(layers) - 10} more"
    return (
        f"layer statistics at step {step}: {len(layers)} layers are inside "
        f"torch.compile'd code ({shown}): forward hooks are not called there, so they are "
        "not measured on the training batch. Measure them on a probe batch with "
        "LayerStats(on=probe) (it runs the eager module); the layers outside compiled "
        "code, and each compiled region's own output, are logged. Said once; listed in "
        f"monitor.measurers[{name!r}].compiled_layers"
    )


__all__ = [
    "DEFAULT_COVARIANCE_EVERY",
    "DEFAULT_LAYER_STATISTICS_EVERY",
    "DEFAULT_PARAMETER_NORMS_EVERY",
    "LayerStats",
    "ParameterNorms",
    "default_covariance_every",
]
