"""How batches of one shape are read, and the buffers x − s goes to (kept between batches).

Cost per batch on the CPU: one pass writes x − s (s: the first batch's mean,
rounded to the activations' dtype) into a kept buffer laid out for the Gram
product, chunk by chunk; while a chunk is in cache it is summed (Σ(x−s)) and
compared with 0 (positives). One Gram product (x−s)ᵀ(x−s) in the
activations' dtype (float16 and bfloat16 widened to float32) follows.
"""

from __future__ import annotations

import torch

from deepscope.analysis.correlation.gram import HALF
from deepscope.analysis.correlation.sums import Sums

# Elements of x per chunk of the CPU pass (1 MiB of float32): each chunk is
# read from memory once, shifted into the buffer and compared with 0 from cache.
_CHUNK_ELEMENTS = 1 << 18
# Drift check: a batch passes when its mean offset δ from the shift is within
# its spread (2δ² ≤ E[(x−s)²], so the float32 product loses at most a factor 2
# of precision against a perfectly centred one), up to this fraction of |s|
# (offsets below it are rounding, as in a constant channel).
_SHIFT_RTOL = 1e-6


class Plan:
    """How batches of one shape are read for one stream, and the buffers they go to (kept).

    x − s goes in a buffer laid out the way x is read without a permuted copy:
    (S, C) rows when channels are innermost in memory (a Linear layer's
    output, channels_last), else (C, S), written by the same pass that
    subtracts the shift (N, C, H, W). The pass goes chunk by chunk (on the
    CPU): while a chunk is in cache it is summed (Σ(x−s), pairwise, in the
    work dtype) and compared with 0 (positives). `work` is the dtype of the
    buffer and the Gram product: the activations' dtype, float32 for half
    precision on the CPU (where half products are slow). Views of the buffers
    are made once, here: per-operation overhead dominates small batches.
    """

    def __init__(self, values: torch.Tensor, dim: int, sync_free: bool):
        self.dim = dim % values.ndim
        c = self.channels = values.shape[self.dim]
        s = self.samples = values.numel() // c
        self.work = torch.float32 if not sync_free and values.dtype in HALF else values.dtype
        device = values.device
        self.rows = values.movedim(self.dim, -1).is_contiguous()
        self.split = None
        if not self.rows and values.is_contiguous():
            after = values.stride(self.dim)
            self.split = (s // after, c, after)
        if self.rows:
            buffer = torch.empty(s, c, dtype=self.work, device=device)
            self.left, self.right = buffer.t(), buffer
            target, length, per = buffer, s, c
        else:
            buffer = torch.empty(c, s, dtype=self.work, device=device)
            self.left, self.right = buffer, buffer.t()
            if self.split is not None:
                target = buffer.view(c, self.split[0], -1)
                length, per = self.split[0], c * self.split[2]
            else:  # any other memory layout: one strided pass
                sample_shape = [n for d, n in enumerate(values.shape) if d != self.dim]
                target, length, per = buffer.view(c, *sample_shape), 1, s * c
        step = length if sync_free else max(1, _CHUNK_ELEMENTS // per)
        self.spans = [(a, min(a + step, length)) for a in range(0, length, step)]
        # the positive test's chunk buffer (the masked path, all CUDA goes, has none)
        indicator = torch.empty(
            0 if sync_free else min(step, length) * per, dtype=self.work, device=device
        )
        self.targets, self.indicators = [], []
        for a, b in self.spans:
            if self.rows:
                self.targets.append(target[a:b])
                shape = (b - a, c)
            elif self.split is not None:
                self.targets.append(target[:, a:b])
                shape = (c, b - a, self.split[2])
            else:
                self.targets.append(target)
                shape = target.shape
            flags = None if sync_free else indicator[: (b - a) * per].view(shape)
            self.indicators.append(flags)
        # [Σ(x-s)(x-s)ᵀ; Σ(x-s)ᵀ; positives] as rows of one tensor, added to the held
        # sums in one operation; per-chunk sums and counts; the check
        self.stacked = torch.empty(c + 2, c, dtype=self.work, device=device)
        self.raw, self.offset, self.positives = (
            self.stacked[:c],
            self.stacked[c],
            self.stacked[c + 1],
        )
        self.diagonal = self.raw.diagonal()
        single = len(self.spans) == 1
        self.parts = torch.empty(2, len(self.spans), c, dtype=self.work, device=device)
        # per chunk: (target, indicator) as 2-D, the dim to sum, where the sums go
        self.reductions = [
            (t, i, 0) if self.rows else (t.reshape(c, -1), i if i is None else i.view(c, -1), 1)
            for t, i in zip(self.targets, self.indicators)
        ]
        self.outs = [
            (self.offset, self.positives) if single else (self.parts[0, j], self.parts[1, j])
            for j in range(len(self.spans))
        ]
        self.margin = torch.empty(c, dtype=self.work, device=device)
        self.passed = torch.empty(c, dtype=torch.bool, device=device)
        self._shift = (None, None, None)

    def chunks(self, values: torch.Tensor) -> list[torch.Tensor]:
        """The chunks of x matching `targets`: (rows, C) or (C, before, after) views."""
        single = len(self.spans) == 1
        if self.rows:
            if values.ndim == 2 and self.dim == 1:
                source = values
            else:
                source = values.movedim(self.dim, -1).reshape(-1, self.channels)
            return [source] if single else [source[a:b] for a, b in self.spans]
        if self.split is not None:
            source = values.view(self.split)
            if single:
                return [source.transpose(0, 1)]
            return [source[a:b].transpose(0, 1) for a, b in self.spans]
        return [values.movedim(self.dim, 0)]

    def shift(self, shift: torch.Tensor, count: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The shift in the work dtype, shaped for `targets`, and −n·rtol²·s² for the check."""
        if self._shift[0] is not shift:
            work = shift.to(self.work)
            shaped = work if self.rows else work.view(-1, *([1] * (self.targets[0].ndim - 1)))
            floor = work.square().mul_(-count * _SHIFT_RTOL**2)
            self._shift = (shift, shaped, floor)
        return self._shift[1], self._shift[2]

    def clean(self, values: torch.Tensor, shift: torch.Tensor) -> Sums | None:
        """The CPU's pass over a batch of finite values: its sums about `shift`, or None.

        None (one host check) when a shifted sum is not finite (NaN/Inf
        somewhere) or the batch's mean has drifted from the shift by more than
        its spread: 2δ² > E[(x−s)²] beyond rounding (δ: mean − s).
        """
        count = float(self.samples)
        shaped, floor = self.shift(shift, count)
        chunks = self.chunks(values)
        for part, target, indicator, (shifted, flags, dim), (offset, positives) in zip(
            chunks, self.targets, self.indicators, self.reductions, self.outs
        ):
            torch.sub(part, shaped, out=target)
            torch.sum(shifted, dim, out=offset)
            torch.gt(part, 0, out=indicator)
            torch.sum(flags, dim, out=positives)
        stacked, positives = self.stacked, self.positives
        if len(chunks) > 1:
            torch.sum(self.parts[0], 0, out=self.offset)
            if count < 2**24:  # float32 sums of counts are exact
                torch.sum(self.parts[1], 0, out=self.positives)
            else:
                positives, stacked = self.parts[1].sum(0, dtype=torch.float64), None
        torch.mm(self.left, self.right, out=self.raw)
        torch.addcmul(self.diagonal, self.offset, self.offset, value=-2.0 / count, out=self.margin)
        if not bool(torch.ge(self.margin, floor, out=self.passed).all()):
            return None
        return Sums(shift, self.offset, self.raw, positives, None, stacked)

    def shifted(self, values: torch.Tensor, shift: torch.Tensor) -> None:
        """Write x − shift into the buffer (no counting)."""
        shaped, _ = self.shift(shift, float(self.samples))
        for part, target in zip(self.chunks(values), self.targets):
            torch.sub(part, shaped, out=target)

    def sums(self, values: torch.Tensor) -> torch.Tensor:
        """Σ x per channel of `values` (this plan's layout), in float32 or wider."""
        wide = torch.float32 if values.dtype in HALF else None
        if self.split is not None and values.is_contiguous():
            return values.view(self.split).sum(2, dtype=wide).sum(0)
        dims = [d for d in range(values.ndim) if d != self.dim]
        return values.sum(dim=dims, dtype=wide)


def plan_for(values: torch.Tensor, dim: int, sync_free: bool, holder: dict) -> Plan:
    """The kept plan for batches of this shape and layout, made anew when they change."""
    key = (values.shape, values.stride(), values.dtype, values.device, dim, sync_free)
    plan = holder.get(key)
    if plan is None:
        holder.clear()  # one plan a stream: a new batch shape replaces the buffers
        plan = holder[key] = Plan(values, dim, sync_free)
    return plan
