"""`compare()`: which features do two networks share? (Li et al., *Convergent Learning*).

Runs the same probe batches through two models, catches the named layers'
outputs with forward hooks, and accumulates the cross-network correlation of
their channels (every input and position is a sample; channels by
`default_channel_dim`: dim 1 of (N, C, H, W), the last of (N, L, C), dim 1 of
a Conv1d-like module's (N, C, L)), then matches the channels (semi- and
bipartite matching). The models are probed in eval mode under
`torch.no_grad()`; their modes and hooks are restored afterwards, so
batch-norm statistics and training are untouched.

Compiled models (`torch.compile`): layers are named with or without
`_orig_mod.`, tags carry the user name, and the probe runs through the eager
module the compiled one wraps (`module_names.eager_module`), where forward
hooks are always called.

The helpers below (probe batches, a layer's output tensor, probing mode) are
shared with watch()'s correlation measurer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from deepscope.analysis.correlation import (
    ChannelCorrelation,
    CorrelationAccumulator,
    default_channel_dim,
    is_channels_first_module,
)
from deepscope.analysis.matching import ChannelMatching, match_channels
from deepscope.module_names import (
    eager_module,
    find_modules,
    is_compiled,
    strip_compile_prefix,
)


@dataclass(frozen=True)
class LayerComparison:
    """One layer pair's cross correlations.

    correlation.matrix is [Ca, Cb] (rows: model_a's channels); matching pairs
    model_a's channels (rows) with model_b's (columns); tag is where it was
    logged (None without a writer).
    """

    name_a: str
    name_b: str
    correlation: ChannelCorrelation
    matching: ChannelMatching
    tag: str | None = None


ProbeBatch = torch.Tensor | Mapping[str, torch.Tensor]


def probe_batches(probe) -> Iterator[ProbeBatch]:
    """The input batches of a probe.

    A tensor is one batch; a tuple (inputs, labels, ...) is one batch of
    `inputs`; a mapping of tensors (a tokenizer's output: input_ids,
    attention_mask, ...) is one batch of keyword inputs, `model(**batch)`; any
    other iterable (a list, a DataLoader) yields batches, each a tensor, an
    (inputs, labels, ...) tuple or list, or a mapping.
    """
    if isinstance(probe, torch.Tensor):
        yield probe
        return
    if isinstance(probe, Mapping):
        yield _keyword_batch(probe)
        return
    if isinstance(probe, tuple) and probe and isinstance(probe[0], torch.Tensor):
        yield probe[0]
        return
    if not isinstance(probe, Iterable):
        raise TypeError(
            "probe must be a tensor of inputs or an iterable of batches, "
            f"got {type(probe).__name__}"
        )
    for batch in probe:
        if isinstance(batch, Mapping):
            yield _keyword_batch(batch)
            continue
        if isinstance(batch, (tuple, list)) and batch:
            batch = batch[0]  # (inputs, labels) from a DataLoader
        if not isinstance(batch, torch.Tensor):
            raise TypeError(
                "each probe batch must be a tensor of inputs, an (inputs, labels) pair or a "
                f"mapping of input tensors, got {type(batch).__name__}"
            )
        yield batch


def _keyword_batch(batch: Mapping) -> dict[str, torch.Tensor]:
    if not batch or not all(isinstance(v, torch.Tensor) for v in batch.values()):
        raise TypeError(
            "a probe batch given as a mapping must map input names to tensors "
            f"(e.g. input_ids, attention_mask), got {dict(batch)!r:.200}"
        )
    return dict(batch)


def batch_to(batch: ProbeBatch, device: torch.device | None) -> ProbeBatch:
    """A probe batch on `device` (None: as it is)."""
    if device is None:
        return batch
    if isinstance(batch, Mapping):
        return {name: value.to(device) for name, value in batch.items()}
    return batch.to(device)


def run_probe(model: torch.nn.Module, batch: ProbeBatch) -> None:
    """One forward pass of a probe batch (`model(batch)`, or `model(**batch)` for a mapping).

    The output is not used: hooks catch the layers' outputs, so a tensor, a
    tuple or a Hugging Face `ModelOutput` are all fine.
    """
    if isinstance(batch, Mapping):
        model(**batch)
    else:
        model(batch)


def layer_output(output) -> torch.Tensor:
    """A module's output tensor, by a fixed rule.

    A tensor as is; a tuple or list: its first tensor (a transformer block's
    hidden states before its attention weights or cache); a mapping (a Hugging
    Face `ModelOutput`, a dict): its `last_hidden_state` when it has one, else
    its first tensor value.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        hidden = output.get("last_hidden_state")
        if isinstance(hidden, torch.Tensor):
            return hidden
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"the layer's output is a {type(output).__name__}, not a tensor")


