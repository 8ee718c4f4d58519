"""`Attribution`: what one saliency method computed for a batch of inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Attribution:
    """Saliency maps of a batch and what they attribute.

    Attributes:
      method: the method's name, e.g. "integrated_gradients".
      maps: the attributions, shaped like the inputs [N, ...], in the units of
        the target score per unit of input (×input for *_x_input and
        integrated gradients, score units for occlusion).
      targets: int64 [N], the class each map attributes.
      predictions: int64 [N], the model's predicted class (argmax) at the inputs.
      baseline: the baseline inputs [1 or N, ...] (1: shared by all samples), for
        baseline_delta* and integrated_gradients.
      baseline_maps: [N, ...] the gradient of each sample's target score at the
        baseline (baseline_delta*); the gradient at the input is
        `maps + baseline_maps` for baseline_delta.
      completeness_error: [N] integrated gradients' Σ maps − (f(x) − f(baseline))
        for the target score f: zero for an exact path integral.
      non_finite: NaN or infinite elements in maps and baseline_maps (kept as computed).
      options: the method's settings as used (e.g. n_steps), for the record.
      input_kind: "tokens" for attributions of token ids over their embeddings
        (maps [N, L], one value per token), "" for dense inputs.
      token_reduction: for tokens, how a token's embedding attribution became
        one value (e.g. "sum over the embedding dim").
      embedding_maps: for tokens, the maps in embedding space [N, L, D] before
        that reduction.
    """

    method: str
    maps: torch.Tensor
    targets: torch.Tensor
    predictions: torch.Tensor
    baseline: torch.Tensor | None = None
    baseline_maps: torch.Tensor | None = None
    completeness_error: torch.Tensor | None = None
    non_finite: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    input_kind: str = ""
    token_reduction: str = ""
    embedding_maps: torch.Tensor | None = None
