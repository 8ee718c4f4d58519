"""Guided backpropagation (Springenberg et al. 2015, "Striving for simplicity").

At every ReLU the backward pass keeps only positive gradients flowing into
positions where the ReLU's input was positive: R_in = [x > 0]·max(R_out, 0).

What it covers: `nn.ReLU` modules (in-place ones included), each time they
are called. A tensor hook on the ReLU's output clamps the gradient reaching it,
then the ReLU's own backward applies [x > 0]. What it cannot cover: ReLUs
applied as functions (`F.relu`, `torch.relu`, `Tensor.relu`), which it
detects and refuses (strict) or warns about, and other activations (GELU,
LeakyReLU, clamp, ...), through which gradients pass unchanged, as in Captum.
"""

from __future__ import annotations

import warnings

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import Target, target_gradient

_FUNCTIONAL_RELUS = frozenset(
    {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
)


def _positive_part(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


class _GuidedRelus(TorchFunctionMode):
    """Guides the gradient at nn.ReLU outputs; counts ReLUs called as functions outside them."""

    def __init__(self) -> None:
        super().__init__()
        self.module_calls = 0
        self.functional_calls = 0
        self._depth = 0  # > 0 inside an nn.ReLU's forward (its own F.relu is fine)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self._depth == 0 and func in _FUNCTIONAL_RELUS:
            self.functional_calls += 1
        return func(*args, **(kwargs or {}))

    def enter(self, module, args) -> None:
        self._depth += 1

    def leave(self, module, args, output) -> None:
        self._depth -= 1
        self.module_calls += 1
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(_positive_part)


def guided_backprop(
    model: torch.nn.Module, inputs: torch.Tensor, target: Target = None, strict: bool = True
) -> Attribution:
    """Guided backpropagation maps of the target scores, shaped like the inputs.

    Args:
      strict: raise ValueError when the model applies ReLUs as functions (which
        guided backprop cannot reach) or calls no nn.ReLU at all (the maps would
        be plain gradients); False warns instead.
    """
    guide = _GuidedRelus()
    handles = []
    try:
        for module in model.modules():
            if isinstance(module, torch.nn.ReLU):
                handles.append(module.register_forward_pre_hook(guide.enter))
                handles.append(module.register_forward_hook(guide.leave))
        with guide:
            grad, scores, targets = target_gradient(model, inputs, target)
    finally:
        for handle in handles:
            handle.remove()
    problem = None
    if guide.functional_calls:
        problem = (
            f"guided_backprop: the model applied ReLU as a function (F.relu, torch.relu or "
            f"Tensor.relu) {guide.functional_calls} time(s) in its forward pass; guided "
            "backprop reaches only nn.ReLU modules, so the gradient passed those unguided. "
            "Use nn.ReLU modules"
        )
    elif guide.module_calls == 0:
        problem = (
            "guided_backprop: the model called no nn.ReLU module, so its maps are plain "
            "gradients; use method='gradient', or nn.ReLU modules"
        )
    if problem is not None:
        if strict:
            raise ValueError(problem + " (or pass strict=False to accept such maps)")
        warnings.warn(problem, RuntimeWarning, stacklevel=3)
    return Attribution(
        "guided_backprop",
        grad,
        targets,
        scores.argmax(dim=1),
        options={"relu_calls": guide.module_calls, "functional_relu_calls": guide.functional_calls},
    )