def layer_channel_dim(
    output: torch.Tensor, module: torch.nn.Module, channel_dim: int | None
) -> int:
    """The channel dim of a layer's output: `channel_dim` if given, else the default rule.

    The rule (`default_channel_dim`) with the module's class deciding 3-d
    outputs: (N, C, L) for Conv1d-like modules, (N, L, C) otherwise.
    """
    if channel_dim is not None:
        return channel_dim
    return default_channel_dim(output.ndim, is_channels_first_module(module))


def checked_channel_dims(
    channel_dims: Mapping[str, int] | None, layers: Sequence[str], what: str
) -> dict[str, int]:
    """Per-layer channel dims keyed by user name (`_orig_mod.` stripped), checked.

    Raises:
      TypeError: not a mapping of names to ints.
      ValueError: a name that is not among `layers`.
    """
    if channel_dims is None:
        return {}
    if not isinstance(channel_dims, Mapping):
        raise TypeError(
            f"{what} must map layer names to channel dims, e.g. {{'encoder.0': 1}}, "
            f"got {type(channel_dims).__name__}"
        )
    known = {strip_compile_prefix(name) for name in layers}
    dims: dict[str, int] = {}
    for name, dim in channel_dims.items():
        if not isinstance(name, str) or isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"{what} must map layer names to ints, got {name!r}: {dim!r}")
        user = strip_compile_prefix(name)
        if user not in known:
            raise ValueError(
                f"{what} names {name!r}, which is not one of the layers measured: {sorted(known)}"
            )
        dims[user] = dim
    return dims


def not_called_message(model: torch.nn.Module, layers: Sequence[str], where: str) -> str:
    """Why a layer's hook was not called on the probe, in words."""
    message = (
        f"{where}: layers {list(layers)} did not run in the model's forward pass on the "
        "probe (their forward hooks were not called), so nothing was logged for them"
    )
    if is_compiled(model):
        message += (
            "; the model is compiled (torch.compile): the probe ran through the eager module "
            "it wraps, so these layers are not on its forward path"
        )
    return message


def reused_module_error(name: str) -> RuntimeError:
    """The error for a module that runs more than once in one forward pass."""
    return RuntimeError(
        f"layer {name!r} runs more than once in one forward pass (one module used in several "
        "places, e.g. a single ReLU shared by several layers), so its output is not one "
        "layer's activations; name a module that runs once per forward pass (give each use "
        "its own module)"
    )


