"""One batch's sums: the clean CPU path when it passes, the masked path otherwise."""

from __future__ import annotations

import torch

from deepscope.analysis.correlation.buffer_plan import plan_for
from deepscope.analysis.correlation.clean_path import clean_batch_sums
from deepscope.analysis.correlation.masked_path import masked_batch_sums
from deepscope.analysis.correlation.sums import Sums


def batch_sums(
    x: torch.Tensor,
    dim_x: int,
    y: torch.Tensor | None,
    dim_y: int,
    sync_free: bool,
    buffers: list[dict] | None = None,
    shifts: list | None = None,
    shift_dtypes: list | None = None,
) -> tuple[torch.Tensor | float, list[Sums], torch.Tensor | None, list]:
    """Sample count, sums of each stream about a shift, cross sums [Ca, Cb] of one batch.

    shifts: the accumulator's shifts (float64 [C] per stream), exactly
      representable in `shift_dtypes`; None for the first batch (its own mean).
    sync_free: never look at values on the host (CUDA): every batch takes the
      masked path, shifted by the mean of its finite sample positions. On the
      CPU the masked path runs only when the clean pass's check fails.
    buffers: per-stream dicts that keep the buffers between batches.
    Returns the count, the sums (whose `shift` is the one in `shifts` when the
    batch was taken about it; they may be views of kept buffers: add them
    before the next batch), the cross sums and the dtypes the shifts are exact in.
    """
    if buffers is None:
        buffers = [{}, {}]
    pairs = [(x, dim_x)] + ([] if y is None else [(y, dim_y)])
    plans = [plan_for(t, d, sync_free, h) for (t, d), h in zip(pairs, buffers)]
    values = [t for t, _ in pairs]
    if not sync_free:
        clean = clean_batch_sums(plans, values, shifts, shift_dtypes)
        if clean is not None:
            return clean
    return masked_batch_sums(plans, values)
