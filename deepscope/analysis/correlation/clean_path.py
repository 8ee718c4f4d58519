"""The CPU's path for a batch of finite values: sums about the held shifts, one host check.

The batch's sums are taken about the accumulator's shifts (the first batch:
about its own mean). One host check catches NaN/Inf, and a batch whose mean
has drifted from the shift by more than its spread (where the float32 product
would lose precision): such a batch goes to the masked path instead, about
its own mean.
"""

from __future__ import annotations

import torch

from deepscope.analysis.correlation.buffer_plan import Plan
from deepscope.analysis.correlation.gram import matmul


def clean_batch_sums(plans: list[Plan], values: list, shifts: list | None, shift_dtypes):
    """The CPU's path for a batch of finite values, about the held shifts; None if it fails."""
    count = float(plans[0].samples)
    works = [p.work for p in plans]
    if shifts is None:  # the first batch: about its own mean
        means = [p.sums(v) / count for p, v in zip(plans, values)]
        if not all(bool(torch.isfinite(m).all()) for m in means):
            return None
        shifts = [m.to(w).to(torch.float64) for m, w in zip(means, works)]
        shift_dtypes = works
    elif any(torch.promote_types(d, w) != w for d, w in zip(shift_dtypes, works)):
        # the shifts are not exact in this batch's dtype: take the batch about their rounding
        shifts = [s.to(w).to(torch.float64) for s, w in zip(shifts, works)]
        shift_dtypes = works
    sums = []
    for plan, v, shift in zip(plans, values, shifts):
        result = plan.clean(v, shift)
        if result is None:  # NaN/Inf, or drifted: start again
            return None
        sums.append(result)
    cross = matmul(plans[0].right.t(), plans[1].right) if len(plans) > 1 else None
    return count, sums, cross, shift_dtypes