def model_device(model: torch.nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None if it has neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


@contextlib.contextmanager
def probing(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration; every module's mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _layer_pairs(layers) -> list[tuple[str, str]]:
    if isinstance(layers, str):
        layers = [layers]
    pairs = []
    for layer in layers:
        if isinstance(layer, str):
            pairs.append((layer, layer))
        elif (
            isinstance(layer, (tuple, list))
            and len(layer) == 2
            and all(isinstance(n, str) for n in layer)
        ):
            pairs.append((layer[0], layer[1]))
        else:
            raise TypeError(
                "layers must be module names (as in model.named_modules()) or (name_a, name_b) "
                f"pairs, got {layer!r}"
            )
    if not pairs:
        raise ValueError("layers is empty: name at least one layer to compare")
    return pairs


def compare(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    probe,
    layers: Sequence[str | tuple[str, str]],
    writer=None,
    global_step: int | None = None,
    tag_prefix: str = "compare/",
    channel_dim: int | None = None,
    matrix_dtype: str = "float16",
    names: tuple[str, str] = ("model_a", "model_b"),
    channel_dims: Mapping[str, int] | None = None,
) -> dict[str, LayerComparison]:
    """Cross-network channel correlations of two models on the same probe inputs, layer by layer.

    Args:
      model_a, model_b: the two networks (e.g. trained from different seeds).
      probe: input batches: a tensor, an (inputs, labels) pair, or an iterable
        of either (e.g. a DataLoader); each batch goes through both models.
      layers: module names as in `model.named_modules()` (the same in both
        models), or (name_a, name_b) pairs; with or without torch.compile's
        `_orig_mod.`.
      writer: a `deepscope.SummaryWriter`; if given, each layer is logged
        under `tag_prefix + label` with its matching.
      global_step: the step to log at.
      channel_dim: the channel dimension of every layer's outputs; None
        (default): dim 1 of (N, C, H, W, …), the last of (N, C) and (N, L, C),
        dim 1 of a Conv1d-like module's (N, C, L).
      channel_dims: per layer (its label, see Returns), overriding channel_dim.
      matrix_dtype: "float16" or "uint8", for the logged matrices.
      names: what to call the two models in the logged series (rows are
        model_a's channels, columns model_b's), e.g. their run names.

    Returns:
      label → LayerComparison, in the order of `layers`; the label is the
      layer name, or "name_a-vs-name_b" for a pair of different names.
    """
    for name, model in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"names must be two non-empty strings (model_a's, model_b's), got {names!r}"
        )
    pairs = _layer_pairs(layers)
    modules_a = find_modules(model_a, [a for a, _ in pairs], "compare: model_a")
    modules_b = find_modules(model_b, [b for _, b in pairs], "compare: model_b")
    pairs = [(strip_compile_prefix(a), strip_compile_prefix(b)) for a, b in pairs]
    labels = [a if a == b else f"{a}-vs-{b}" for a, b in pairs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"layers name the same pair twice: {labels}")
    dims = checked_channel_dims(channel_dims, labels, "compare: channel_dims")
    accumulators: list[CorrelationAccumulator | None] = [None] * len(pairs)
    eager = {"a": eager_module(model_a), "b": eager_module(model_b)}
    modules = {"a": modules_a, "b": modules_b}

    running = {"side": None}
    outputs: dict[tuple[str, int], torch.Tensor] = {}

    def hook_for(side: str, index: int):
        def hook(module, inputs, output):
            if running["side"] == side:
                if (side, index) in outputs:
                    raise reused_module_error(pairs[index][0 if side == "a" else 1])
                outputs[(side, index)] = layer_output(output)

        return hook

    handles = []
    batches = 0
    try:
        for side, side_modules in modules.items():
            for index, module in enumerate(side_modules):
                handles.append(module.register_forward_hook(hook_for(side, index)))
        with probing(model_a), probing(model_b):
            for batch in probe_batches(probe):
                outputs.clear()
                for side, model in (("a", model_a), ("b", model_b)):
                    running["side"] = side
                    run_probe(eager[side], batch_to(batch, model_device(model)))
                running["side"] = None
                for index, label in enumerate(labels):
                    missing = [side for side in "ab" if (side, index) not in outputs]
                    if missing:
                        model = model_a if missing[0] == "a" else model_b
                        raise RuntimeError(
                            not_called_message(model, [label], f"compare: model_{missing[0]}")
                        )
                    out_a, out_b = outputs[("a", index)], outputs[("b", index)]
                    if accumulators[index] is None:
                        given = dims.get(label, channel_dim)
                        accumulators[index] = CorrelationAccumulator(
                            layer_channel_dim(out_a, modules["a"][index], given),
                            layer_channel_dim(out_b, modules["b"][index], given),
                        )
                    accumulators[index].update(out_a, out_b)
                outputs.clear()
                batches += 1
    finally:
        running["side"] = None
        outputs.clear()
        for handle in handles:
            handle.remove()
    if batches == 0:
        raise ValueError("probe holds no batches")

    results: dict[str, LayerComparison] = {}
    for (name_a, name_b), label, accumulator in zip(pairs, labels, accumulators):
        correlation = accumulator.compute()
        tag = None
        if writer is not None:
            tag = tag_prefix + label
            writer.add_channel_correlation(
                tag,
                correlation,
                global_step=global_step,
                channel_dim=correlation.channel_dim,
                matrix_dtype=matrix_dtype,
                row_name=f"{names[0]}/{name_a}",
                col_name=f"{names[1]}/{name_b}",
            )
        results[label] = LayerComparison(
            name_a=name_a,
            name_b=name_b,
            correlation=correlation,
            matching=match_channels(correlation.matrix),
            tag=tag,
        )
    return results
