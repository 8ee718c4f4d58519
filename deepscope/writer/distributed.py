"""watch() under torch.distributed: which rank measures, which writes, and how sums combine.

One writer, on rank 0: the other ranks write nothing (their measurers that
must run everywhere get a `RankWriter` that discards what it is given,
without a file). What each measurer does depends on what the ranks hold:

- Replicas (DDP, or any model whose parameters are plain tensors): every rank
  holds the same weights and, after DDP's all-reduce, the same gradients, so
  update ratios, gradient/weight norms, spectra, filters and the probe
  measurements are taken on rank 0 alone, of the wrapped module (`model.module`),
  whose forward hooks DDP's forward calls and whose own forward needs no
  collective. What each rank sees of its own batch (activation statistics,
  channel correlations, confusion counts) is summed over the ranks, so the
  logged numbers are those of the global batch.
- Shards (FSDP2's `fully_shard`: DTensor parameters placed `Shard(0)` or
  `Replicate()`): every measurer runs on every rank, because the forward pass
  and gathering a weight are collectives. Norms are sums of squares of each
  rank's shard, all-reduced (never a gathered copy); a spectrum gathers its
  weight to every rank (`DTensor.full_tensor()`), one layer at a time. Other
  placements (tensor parallel's `Shard(1)`, `Partial`) are refused at
  `watch()` with a message: a norm of such a shard would be logged wrong.

Collectives are guarded. Every rank joins each of deepscope's collectives
with a flag saying whether its own part failed, so a rank whose measurement
raises never leaves the others waiting: the measurement is dropped on every
rank and the failure names the rank. A collective that does not complete
within `timeout` seconds (a rank that stopped measuring altogether) turns
deepscope's cross-rank measurements off for the rest of the run, recorded
as the measurer's error; training goes on.
"""

from __future__ import annotations

import datetime
import math
import zlib
from dataclasses import dataclass, field

import torch

DEFAULT_TIMEOUT = 120.0
"""Seconds one of deepscope's collectives may wait for the other ranks."""


class RankFailure(RuntimeError):
    """A measurement failed on another rank (or a collective timed out): nothing is logged."""


def _dist():
    import torch.distributed as dist

    return dist


