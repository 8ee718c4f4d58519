"""Occlusion (Zeiler & Fergus 2014): how much the target score drops when a window is hidden.

A window slides over the sample's trailing dimensions (for [C, H, W] images by
default over H and W, all channels at once), the covered elements set to
`baseline_value`. Each element's map value is the mean drop f(x) − f(occluded)
over the windows that cover it (score units; positive: hiding it lowers the
score). Positions step by `stride`; a last window flush with the far edge is
added so every element is covered. Needs forward passes only, no gradient; the
positions × N occluded rows go through the model in batches of `batch_size` rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import (
    Target,
    class_scores,
    forward_rows,
    resolve_targets,
    rows_per_pass,
)

# Default window: about this many windows along each occluded dimension.
DEFAULT_WINDOWS_PER_DIM = 8


def window_shape(
    window: int | Sequence[int] | None, sample_shape: Sequence[int]
) -> tuple[int, ...]:
    """The window over the sample's trailing dimensions, checked against `sample_shape`.

    An int (or None, the default ⌈size / 8⌉ each) covers every dimension but the
    first (channels) of a sample with two or more; a tuple covers the last len(tuple).
    """
    sample_shape = tuple(int(s) for s in sample_shape)
    dims = sample_shape[1:] if len(sample_shape) >= 2 else sample_shape
    if window is None:
        return tuple(max(1, math.ceil(size / DEFAULT_WINDOWS_PER_DIM)) for size in dims)
    if isinstance(window, int):
        shape = (window,) * len(dims)
    else:
        shape = tuple(int(w) for w in window)
        dims = sample_shape[len(sample_shape) - len(shape) :] if shape else ()
        if not shape or len(shape) > len(sample_shape):
            raise ValueError(
                f"window {list(shape)} must cover 1 to {len(sample_shape)} trailing dimensions "
                f"of a sample of shape {list(sample_shape)}"
            )
    if any(not 1 <= w <= size for w, size in zip(shape, dims)):
        raise ValueError(
            f"window {list(shape)} does not fit the occluded dimensions {list(dims)} of a "
            f"sample of shape {list(sample_shape)}"
        )
    return shape


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start positions along one dimension, every `stride`, plus one flush with the far end."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def occlusion(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    baseline_value: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
) -> Attribution:
    """Occlusion maps of the target score, shaped like the inputs.

    Args:
      window: window size (see `window_shape`).
      stride: step between windows, int or one per window dimension; default: the window.
      baseline_value: what occluded elements are set to: a number, or a tensor of
        one sample's shape (e.g. a baseline token's embedding at every position).
      batch_size: rows per forward pass; by default as many as fit
        `DEFAULT_PASS_ELEMENTS` input elements for the device.
    """
    count, sample_shape = inputs.shape[0], tuple(inputs.shape[1:])
    shape = window_shape(window, sample_shape)
    steps = (
        shape
        if stride is None
        else (stride,) * len(shape)
        if isinstance(stride, int)
        else tuple(stride)
    )
    if len(steps) != len(shape) or any(int(s) < 1 for s in steps):
        raise ValueError(f"stride {steps} must be positive, one per window dimension {list(shape)}")
    lead = len(sample_shape) - len(shape)
    occluded_dims = sample_shape[lead:]
    positions = list(
        itertools.product(*(window_starts(n, w, s) for n, w, s in zip(occluded_dims, shape, steps)))
    )
    per_pass = rows_per_pass(batch_size, sample_shape, inputs.device)
    positions_per_chunk = max(1, per_pass // count)
    inputs = inputs.detach()
    fill = baseline_value
    if isinstance(fill, torch.Tensor):
        fill = fill.detach().to(device=inputs.device, dtype=inputs.dtype)
        if tuple(fill.shape) != sample_shape:
            raise ValueError(
                f"baseline_value of shape {list(fill.shape)} must be a number or one sample's "
                f"shape {list(sample_shape)}"
            )
    with torch.no_grad():
        scores = class_scores(forward_rows(model, inputs.clone()))
        targets = resolve_targets(target, scores)
        clean = scores.gather(1, targets[:, None])[:, 0]
        drop_sum = torch.zeros((count, inputs[0].numel()), device=inputs.device, dtype=inputs.dtype)
        covered = torch.zeros(inputs[0].numel(), device=inputs.device, dtype=inputs.dtype)
        for first in range(0, len(positions), positions_per_chunk):
            chunk = positions[first : first + positions_per_chunk]
            masks = torch.zeros(
                (len(chunk),) + sample_shape, dtype=torch.bool, device=inputs.device
            )
            for k, start in enumerate(chunk):
                region = (k,) + (slice(None),) * lead
                region += tuple(slice(s, s + w) for s, w in zip(start, shape))
                masks[region] = True
            occluded = torch.where(masks[:, None], fill, inputs[None])
            occluded = occluded.reshape((len(chunk) * count,) + sample_shape)
            # Row k * count + n hides window chunk[k] of sample n.
            samples = torch.arange(len(occluded), device=inputs.device) % count
            chunk_scores = torch.cat(
                [
                    class_scores(
                        forward_rows(model, occluded[i : i + per_pass], samples[i : i + per_pass])
                    )
                    for i in range(0, len(occluded), per_pass)
                ]
            )
            hidden = chunk_scores.gather(1, targets.repeat(len(chunk))[:, None]).reshape(
                len(chunk), count
            )
            flat_masks = masks.reshape(len(chunk), -1).to(inputs.dtype)
            drop_sum += (clean[None] - hidden).T @ flat_masks
            covered += flat_masks.sum(dim=0)
    return Attribution(
        "occlusion",
        (drop_sum / covered).reshape(inputs.shape),
        targets,
        scores.argmax(dim=1),
        options={
            "window": list(shape),
            "stride": list(steps),
            "baseline_value": (
                "tensor" if isinstance(baseline_value, torch.Tensor) else float(baseline_value)
            ),
        },
    )
