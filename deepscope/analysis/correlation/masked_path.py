"""The masked path: every batch on CUDA (no host synchronisation), and a CPU batch with NaN/Inf.

A sample position (one input at one spatial position) holding any NaN or ±Inf
in any channel, of either stream, is left out of every statistic; the
non-finite values are counted per stream.
"""

from __future__ import annotations

import torch

from deepscope.analysis.correlation.buffer_plan import Plan
from deepscope.analysis.correlation.gram import HALF, matmul
from deepscope.analysis.correlation.sums import Sums


def masked_batch_sums(plans: list[Plan], values: list):
    """Every batch on CUDA, and a batch with NaN/Inf (or drift) on the CPU.

    Sample positions with a NaN/Inf in any channel of either stream are left
    out; each stream is shifted by the mean of the kept positions.
    """
    finite = [torch.isfinite(v) for v in values]
    non_finite = [(f.numel() - f.sum()).to(torch.int64) for f in finite]
    ok = None
    for f, p in zip(finite, plans):
        row_ok = f.all(dim=p.dim)
        ok = row_ok if ok is None else ok & row_ok
    ok_rows = ok.reshape(-1)
    count = ok_rows.sum(dtype=torch.float64)
    divisor = count.clamp(min=1.0)
    sums = []
    for plan, v, bad in zip(plans, values, non_finite):
        kept = v.masked_fill(~ok.unsqueeze(plan.dim), 0)
        shift = (plan.sums(kept).to(torch.float64) / divisor).to(plan.work)
        shift = shift.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).to(torch.float64)
        plan.shifted(v, shift)
        plan.right.masked_fill_(~ok_rows.unsqueeze(1), 0)
        dims = [d for d in range(kept.ndim) if d != plan.dim]
        positives = kept.gt(0).sum(dim=dims, dtype=torch.float64)  # dropped positions hold 0
        raw = matmul(plan.left, plan.right)
        offset = plan.right.sum(0, dtype=torch.float32 if plan.work in HALF else None)
        sums.append(Sums(shift, offset, raw, positives, bad))
    cross = matmul(plans[0].right.t(), plans[1].right) if len(plans) > 1 else None
    return count, sums, cross, [p.work for p in plans]
