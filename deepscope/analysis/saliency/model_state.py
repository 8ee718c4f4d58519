"""Leave a model exactly as it was: module modes and parameters' `requires_grad` flags.

Saliency runs inside training (watch() calls it from the optimizer's post-step
hook), so it must not change what the training sees next, also when it fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def preserved_model_state(model: torch.nn.Module, eval_mode: bool = True) -> Iterator[None]:
    """Inside: `model` in eval mode (if asked) with every parameter frozen; on exit, as before.

    Eval mode keeps batch norm's running statistics and dropout out of the
    measurement (and the statistics untouched). Freezing the parameters makes
    autograd skip their gradients: a saliency backward pass then costs only
    what the input's gradient needs, and nothing can reach a parameter's `.grad`.
    Each module's own `training` flag is restored (a model may mix modes).
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for module, training in modes:
            module.training = training
        for parameter, requires_grad in flags:
            parameter.requires_grad_(requires_grad)
