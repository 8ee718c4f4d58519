"""`compare()`: which features do two networks share? (Li et al., *Convergent Learning*).

Runs the same probe batches through two models, catches the named layers'
outputs with forward hooks, and accumulates the cross-network correlation of
their channels (every input and spatial position is a sample), then matches
the channels (semi- and bipartite matching). The models are probed in eval
mode under `torch.no_grad()`; their modes and hooks are restored afterwards,
so batch-norm statistics and training are untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from deepscope.analysis.correlation import ChannelCorrelation, CorrelationAccumulator
from deepscope.analysis.matching import ChannelMatching, match_channels

_NAMES_LISTED = 40  # module names quoted in an error before "... and N more"


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


def module_name_error(model: torch.nn.Module, names: Sequence[str], what: str) -> ValueError:
    """A ValueError naming the unknown `names` and listing the model's module names."""
    known = [name for name, _ in model.named_modules() if name]
    listed = ", ".join(known[:_NAMES_LISTED])
    if len(known) > _NAMES_LISTED:
        listed += f", ... and {len(known) - _NAMES_LISTED} more"
    return ValueError(
        f"{what}: no module named {', '.join(repr(n) for n in names)}; names are as in "
        f"model.named_modules(): {listed or '(the model has no submodules)'}"
    )


def find_modules(model: torch.nn.Module, names: Sequence[str], what: str) -> list[torch.nn.Module]:
    """The modules called `names` in `model.named_modules()`, or a clear error."""
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise module_name_error(model, missing, what)
    return [modules[name] for name in names]


def probe_batches(probe) -> Iterator[torch.Tensor]:
    """The input batches of a probe.

    A tensor is one batch; a tuple (inputs, labels, ...) is one batch of
    `inputs`; any other iterable (a list, a DataLoader) yields batches, each a
    tensor or an (inputs, labels, ...) tuple or list.
    """
    if isinstance(probe, torch.Tensor):
        yield probe
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
        if isinstance(batch, (tuple, list)) and batch:
            batch = batch[0]  # (inputs, labels) from a DataLoader
        if not isinstance(batch, torch.Tensor):
            raise TypeError(
                "each probe batch must be a tensor of inputs or an (inputs, labels) pair, "
                f"got {type(batch).__name__}"
            )
        yield batch


def layer_output(output) -> torch.Tensor:
    """A module's output tensor (the first tensor of a tuple output)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"the layer's output is a {type(output).__name__}, not a tensor")


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
    channel_dim: int = 1,
    matrix_dtype: str = "float16",
    names: tuple[str, str] = ("model_a", "model_b"),
) -> dict[str, LayerComparison]:
    """Cross-network channel correlations of two models on the same probe inputs, layer by layer.

    Args:
      model_a, model_b: the two networks (e.g. trained from different seeds).
      probe: input batches: a tensor, an (inputs, labels) pair, or an iterable
        of either (e.g. a DataLoader); each batch goes through both models.
      layers: module names as in `model.named_modules()` (the same in both
        models), or (name_a, name_b) pairs.
      writer: a `deepscope.SummaryWriter`; if given, each layer is logged
        under `tag_prefix + label` with its matching.
      global_step: the step to log at.
      channel_dim: the channel dimension of the layers' outputs.
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
    labels = [a if a == b else f"{a}-vs-{b}" for a, b in pairs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"layers name the same pair twice: {labels}")
    accumulators = [CorrelationAccumulator(channel_dim) for _ in pairs]

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
        for side, modules in (("a", modules_a), ("b", modules_b)):
            for index, module in enumerate(modules):
                handles.append(module.register_forward_hook(hook_for(side, index)))
        with probing(model_a), probing(model_b):
            for batch in probe_batches(probe):
                outputs.clear()
                for side, model in (("a", model_a), ("b", model_b)):
                    device = model_device(model)
                    running["side"] = side
                    model(batch if device is None else batch.to(device))
                running["side"] = None
                for index, (accumulator, label) in enumerate(zip(accumulators, labels)):
                    if ("a", index) not in outputs or ("b", index) not in outputs:
                        raise RuntimeError(
                            f"compare: layer {label!r} did not run in the forward pass of "
                            + ("model_a" if ("a", index) not in outputs else "model_b")
                        )
                    accumulator.update(outputs[("a", index)], outputs[("b", index)])
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
                channel_dim=channel_dim % accumulator.ndim,  # a non-negative index for the metadata
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
