"""Saliency: what in an input drives a model's prediction, by eight attribution methods.

One call shape for every method, as Captum:

    maps = saliency(model, inputs, target=None, method="gradient", **options)

returns maps shaped like `inputs` [N, ...]; `target` (one class index, or one
per sample) defaults to the predicted class. The class scores are found in the
model's output by one rule: a tensor; an object's `.logits` (a Hugging Face
`ModelOutput`); a dict's "logits", else its only tensor; the first tensor of a
tuple or list. Scores [N, L, V] (a causal language model's) are read at the
last position: the next-token prediction. `attribute(...)` takes the same
arguments and returns an `Attribution` with the targets, the predictions, and
each method's extras (baseline and its maps, completeness error).

Every method runs with the model in eval mode (`eval_mode=False` keeps its
mode) and its parameters frozen, differentiates with `torch.autograd.grad`
with respect to the inputs only (no parameter's `.grad` is touched: safe
inside training), and leaves the model's modes, `requires_grad` flags and
hooks exactly as they were, also when it raises. Non-finite map values are
kept and counted (`Attribution.non_finite`; `saliency()` warns).

Methods (options in their own modules):
  gradient                 ∂f/∂x (Simonyan et al. 2013)
  gradient_x_input         ∂f/∂x · x
  guided_backprop          only positive gradients through nn.ReLU modules (strict=True)
  baseline_delta           ∇f(x) − ∇f(baseline) (baseline=None: zeros)
  baseline_delta_x_input   (∇f(x) − ∇f(baseline)) · x
  smoothgrad               mean ∇f over noisy copies (n_samples=50, noise_level=0.15, seed=0)
  integrated_gradients     (x − b)·∫∇f (baseline=None, n_steps=50, rule="gauss_legendre")
  occlusion                drop of f when a window is hidden (window, stride, baseline_value)

Text models: `embeddings=model.get_input_embeddings()` (or its module name)
takes token ids [N, L] and attributes over the input embeddings, one value per
token (token_embeddings.py says how each method is carried over and reduced).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.baseline_delta import baseline_delta, baseline_delta_x_input
from deepscope.analysis.saliency.gradient import gradient, gradient_x_input
from deepscope.analysis.saliency.guided_backprop import guided_backprop
from deepscope.analysis.saliency.integrated_gradients import integrated_gradients
from deepscope.analysis.saliency.model_state import preserved_model_state
from deepscope.analysis.saliency.occlusion import occlusion
from deepscope.analysis.saliency.smoothgrad import smoothgrad
from deepscope.analysis.saliency.target_scores import (
    NoGradientPathError,
    Target,
    check_inputs,
    count_non_finite,
)
from deepscope.analysis.saliency.token_embeddings import (
    EmbeddingModule,
    check_token_ids,
    token_attribute,
    token_reduction,
)
from deepscope.module_names import eager_module

# Method name → its function(model, inputs, target, **options) -> Attribution.
METHODS: dict[str, Callable[..., Attribution]] = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "guided_backprop": guided_backprop,
    "baseline_delta": baseline_delta,
    "baseline_delta_x_input": baseline_delta_x_input,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "occlusion": occlusion,
}

__all__ = [
    "METHODS",
    "Attribution",
    "NoGradientPathError",
    "attribute",
    "check_method",
    "saliency",
    "token_reduction",
]


def check_method(method: str) -> None:
    """Raise ValueError naming the known methods unless `method` is one."""
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")


def attribute(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    method: str = "gradient",
    eval_mode: bool = True,
    embeddings: EmbeddingModule | None = None,
    **options: Any,
) -> Attribution:
    """Saliency maps of `inputs` [N, ...] by `method`, with targets, predictions and extras.

    Args:
      model: returns class scores [N, classes] ([N]: one score; [N, L, V]: read at
        the last position, the next-token prediction), as a tensor, an object's
        `.logits` (a Hugging Face ModelOutput), a dict's "logits" (else its only
        tensor), or the first tensor of a tuple or list.
      inputs: a floating-point batch [N, ...].
      target: class index, or N of them; None: each sample's predicted class.
      method: one of METHODS.
      eval_mode: run the model in eval mode (restored afterwards).
      embeddings: for text models: the model's input embedding module (e.g.
        `model.get_input_embeddings()`) or its name; `inputs` are then token ids
        [N, L] and the maps one value per token [N, L], attributed over the
        embeddings (see `token_embeddings`; `baseline_token=<id>` sets the
        baseline of integrated gradients, baseline_delta* and occlusion;
        `attention_mask=` [N, L] is passed to the model for padded batches).
      options: the method's own options (see its module).

    Raises:
      TypeError: integer inputs or targets, a model that returns no tensor.
      ValueError: a target out of range, an unknown method, bad options.
      NoGradientPathError: (a ValueError) the output does not depend
        differentiably on the input, for gradient methods.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}: wrap a function "
            "in an nn.Module whose forward calls it"
        )
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # Its forward would prepare a gradient all-reduce that this backward never makes.
        model = model.module
    # A torch.compile'd model runs its eager module: guided backprop's hooks on its ReLUs
    # are then called, and no method recompiles the graph for each new input it tries.
    model = eager_module(model)
    check_method(method)
    if embeddings is None:
        check_inputs(inputs)
    else:
        check_token_ids(inputs)
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "saliency needs autograd, which torch.inference_mode() disables: call it outside"
        )
    if inputs.is_inference():  # made under inference_mode: autograd cannot use it
        inputs = inputs.clone()
    with preserved_model_state(model, eval_mode):
        if embeddings is None:
            result = METHODS[method](model, inputs, target, **options)
        else:
            result = token_attribute(
                METHODS[method], method, model, inputs, target, embeddings, **options
            )
    result.non_finite = count_non_finite(result.maps, result.baseline_maps)
    return result


def saliency(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    method: str = "gradient",
    **options: Any,
) -> torch.Tensor:
    """Saliency maps shaped like `inputs` (see `attribute` for the arguments, `embeddings=`
    for token ids).

    Warns when maps hold NaN or infinite values (kept as computed).
    """
    result = attribute(model, inputs, target, method, **options)
    if result.non_finite:
        warnings.warn(
            f"{method} saliency: {result.non_finite} map value(s) are NaN or infinite "
            "(kept as computed); check the model's output and the inputs for non-finite values",
            RuntimeWarning,
            stacklevel=2,
        )
    return result.maps