def is_dtensor(tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return False
    return isinstance(tensor, DTensor)


@dataclass
class Ranks:
    """The processes a monitor measures across (world_size 1: a single process).

    group: the torch.distributed process group (None: the default one).
    sharded: the model's parameters are DTensor shards (FSDP2).
    timeout: seconds a guarded collective waits.
    broken: why the cross-rank measurements are off (None while they work).
    collective_bytes: bytes this rank handed to deepscope's collectives so far;
      bytes_by_what: the same per collective's purpose ("update ratios", ...).
    weight_squares: sharded weights' summed ‖W‖² of the current step, shared
      between the parameter norms and the update ratios.
    """

    rank: int = 0
    world_size: int = 1
    group: object | None = None
    sharded: bool = False
    timeout: float = DEFAULT_TIMEOUT
    broken: str | None = None
    collective_bytes: int = 0
    # The whole parameters' ‖W‖² the parameter norms reduced before this step's update:
    # (global step, ids of the parameters, float32 [P]); the update ratios of the same
    # step reuse them and reduce ‖ΔW‖² alone. Set on every rank alike (or on none).
    weight_squares: tuple[int, tuple[int, ...], torch.Tensor] | None = None
    bytes_by_what: dict[str, int] = field(default_factory=dict)
    _device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes (rank 0)."""
        return self.rank == 0

    # -- guarded collectives -----------------------------------------------------

    def _sent(self, what: str, size: int) -> None:
        self.collective_bytes += size
        self.bytes_by_what[what] = self.bytes_by_what.get(what, 0) + size

    def _check_usable(self, what: str) -> None:
        if self.broken is not None:
            raise RankFailure(f"{what}: deepscope's cross-rank measurements are off: {self.broken}")

    def _wait(self, work, what: str) -> None:
        try:
            work.wait(datetime.timedelta(seconds=self.timeout))
        except Exception as error:
            self.broken = (
                f"a collective for {what} did not complete within {self.timeout:g} s "
                f"({error!r}); another rank stopped measuring"
            )
            raise RankFailure(f"{what}: {self.broken}") from error

    def _mark(self, what: str, failed: bool) -> float:
        """This rank's slot in a collective's flags: what it is for, and whether it failed.

        2·(crc32(what) mod 2¹⁶) + failed, exact in float32: after the sum each
        rank's slot says which collective that rank joined, so ranks that
        called different ones (one stopped measuring a kind) are caught
        instead of mixing their payloads.
        """
        return 2.0 * (zlib.crc32(what.encode()) & 0xFFFF) + (1.0 if failed else 0.0)

    def _failed_ranks(self, flags: torch.Tensor, what: str) -> list[int]:
        """The other ranks whose part failed (this rank's own failure is its caller's to
        raise: it knows the error). Raises RankFailure, and turns the cross-rank
        measurements off, when a rank joined another collective than this one."""
        marks = [int(float(flags[r])) for r in range(self.world_size)]
        tag = int(self._mark(what, False))
        strays = [r for r, mark in enumerate(marks) if mark - mark % 2 != tag]
        if strays:
            self.broken = (
                f"rank(s) {strays} joined another collective than {what!r}: the ranks no "
                "longer measure the same kinds at the same steps"
            )
            raise RankFailure(f"{what}: {self.broken}")
        return [r for r, mark in enumerate(marks) if mark % 2 and r != self.rank]

    def all_reduce_sum(self, values: torch.Tensor | None, like: int, what: str) -> torch.Tensor:
        """The sum over ranks of each rank's float `values` (1-D, `like` elements).

        values None: this rank's part failed; it still joins, so nobody waits.
        Raises RankFailure naming the failed ranks (on every rank). Returns the
        sum as float64 on the host.
        """
        self._check_usable(what)
        dist = _dist()
        flags = torch.zeros(self.world_size, dtype=torch.float64)
        payload = None if values is None else values.detach().reshape(-1).to(torch.float64).cpu()
        failed = payload is None or payload.numel() != like
        if failed:
            payload = torch.zeros(like, dtype=torch.float64)
        flags[self.rank] = self._mark(what, failed)
        packed = torch.cat([flags, payload]).to(self._device)
        self._sent(what, packed.numel() * packed.element_size())
        self._wait(dist.all_reduce(packed, group=self.group, async_op=True), what)
        packed = packed.cpu()
        failed = self._failed_ranks(packed[: self.world_size], what)
        if failed:
            raise RankFailure(f"{what}: the measurement failed on rank(s) {failed}")
        return packed[self.world_size :]

    def all_reduce_float32(self, values: torch.Tensor | None, like: int, what: str) -> torch.Tensor:
        """As `all_reduce_sum`, in float32 (half the bytes), summed on the tensor's own device.

        For the per-tensor sums of squares of sharded norms: `values` stays on
        its device when the group's backend can reduce it there (NCCL: CUDA).
        """
        self._check_usable(what)
        dist = _dist()
        flags = torch.zeros(self.world_size, dtype=torch.float32, device=self._device)
        failed = values is None or values.numel() != like
        if failed:
            payload = torch.zeros(like, dtype=torch.float32, device=self._device)
        else:
            payload = values.detach().reshape(-1).to(device=self._device, dtype=torch.float32)
        flags[self.rank] = self._mark(what, failed)
        packed = torch.cat([flags, payload])
        self._sent(what, packed.numel() * packed.element_size())
        self._wait(dist.all_reduce(packed, group=self.group, async_op=True), what)
        failed = self._failed_ranks(packed[: self.world_size].cpu(), what)
        if failed:
            raise RankFailure(f"{what}: the measurement failed on rank(s) {failed}")
        return packed[self.world_size :]

    def all_gather(self, values: torch.Tensor | None, what: str) -> list[torch.Tensor]:
        """Every rank's 1-D float64 `values` (any length), in rank order, on every rank.

        values None: this rank's part failed (it still joins). Two collectives:
        the lengths and flags, then the padded payloads. Raises RankFailure.
        """
        self._check_usable(what)
        dist = _dist()
        header = torch.zeros(self.world_size, 2, dtype=torch.float64)
        payload = None if values is None else values.detach().reshape(-1).to(torch.float64).cpu()
        header[self.rank, 0] = self._mark(what, payload is None)
        header[self.rank, 1] = 0.0 if payload is None else float(payload.numel())
        header = header.to(self._device)
        self._sent(what, header.numel() * header.element_size())
        self._wait(dist.all_reduce(header, group=self.group, async_op=True), what)
        header = header.cpu()
        failed = self._failed_ranks(header[:, 0], what)
        longest = int(header[:, 1].max())
        padded = torch.zeros(longest, dtype=torch.float64)
        if payload is not None:
            padded[: payload.numel()] = payload
        padded = padded.to(self._device)
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._sent(what, padded.numel() * padded.element_size())
        self._wait(dist.all_gather(gathered, padded, group=self.group, async_op=True), what)
        if failed:
            raise RankFailure(f"{what}: the measurement failed on rank(s) {failed}")
        return [g.cpu()[: int(header[r, 1])] for r, g in enumerate(gathered)]

    def all_gather_objects(self, value: object | None, what: str) -> list[object]:
        """Every rank's picklable `value`, in rank order (torch.save; tensors loaded on the CPU).

        For state too varied for a flat vector (a correlation accumulator's
        sums). The bytes travel bit for bit inside a float64 vector. value
        None: this rank's part failed. Raises RankFailure.
        """
        import io

        import numpy as np

        vector = None
        if value is not None:
            buffer = io.BytesIO()
            torch.save(value, buffer)
            data = buffer.getvalue()
            padded = data + b"\0" * (-len(data) % 8)
            words = torch.from_numpy(np.frombuffer(padded, dtype=np.float64).copy())
            vector = torch.cat([torch.tensor([float(len(data))], dtype=torch.float64), words])
        parts = self.all_gather(vector, what)
        values = []
        for part in parts:
            size = int(part[0])
            data = part[1:].numpy().tobytes()[:size]
            values.append(torch.load(io.BytesIO(data), map_location="cpu", weights_only=False))
        return values

    def agree(self, ok: bool, what: str) -> bool:
        """Whether `ok` holds on every rank (one tiny all-reduce); True without ranks."""
        if not self.distributed:
            return ok
        self._check_usable(what)
        dist = _dist()
        flag = torch.tensor([0.0 if ok else 1.0], dtype=torch.float64, device=self._device)
        self._sent(what, flag.element_size())
        self._wait(dist.all_reduce(flag, group=self.group, async_op=True), what)
        return float(flag.cpu()) == 0.0

    def broadcast_int(self, value: int, what: str) -> int:
        """Rank 0's `value` on every rank."""
        if not self.distributed:
            return value
        self._check_usable(what)
        dist = _dist()
        box = torch.tensor([float(value)], dtype=torch.float64, device=self._device)
        self._sent(what, box.element_size())
        src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
        self._wait(dist.broadcast(box, src=src, group=self.group, async_op=True), what)
        return int(box.cpu())


SINGLE_PROCESS = Ranks()
"""The ranks of a monitor outside torch.distributed (every measurer runs, and writes)."""


def find_ranks(
    model: torch.nn.Module, process_group=None, timeout: float = DEFAULT_TIMEOUT
) -> Ranks:
    """The `Ranks` a monitor of `model` measures across.

    process_group None: the ranks of the default group when torch.distributed
    is initialized, through a gloo group of deepscope's own (else a single
    process); a given group is used as it is. Raises ValueError for DTensor
    placements whose shard norms could not be combined by a sum (anything
    but Shard(0) and Replicate()).
    """
    _check_placements(model)
    try:
        dist = _dist()
        initialized = dist.is_available() and dist.is_initialized()
    except Exception:
        initialized = False
    if not initialized:
        if process_group is not None:
            raise ValueError(
                "watch() was given a process_group but torch.distributed is not initialized: "
                "call torch.distributed.init_process_group(...) first"
            )
        return Ranks(sharded=_has_dtensor(model), timeout=timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    world = dist.get_world_size(process_group)
    rank = dist.get_rank(process_group)
    group, device = process_group, torch.device("cpu")
    if process_group is None and world > 1:
        # deepscope's own gloo group over the same ranks: its collectives (host
        # tensors, a few kB) never interleave with training's, and one that times
        # out leaves training's group untouched. A collective call of every rank,
        # as watch() is.
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout))
    elif process_group is not None:
        backend = str(dist.get_backend(process_group)).lower()
        if "nccl" in backend and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
    return Ranks(
        rank=rank,
        world_size=world,
        group=group,
        sharded=_has_dtensor(model),
        timeout=float(timeout),
        _device=device,
    )


