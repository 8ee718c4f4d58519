"""Saliency of text models: attributions over the input embeddings, one value per token.

Token ids are integers: no gradient reaches them. Every method runs instead in
the space of the model's input embeddings (`embeddings=`, the module that maps
ids to vectors, e.g. `model.get_input_embeddings()`): a forward hook on that
module replaces its output [N, L, D] by the (interpolated, noised, occluded)
embedding rows a method asks about, and the rest of the model runs as usual
on the sample's own token ids.

- Baseline (integrated gradients, baseline_delta*): zero embeddings, or with
  `baseline_token=<id>` that token's embedding at every position (e.g. a pad
  or [MASK] token).
- SmoothGrad: noise σ = noise_level × the standard deviation of each sample's
  embedding values (`noise_relative_to="std"`).
- Occlusion: a window of `window` tokens (default 1), all of their embedding
  dims, replaced by the baseline (zeros, or `baseline_token`'s embedding).
- Guided backprop: through nn.ReLU modules as for images; a model without any
  (GPT-2 and BERT use GELU) is refused with the reason.

Each token's map value reduces its [D] embedding attribution by one rule
(`TOKEN_REDUCTIONS`): the sum over the embedding dim for gradient × input,
baseline_delta_x_input and integrated gradients (so integrated gradients stay
complete: Σ over tokens = f(x) − f(baseline)); the L2 norm for the plain
gradients (gradient, guided backprop, SmoothGrad, baseline_delta), whose sign
per dim says nothing about the token as a whole; for occlusion the drop when
the token is hidden (the same for each of its dims).

Padded batches: `attention_mask=` [N, L] is passed to the model with each row's
sample's ids (`model(ids, attention_mask=mask)`); masked tokens get the maps
the model gives them (≈ 0 for gradients, as they are not attended to).

The target score is read from the output by `target_scores.class_scores`:
[N, classes] for sequence classification, [N, L, V] (a causal language model)
at the last position — the target is then a token id, by default the
predicted next token.
"""

from __future__ import annotations

from typing import Any

import torch

from deepscope.analysis.saliency.attribution import Attribution
from deepscope.analysis.saliency.target_scores import RowsModel, Target
from deepscope.module_names import named_modules, strip_compile_prefix

# Method → how a token's embedding attribution [D] becomes one value.
TOKEN_REDUCTIONS = {
    "gradient": "l2",
    "guided_backprop": "l2",
    "smoothgrad": "l2",
    "baseline_delta": "l2",
    "gradient_x_input": "sum",
    "baseline_delta_x_input": "sum",
    "integrated_gradients": "sum",
    "occlusion": "mean",
}
REDUCTION_TEXT = {
    "l2": "L2 norm over the embedding dim",
    "sum": "sum over the embedding dim",
    "mean": "score drop when the token's embedding is replaced by the baseline",
}
_BASELINE_METHODS = ("integrated_gradients", "baseline_delta", "baseline_delta_x_input")

EmbeddingModule = torch.nn.Module | str


def token_reduction(method: str) -> str:
    """The documented reduction of `method`'s per-token maps, e.g. "sum over the embedding dim"."""
    return REDUCTION_TEXT[TOKEN_REDUCTIONS[method]]


