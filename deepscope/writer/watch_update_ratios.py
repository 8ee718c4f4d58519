"""watch()'s update-ratio measurer: ‖W_after − W_before‖₂ / ‖W_before‖₂ of every trainable weight.

On every `every`-th optimizer step it copies every watched weight just before
`optimizer.step()` and measures the update just after it: the true update,
whatever the optimizer (momentum, Adam, weight decay, LBFGS's closure).
Whether a parameter got an update is decided from what changed, after the
step: "no update" means the weight is bit for bit unchanged. A weight that was
exactly zero before the step (a fresh bias) has no defined ratio; it is logged
as `zero_weight`, not as a fault. The hooks never synchronise with the device:
results are copied to the host asynchronously (CUDA events) and written once
they have arrived, `measurements_per_event` at a time as one event.

Lost data on `kill -9`: a block is written (and the event file flushed) once
its oldest measurement has waited `max_event_delay` seconds (default 2 s),
checked at every optimizer step; so a killed process loses at most the
measurements of its last `max_event_delay` seconds (or of its last optimizer
step, when steps are slower). Held measurements are also written whenever the
writer flushes or closes, at interpreter exit, and, with
`watch(..., flush_on_sigterm=True)`, on SIGTERM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from deepscope import module_names
from deepscope.analysis import update_ratios as ratios_math
from deepscope.writer import distributed
from deepscope.writer.hook_warnings import warn_from_hook
from deepscope.writer.measurer import Measurer, check_every

DEFAULT_EVERY = 50
# Measurements written together as one event, unless the oldest has waited
# DEFAULT_MAX_EVENT_DELAY seconds: fewer events keep TensorBoard's reads fast,
# and the delay bounds what a kill -9 loses (in seconds of measurements).
DEFAULT_MEASUREMENTS_PER_EVENT = 10
DEFAULT_MAX_EVENT_DELAY = 2.0
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


class UpdateRatios(Measurer):
    """Logs ‖ΔW‖₂/‖W‖₂ of every trainable parameter the optimizer holds, under `tag`.

    Args:
      every: cadence in optimizer steps.
      tag: the series' tag.
      measurements_per_event: measurements written together as one event.
      max_event_delay: seconds a measurement may be held before its block is
        written anyway: the most a `kill -9` loses (see the module doc).
      name: the measurer's name (default "update_ratios").

    Attributes (after `start`): names, the logged parameter names in order;
    measurements, steps measured; zero_weight, ratios logged as undefined
    because the weight was exactly zero before the step; non_finite, non-finite
    ratios logged (kept as measured; zero weights are not among them).
    """

    name = "update_ratios"

    def __init__(
        self,
        every: int = DEFAULT_EVERY,
        tag: str = "update_ratios",
        measurements_per_event: int = DEFAULT_MEASUREMENTS_PER_EVENT,
        max_event_delay: float = DEFAULT_MAX_EVENT_DELAY,
        *,
        name: str | None = None,
    ):
        super().__init__(every, name=name)
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty string, got {tag!r}")
        self.measurements_per_event = check_every(measurements_per_event, "measurements_per_event")
        if (
            isinstance(max_event_delay, bool)
            or not isinstance(max_event_delay, int | float)
            or not max_event_delay >= 0
        ):
            raise ValueError(
                f"max_event_delay must be a number of seconds >= 0, got {max_event_delay!r}"
            )
        self.tag = tag
        self.max_event_delay = float(max_event_delay)
        self.measurements = 0
        self.zero_weight = 0
        self.non_finite = 0
        self.writer = None
        self._names: list[str] = []
        self._params: list[torch.Tensor] = []
        self._pending: list[_Measurement] = []  # still on their way from the device
        self._block: list[_Measurement] = []  # arrived, to be written as one event
        self._before: list[torch.Tensor] | None = None
        self._before_norms: torch.Tensor | None = None

    @property
    def names(self) -> list[str]:
        """Names of the monitored parameters, in the order they are logged."""
        return list(self._names)

    @property
    def held(self) -> int:
        """Measurements made but not yet written to the writer."""
        return len(self._pending) + len(self._block)

    def on_every_rank(self, ranks) -> bool:
        """Sharded parameters (FSDP2): every rank measures its shard; replicas: rank 0."""
        return ranks.sharded

    def start(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, writer) -> None:
        if not hasattr(writer, "_add_update_ratio_block"):
            raise TypeError(
                "writer must be a deepscope.SummaryWriter "
                "(deepscope.SummaryWriter(log_dir) is a drop-in torch SummaryWriter)"
            )
        self._names, self._params = _named_optimizer_params(model, optimizer)
        self.writer = writer

    def due(self, step: int) -> bool:
        """Writes the measurements that have arrived (a full or old block), then the cadence."""
        self._write_arrived()
        return step % self.every == 0

    def before_step(self, step: int, model, optimizer, writer) -> None:
        # Every watched parameter, with a gradient or not: whether it got an
        # update is known only after the step (LBFGS computes its gradients
        # inside step(), in the closure).
        self._before = None
        self._before = ratios_math.snapshot(self._watched())
        self._before_norms = ratios_math.frobenius_norms(self._before)

    def _watched(self) -> list[torch.Tensor]:
        """The watched parameters, or this rank's shards of them (FSDP2)."""
        if self.ranks.sharded:
            return [distributed.local_part(p) for p in self._params]
        return self._params

    def measure(self, step: int, model=None, optimizer=None, writer=None) -> None:
        if self.ranks.sharded and self.ranks.distributed:
            update = self._measure_shards(step)
            if update is None:
                return
        else:
            if self._before is None:
                return
            try:
                update = ratios_math.measure_update(self._before, self._params, self._before_norms)
            finally:
                self._before = None
                self._before_norms = None
        marks = torch.where(update.unchanged, _NO_UPDATE, _ORDINARY)
        marks = torch.where(update.zero_weight, _ZERO_WEIGHT, marks)
        full = torch.stack([update.ratios, marks.to(update.ratios.dtype)])
        measurement = _Measurement(step, time.time(), full)
        if full.is_cuda:
            host = torch.empty(full.shape, dtype=full.dtype, pin_memory=True)
            host.copy_(full, non_blocking=True)
            measurement.values = host
            measurement.ready = torch.cuda.Event()
            measurement.ready.record()
        self._pending.append(measurement)
        self.measurements += 1
        self._write_arrived()

    def _measure_shards(self, step: int) -> ratios_math.UpdateMeasurement | None:
        """The ratios of sharded parameters: per-shard sums of squares, all-reduced.

        Joins the all-reduce even when this rank's snapshot failed (no rank
        waits). Moves one float32 per parameter tensor, ‖ΔW‖², when the
        parameter norms reduced this step's ‖W‖² already (watch()'s defaults
        measure both at the same steps), else two (and one flag per rank).
        Returns None on the ranks that do not write.
        """
        count = len(self._params)
        cached = self.ranks.weight_squares
        known = (
            cached is not None and cached[0] == step and cached[1] == tuple(map(id, self._params))
        )
        sums, failure = None, None
        try:
            if self._before is None:
                raise RuntimeError("no snapshot was taken before the optimizer step")
            sums = ratios_math.shard_sums(self._before, self._watched(), self._before_norms)
            copies = torch.tensor(
                [distributed.replication(p) for p in self._params], dtype=sums.dtype
            ).to(sums.device)
            sums = sums / copies  # each element once, whatever holds it
            sums = (sums[0] if known else sums).reshape(-1)
        except Exception as error:
            failure = error
        finally:
            self._before = None
            self._before_norms = None
        size = count if known else 2 * count
        total = self.ranks.all_reduce_float32(sums, size, "update ratios")
        if failure is not None:
            raise failure
        if not self.ranks.writes:
            return None
        before = cached[2].to(total.device) if known else total[count:]
        return ratios_math.combine_shard_sums(total[:count], before)

    def _write_arrived(self, wait: bool = False) -> None:
        """Move arrived measurements into the block; write it when full, old, or asked to.

        A block written because it is full or old also flushes the event files
        (not the writer's flush hooks): what is written is on disk, which is what
        bounds a kill -9's loss. `wait` (flush, close) leaves that to the writer.
        """
        while self._pending and (wait or self._pending[0].arrived()):
            measurement = self._pending.pop(0)
            if measurement.ready is not None:
                measurement.ready.synchronize()
            self._block.append(measurement)
        if not self._block or not (
            wait
            or len(self._block) >= self.measurements_per_event
            or time.time() - self._block[0].walltime >= self.max_event_delay
        ):
            return
        block, self._block = self._block, []
        packed = np.stack([m.values.numpy() for m in block])
        values, marks = packed[:, 0], packed[:, 1]
        no_update, zero_weight = marks == _NO_UPDATE, marks == _ZERO_WEIGHT
        self._count_non_finite(values, no_update | zero_weight, block)
        self.zero_weight += int(np.count_nonzero(zero_weight))
        self.writer._add_update_ratio_block(
            self.tag,
            self._names,
            values,
            steps=[m.step for m in block],
            wall_times=[m.walltime for m in block],
            no_update=no_update,
            zero_weight=zero_weight,
        )
        if not wait:
            _flush_event_files(self.writer)

    def _count_non_finite(self, values: np.ndarray, not_measured: np.ndarray, block) -> None:
        bad = ~np.isfinite(values) & ~not_measured
        count = int(np.count_nonzero(bad))
        if count and not self.non_finite:
            k, j = np.argwhere(bad)[0]
            warn_from_hook(
                f"deepscope: non-finite update ratio for {self._names[j]} at step "
                f"{block[k].step} (an infinite or NaN weight or update?); it is logged as "
                "measured and counted in monitor.stats.non_finite",
            )
        self.non_finite += count

    def flush(self) -> None:
        """Write every held measurement (waits for the device)."""
        if self.writer is not None:
            self._write_arrived(wait=True)

    def close(self) -> None:
        """Write what is held; the snapshot of a step in progress is dropped."""
        self.flush()
        self._before = None
        self._before_norms = None


def _flush_event_files(writer) -> None:
    """Flush the writer's event files to disk, without running its flush hooks."""
    for file_writer in list((getattr(writer, "all_writers", None) or {}).values()):
        file_writer.flush()


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
