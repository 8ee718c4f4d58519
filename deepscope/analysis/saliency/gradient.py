"""Gradient saliency (Simonyan, Vedaldi & Zisserman 2013) and gradient × input."""

from __future__ import annotations

import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import Target, target_gradient


def gradient(model: torch.nn.Module, inputs: torch.Tensor, target: Target = None) -> Attribution:
    """∂ score_target / ∂ input: how a small change of each input element moves the score."""
    grad, scores, targets = target_gradient(model, inputs, target)
    return Attribution("gradient", grad, targets, scores.argmax(dim=1))


def gradient_x_input(
    model: torch.nn.Module, inputs: torch.Tensor, target: Target = None
) -> Attribution:
    """Gradient times input: the first-order contribution of each element relative to zero."""
    grad, scores, targets = target_gradient(model, inputs, target)
    return Attribution("gradient_x_input", grad * inputs, targets, scores.argmax(dim=1))