def check_token_ids(ids: object) -> None:
    """Raise a clear error unless `ids` is a non-empty integer batch [N, L] of token ids."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(
            f"token ids must be a torch.Tensor of shape [N, L], got {type(ids).__name__}"
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(
            f"with embeddings=, inputs are token ids (an integer tensor [N, L]), got {ids.dtype}"
        )
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(
            f"token ids must be a batch [N, L] of N sequences of L tokens, got shape "
            f"{list(ids.shape)}; for a single sequence pass ids[None]"
        )


def resolve_embedding_module(
    model: torch.nn.Module, embeddings: EmbeddingModule
) -> torch.nn.Module:
    """The embedding module: `embeddings` itself, or the submodule of `model` it names."""
    if isinstance(embeddings, str):
        # User names of a compiled model, or the raw `_orig_mod.` ones, both resolve.
        modules = dict(named_modules(model))
        name = strip_compile_prefix(embeddings)
        if name not in modules:
            names = [name for name in modules if name][:20]
            raise ValueError(
                f"embeddings: the model has no module named {embeddings!r}; pass the module "
                f"(e.g. model.get_input_embeddings()) or one of: {', '.join(names)}"
            )
        return modules[name]
    if not isinstance(embeddings, torch.nn.Module):
        raise TypeError(
            f"embeddings must be the model's input embedding module or its name, got "
            f"{type(embeddings).__name__}"
        )
    if not any(module is embeddings for module in model.modules()):
        raise ValueError(
            f"embeddings: this {type(embeddings).__name__} is not a submodule of the model; "
            "pass the model's own input embedding module (e.g. model.get_input_embeddings())"
        )
    return embeddings


class _EmbeddingsSeen(Exception):
    """Raised by a recording hook told to stop: the rest of the forward pass is not needed."""


class _Substitute:
    """A forward hook that records the module's output, or replaces it by `rows`.

    stop: after recording, end the forward pass (raise `_EmbeddingsSeen`).
    """

    def __init__(self, rows: torch.Tensor | None = None, stop: bool = False):
        self.rows = rows
        self.stop = stop
        self.calls = 0
        self.seen: torch.Tensor | None = None

    def __call__(self, module, args, output):
        self.calls += 1
        if not isinstance(output, torch.Tensor) or not output.is_floating_point():
            raise TypeError(
                f"the embedding module returned {type(output).__name__}, not a float tensor "
                "of embeddings [N, L, D]: pass the module that maps token ids to vectors"
            )
        if self.rows is None:
            self.seen = output.detach()
            if self.stop:
                raise _EmbeddingsSeen
            return None
        if tuple(output.shape) != tuple(self.rows.shape):
            raise ValueError(
                f"the embedding module's output has shape {list(output.shape)}, the "
                f"substituted embeddings {list(self.rows.shape)}"
            )
        return self.rows.to(output.dtype)


def _run_hooked(model, module, ids, hook: _Substitute, mask=None) -> object:
    handle = module.register_forward_hook(hook)
    try:
        output = model(ids) if mask is None else model(ids, attention_mask=mask)
    finally:
        handle.remove()
    if hook.calls != 1:
        raise ValueError(
            f"the embedding module ran {hook.calls} times in one forward pass of the model; "
            "pass the module that embeds the input token ids once (e.g. "
            "model.get_input_embeddings())"
        )
    return output


def embed(
    model: torch.nn.Module,
    module: torch.nn.Module,
    ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The embedding module's output [N, L, D] as the model computes it on `ids` (detached).

    The model's forward pass is cut short once the module has run.
    """
    hook = _Substitute(stop=True)
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            if attention_mask is None:
                model(ids)
            else:
                model(ids, attention_mask=attention_mask)
    except _EmbeddingsSeen:
        pass
    finally:
        handle.remove()
    return _checked_embeddings(hook.seen, ids)


def embed_and_run(
    model: torch.nn.Module,
    module: torch.nn.Module,
    ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, object]:
    """(the embedding module's output [N, L, D], the model's output) of one pass on `ids`.

    Raises ValueError when the module does not run exactly once or its output is
    not [N, L, D] for ids [N, L].
    """
    hook = _Substitute()
    with torch.no_grad():
        output = _run_hooked(model, module, ids, hook, attention_mask)
    return _checked_embeddings(hook.seen, ids), output