def _has_dtensor(model: torch.nn.Module) -> bool:
    return any(is_dtensor(p) for p in model.parameters())


def _check_placements(model: torch.nn.Module) -> None:
    """Refuse DTensor parameters placed other than Shard(0) / Replicate()."""
    try:
        from torch.distributed.tensor import Replicate, Shard
    except ImportError:
        return
    for name, param in model.named_parameters():
        if not is_dtensor(param):
            continue
        for placement in param.placements:
            if isinstance(placement, Replicate) or (
                isinstance(placement, Shard) and placement.dim == 0
            ):
                continue
            raise ValueError(
                f"parameter {name!r} is a DTensor placed {tuple(param.placements)}: deepscope "
                "combines shard norms by sums over Shard(0) (FSDP2's fully_shard) and "
                "Replicate() placements only, and would log a tensor-parallel or partial "
                "shard's norm wrong. Watch a model sharded with fully_shard alone, or measure "
                "these parameters yourself (deepscope.Measurer)"
            )


def replication(tensor) -> int:
    """How many ranks hold each element of a DTensor (its Replicate() mesh dims' product)."""
    if not is_dtensor(tensor):
        return 1
    from torch.distributed.tensor import Replicate

    return math.prod(
        tensor.device_mesh.size(dim)
        for dim, placement in enumerate(tensor.placements)
        if isinstance(placement, Replicate)
    )


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself when it is not one)."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of a DTensor, gathered (a collective: every rank calls it); else `tensor`."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor


def unwrap_replicas(model: torch.nn.Module) -> torch.nn.Module:
    """The module a DistributedDataParallel (or DataParallel) wraps; else `model`.

    Also through `torch.compile` of such a wrapper (`torch.compile(ddp_model)`):
    the compiled module's `_orig_mod` is the wrapper; what it wraps is returned
    (deepscope measures a compiled model through its eager module anyway).
    """
    wrappers = [torch.nn.DataParallel]
    try:
        from torch.nn.parallel import DistributedDataParallel

        wrappers.append(DistributedDataParallel)
    except ImportError:
        pass
    inner = getattr(model, "_orig_mod", None)
    if isinstance(inner, tuple(wrappers)):
        model = inner
    while isinstance(model, tuple(wrappers)):
        model = model.module
    return model
