"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the input.

Noise is Gaussian with σ = noise_level × (max − min) of each sample (or × its
standard deviation, `noise_relative_to="std"`, as for token embeddings), drawn from
a private generator (seeded: the same noise at every call, so maps of a probe
compare across training steps, and the training's random stream is untouched).
The n_samples × N noisy rows go through the model in batches of `batch_size` rows.
"""

from __future__ import annotations

import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import (
    Target,
    class_scores,
    forward_rows,
    resolve_targets,
    rows_per_pass,
    target_gradient,
)

# What σ = noise_level × (spread) is relative to.
NOISE_SCALES = ("range", "std")


def smoothgrad(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    n_samples: int = 50,
    noise_level: float = 0.15,
    batch_size: int | None = None,
    seed: int | None = 0,
    noise_relative_to: str = "range",
) -> Attribution:
    """Mean gradient of the target score over `n_samples` noisy copies of each input.

    Args:
      noise_level: σ relative to each sample's value range (Smilkov et al. find
        0.1-0.2 best).
      batch_size: rows per forward pass; by default as many as fit
        `DEFAULT_PASS_ELEMENTS` input elements for the device.
      seed: the noise generator's seed; None draws a fresh one.
      noise_relative_to: "range" (max − min of each sample) or "std" (each sample's
        standard deviation: the default for token embeddings, whose range is set by
        a few outliers).
    """
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if not noise_level >= 0:
        raise ValueError(
            f"noise_level must be a non-negative fraction of the range, got {noise_level}"
        )
    count, sample_shape = inputs.shape[0], tuple(inputs.shape[1:])
    with torch.no_grad():
        scores = class_scores(forward_rows(model, inputs.clone()))
    targets = resolve_targets(target, scores)
    if noise_relative_to not in NOISE_SCALES:
        raise ValueError(
            f"noise_relative_to must be one of {', '.join(NOISE_SCALES)}, got {noise_relative_to!r}"
        )
    flat = inputs.detach().reshape(count, -1)
    spread = (
        flat.amax(dim=1) - flat.amin(dim=1)
        if noise_relative_to == "range"
        else flat.std(dim=1, correction=0)
    )
    sigma = (noise_level * spread).reshape((count,) + (1,) * len(sample_shape))
    generator = torch.Generator(device=inputs.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    total = torch.zeros_like(inputs)
    rows, per_pass = count * int(n_samples), rows_per_pass(batch_size, sample_shape, inputs.device)
    for start in range(0, rows, per_pass):
        sample = torch.arange(start, min(start + per_pass, rows), device=inputs.device) % count
        noise = torch.randn(
            (len(sample),) + sample_shape,
            generator=generator,
            device=inputs.device,
            dtype=inputs.dtype,
        )
        grad, _, _ = target_gradient(
            model, inputs[sample] + sigma[sample] * noise, targets[sample], samples=sample
        )
        total.index_add_(0, sample, grad)
    return Attribution(
        "smoothgrad",
        total / int(n_samples),
        targets,
        scores.argmax(dim=1),
        options={
            "n_samples": int(n_samples),
            "noise_level": float(noise_level),
            "seed": seed,
            "noise_relative_to": noise_relative_to,
        },
    )