def _checked_embeddings(seen: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
    """The recorded embedding output [N, L, D], or a ValueError saying what was wrong."""
    if seen is None:
        raise ValueError(
            "the embedding module did not run in the model's forward pass; pass the module "
            "that embeds the input token ids (e.g. model.get_input_embeddings())"
        )
    if seen.ndim != 3 or seen.shape[:2] != ids.shape:
        raise ValueError(
            f"the embedding module's output has shape {list(seen.shape)} for token ids of "
            f"shape {list(ids.shape)}; expected [N, L, D]"
        )
    return seen.clone()


class EmbeddingSpace(RowsModel):
    """The model as a function of its input embeddings: rows [R, L, D] → its output.

    Row r is run on the token ids (and attention mask) of sample `samples[r]`
    (without `samples`: all samples in order when there are N rows, else the
    first sample's — a shared baseline row), its embedding module's output
    replaced by the row.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        module: torch.nn.Module,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        self.embedding_module = module
        self.ids = ids
        self.attention_mask = attention_mask

    def forward_rows(self, rows: torch.Tensor, samples: torch.Tensor | None) -> object:
        if samples is not None:
            which = samples.to(self.ids.device)
        elif len(rows) == len(self.ids):
            which = torch.arange(len(rows), device=self.ids.device)
        else:
            which = torch.zeros(len(rows), dtype=torch.long, device=self.ids.device)
        mask = None if self.attention_mask is None else self.attention_mask[which]
        return _run_hooked(
            self.model, self.embedding_module, self.ids[which], _Substitute(rows), mask
        )


def token_attribute(
    method_function,
    method: str,
    model: torch.nn.Module,
    ids: torch.Tensor,
    target: Target,
    embeddings: EmbeddingModule,
    baseline_token: int | None = None,
    attention_mask: torch.Tensor | None = None,
    **options: Any,
) -> Attribution:
    """`method`'s attribution of token ids [N, L] in embedding space, reduced to [N, L].

    Returns an Attribution with maps [N, L], `embedding_maps` [N, L, D] before
    the reduction, `input_kind` "tokens" and `token_reduction`; `baseline` is
    None (it lives in embedding space), `baseline_maps` reduced as the maps.
    """
    check_token_ids(ids)
    module = resolve_embedding_module(model, embeddings)
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, device=ids.device)
        if tuple(attention_mask.shape) != tuple(ids.shape):
            raise ValueError(
                f"attention_mask of shape {list(attention_mask.shape)} must be the token ids' "
                f"shape {list(ids.shape)}"
            )
    embedded = embed(model, module, ids, attention_mask)
    length, width = embedded.shape[1], embedded.shape[2]
    options = dict(options)
    base = None
    if baseline_token is not None:
        if method not in _BASELINE_METHODS and method != "occlusion":
            raise ValueError(
                f"baseline_token applies to {', '.join(_BASELINE_METHODS)} and occlusion, "
                f"not {method}"
            )
        token = torch.full_like(ids[:1], int(baseline_token))
        mask = None if attention_mask is None else attention_mask[:1]
        base = embed(model, module, token, mask)  # [1, L, D]
    if method in _BASELINE_METHODS:
        if base is not None and options.get("baseline") is not None:
            raise ValueError("give baseline_token or baseline, not both")
        if options.get("baseline") is None:
            # One baseline row per sample, run with that sample's ids and mask.
            base = torch.zeros_like(embedded[:1]) if base is None else base
            options["baseline"] = base.expand_as(embedded)
    if method == "occlusion":
        window = options.pop("window", None)
        stride = options.pop("stride", None)
        tokens = 1 if window is None else int(window)
        if not 1 <= tokens <= length:
            raise ValueError(f"occlusion window of {window} tokens does not fit {length} tokens")
        options["window"] = (tokens, width)
        options["stride"] = (tokens if stride is None else int(stride), width)
        if base is not None:
            options["baseline_value"] = base[0]
    if method == "smoothgrad":
        options.setdefault("noise_relative_to", "std")
    space = EmbeddingSpace(model, module, ids, attention_mask)
    result = method_function(space, embedded, target, **options)
    rule = TOKEN_REDUCTIONS[method]
    result.embedding_maps = result.maps
    result.maps = _reduce(result.maps, rule)
    if result.baseline_maps is not None:
        result.baseline_maps = _reduce(result.baseline_maps, rule)
    result.baseline = None
    result.input_kind = "tokens"
    result.token_reduction = REDUCTION_TEXT[rule]
    if baseline_token is not None:
        result.options["baseline_token"] = int(baseline_token)
    return result


def _reduce(maps: torch.Tensor, rule: str) -> torch.Tensor:
    if rule == "l2":
        return torch.linalg.vector_norm(maps, dim=-1)
    if rule == "sum":
        return maps.sum(dim=-1)
    return maps.mean(dim=-1)
