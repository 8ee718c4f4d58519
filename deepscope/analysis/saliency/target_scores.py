"""The target class's score and its gradient with respect to the inputs.

Shared by every method: input checks, reading a model's output as class
scores [N, classes], choosing the target class per sample, and one forward +
backward pass that differentiates the target scores with respect to the input
only (`torch.autograd.grad`; no parameter's `.grad` is touched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

# One class index for every sample, one per sample, or None (the predicted class).
Target = int | Sequence[int] | torch.Tensor | None

# Input elements per forward pass when a method batches many perturbed copies
# of the inputs (integrated gradients, SmoothGrad, occlusion): the memory bound.
# On a CPU, passes that stay near the caches run fastest (an MNIST CNN: ~128
# rows of 1x28x28 per pass beat 1,600 rows in one by 2x); a GPU wants big ones
# (2**22 float32 elements are 16 MiB of inputs; activations scale with them).
DEFAULT_PASS_ELEMENTS = {"cpu": 2**17, "other": 2**22}


class NoGradientPathError(ValueError):
    """The model's output does not depend differentiably on its input."""


def check_inputs(inputs: object) -> None:
    """Raise a clear error unless `inputs` is a non-empty floating-point batch [N, ...]."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor batch of shape [N, ...], got {type(inputs).__name__}"
        )
    if not inputs.is_floating_point():
        raise TypeError(
            f"saliency needs floating-point inputs, got {inputs.dtype}: convert them (e.g. "
            "inputs.float()); for token ids pass embeddings=model.get_input_embeddings() "
            "to attribute over the input embeddings, one value per token"
        )
    if inputs.ndim < 2:
        raise ValueError(
            f"inputs must be a batch of shape [N, ...] with N samples, got shape "
            f"{list(inputs.shape)}; for a single sample pass inputs[None]"
        )
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no samples (N = 0)")


def score_tensor(outputs: object) -> torch.Tensor:
    """The tensor of scores in a model's output, by one rule (`OUTPUT_RULE`).

    - a tensor: itself;
    - an object with a `.logits` tensor (a Hugging Face `ModelOutput`): its logits;
    - a dict: its "logits", else its only tensor value, else a TypeError listing its keys;
    - a tuple or list: its first tensor element.

    Raises:
      TypeError: no tensor can be found by the rule; the message says what was returned.
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(outputs, Mapping):
        if isinstance(outputs.get("logits"), torch.Tensor):
            return outputs["logits"]
        tensors = [key for key, value in outputs.items() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return outputs[tensors[0]]
        raise TypeError(
            f"the model returned a {type(outputs).__name__} with keys {list(outputs)[:20]}: "
            f"{'none' if not tensors else len(tensors)} of them hold tensors and none is "
            '"logits"; return the class scores under "logits" (or alone), or wrap the model '
            "in an nn.Module whose forward returns them"
        )
    if isinstance(outputs, (tuple, list)):
        for item in outputs:
            if isinstance(item, torch.Tensor):
                return item
        raise TypeError(
            f"the model returned a {type(outputs).__name__} of {len(outputs)} items, none a "
            "tensor; " + OUTPUT_RULE
        )
    raise TypeError(f"the model returned a {type(outputs).__name__}; " + OUTPUT_RULE)


OUTPUT_RULE = (
    "saliency reads class scores from a tensor, an object's .logits (a Hugging Face "
    'ModelOutput), a dict\'s "logits" (or its only tensor), or the first tensor of a tuple '
    "or list: wrap the model in an nn.Module whose forward returns the scores [N, classes]"
)


def class_scores(outputs: object) -> torch.Tensor:
    """A model's output as class scores [N, classes], found by `score_tensor`'s rule.

    Shapes: [N, classes] as they are; [N] is one score per sample; [N, L, V]
    (a score per position, e.g. a causal language model's logits over its
    vocabulary) is read at the last position, L - 1: the next-token prediction.
    """
    outputs = score_tensor(outputs)
    if not outputs.is_floating_point():
        raise TypeError(f"the model's output must be floating point, got {outputs.dtype}")
    if outputs.ndim == 1:
        return outputs[:, None]
    if outputs.ndim == 3:
        return outputs[:, -1]
    if outputs.ndim != 2:
        raise ValueError(
            f"the model must return class scores of shape [N, classes] (or [N, L, V], read "
            f"at the last position), got {list(outputs.shape)}: wrap it in an nn.Module that "
            "reduces its output to one score per class (e.g. summing a segmentation map over "
            "pixels)"
        )
    return outputs


def resolve_targets(target: Target, scores: torch.Tensor) -> torch.Tensor:
    """Target class per sample, int64 [N]: `target` checked against scores [N, C], or the argmax."""
    count, classes = scores.shape
    if target is None:
        return scores.detach().argmax(dim=1)
    targets = torch.as_tensor(target, device=scores.device)
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got {targets.dtype}")
    if targets.ndim == 0:
        targets = targets.expand(count)
    if tuple(targets.shape) != (count,):
        raise ValueError(
            f"target must be one class index or one per sample ({count}), got shape "
            f"{list(targets.shape)}"
        )
    targets = targets.long()
    out_of_range = (targets < 0) | (targets >= classes)
    if bool(out_of_range.any()):
        bad = sorted({int(t) for t in targets[out_of_range].tolist()})
        raise ValueError(
            f"target class {bad[:5]} out of range for a model with {classes} output"
            f"{'s' if classes != 1 else ''} (valid: 0 to {classes - 1})"
        )
    return targets


class RowsModel(torch.nn.Module):
    """A model that needs to know which input sample each row of a batch perturbs.

    Saliency over token embeddings is one: a row is a (perturbed) embedding,
    and the model is run on that row's sample's token ids.
    """

    def forward_rows(self, rows: torch.Tensor, samples: torch.Tensor | None) -> object:
        """The output on `rows` [R, ...]; `samples` [R] indexes the inputs (None: see subclass)."""
        raise NotImplementedError

    def forward(self, rows: torch.Tensor) -> object:
        return self.forward_rows(rows, None)


def forward_rows(
    model: torch.nn.Module, rows: torch.Tensor, samples: torch.Tensor | None = None
) -> object:
    """The model's output on `rows`; `samples` [R] says which input sample each row perturbs.

    A plain model ignores `samples`; a `RowsModel` is called through `forward_rows`.
    """
    if isinstance(model, RowsModel):
        return model.forward_rows(rows, samples)
    return model(rows)


def target_gradient(
    model: torch.nn.Module,
    rows: torch.Tensor,
    target: Target,
    samples: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂ score[n, target[n]] / ∂ rows[n] for every row, by one forward and one backward pass.

    Rows are independent (the model is expected in eval mode), so the gradient
    of the summed target scores is each row's own gradient. `samples`: as
    `forward_rows`.

    Returns:
      (gradient shaped like rows, the detached scores [R, classes], targets [R]).

    Raises:
      NoGradientPathError: the target scores do not depend differentiably on
        the input (the model detaches it, rounds, runs under no_grad, ...).
    """
    leaf = rows.detach().requires_grad_(True)
    with torch.enable_grad():
        # The model sees a copy: one that changes its input in place changes
        # neither the caller's tensor nor our leaf.
        scores = class_scores(forward_rows(model, leaf.clone(), samples))
        targets = resolve_targets(target, scores)
        total = scores.gather(1, targets[:, None]).sum()
        gradient = None
        if total.requires_grad:
            (gradient,) = torch.autograd.grad(total, leaf, allow_unused=True)
    if gradient is None:
        raise NoGradientPathError(
            "the model's output does not depend differentiably on its input (it detaches "
            "it, rounds or takes an argmax, or runs under torch.no_grad), so gradient "
            "methods cannot attribute it; use method='occlusion', which needs no gradient"
        )
    return gradient, scores.detach(), targets


def rows_per_pass(
    batch_size: int | None, sample_shape: Sequence[int], device: torch.device | str = "cpu"
) -> int:
    """Rows per forward pass for a method that batches perturbed copies of the inputs.

    `batch_size` if given, else as many rows as fit `DEFAULT_PASS_ELEMENTS`
    input elements for the device (at least one).
    """
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive number of rows, got {batch_size}")
        return int(batch_size)
    elements = 1
    for size in sample_shape:
        elements *= int(size)
    budget = DEFAULT_PASS_ELEMENTS["cpu" if torch.device(device).type == "cpu" else "other"]
    return max(1, budget // max(1, elements))


def resolve_baseline(baseline: torch.Tensor | float | None, inputs: torch.Tensor) -> torch.Tensor:
    """The baseline as [1 or N, ...sample shape]: one shared by all samples, or one each.

    `baseline` may be None (zeros), a number (that constant), a tensor of one
    sample's shape, or one broadcastable to the inputs' shape.
    """
    if baseline is None:
        return torch.zeros_like(inputs[:1])
    if not isinstance(baseline, torch.Tensor):
        return torch.full_like(inputs[:1], float(baseline))
    baseline = baseline.detach().to(device=inputs.device, dtype=inputs.dtype)
    if baseline.ndim < inputs.ndim:  # e.g. one sample's shape, or [C, 1, 1]
        baseline = baseline.reshape((1,) * (inputs.ndim - baseline.ndim) + tuple(baseline.shape))
    count = 1 if baseline.shape[0] == 1 else inputs.shape[0]
    try:
        if baseline.ndim != inputs.ndim:
            raise RuntimeError
        return baseline.expand((count,) + tuple(inputs.shape[1:]))
    except RuntimeError:
        raise ValueError(
            f"baseline of shape {list(baseline.shape)} does not fit inputs of shape "
            f"{list(inputs.shape)}: give one sample's shape {list(inputs.shape[1:])} (shared "
            "by all samples) or the inputs' shape (one each)"
        ) from None


def count_non_finite(*tensors: torch.Tensor | None) -> int:
    """Number of NaN or infinite elements in the given tensors (None ones skipped)."""
    return sum(int((~torch.isfinite(t)).sum()) for t in tensors if t is not None)
