"""`compare()`: which features do two networks share? (Li et al., *Convergent Learning*).

Runs the same probe batches through two models, catches the named layers'
outputs with forward hooks, and accumulates the cross-network correlation of
their channels (every input and position is a sample; channels by
`default_channel_dim`: dim 1 of (N, C, H, W), the last of (N, L, C), dim 1 of
a Conv1d-like module's (N, C, L)), then matches the channels (semi- and
bipartite matching), predicts each of model_a's channels from all of
model_b's (least squares and L1, `analysis.channel_regression`: Li et al.'s
table) and takes the layer pair's linear CKA from the same co-moments
(`analysis.cka`). The models are probed in eval mode under
`torch.no_grad()`; their modes and hooks are restored afterwards, so
batch-norm statistics and training are untouched.

Compiled models (`torch.compile`): layers are named with or without
`_orig_mod.`, tags carry the user name, and the probe runs through the eager
module the compiled one wraps (`module_names.eager_module`), where forward
hooks are always called.

Probing (batches, a layer's output, eval mode) is `deepscope.writer.probe`,
shared with watch()'s correlation measurer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepscope.analysis.channel_regression import ChannelRegression, channel_regression
from deepscope.analysis.cka import cka_from_comoments
from deepscope.analysis.correlation import (
    ChannelCorrelation,
    CorrelationAccumulator,
)
from deepscope.analysis.matching import ChannelMatching, match_channels
from deepscope.module_names import eager_module, find_modules, strip_compile_prefix
from deepscope.writer.correlation import cross_network_fit_pb
from deepscope.writer.probe import (
    batch_to,
    checked_channel_dims,
    layer_channel_dim,
    layer_output,
    model_device,
    not_called_message,
    probe_batches,
    probing,
    reused_module_error,
    run_probe,
)


@dataclass(frozen=True)
class LayerComparison:
    """One layer pair's cross correlations.

    correlation.matrix is [Ca, Cb] (rows: model_a's channels); matching pairs
    model_a's channels (rows) with model_b's (columns); regression predicts
    each of model_a's channels from model_b's (None when compare() was told
    regression=False); cka is the pair's linear CKA over the sample positions,
    the channels as features (NaN when either layer has no variance); tag is
    where it was logged (None without a writer).
    """

    name_a: str
    name_b: str
    correlation: ChannelCorrelation
    matching: ChannelMatching
    tag: str | None = None
    regression: ChannelRegression | None = None
    cka: float = float("nan")


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
    regression: bool = True,
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
        under `tag_prefix + label` with its matching, its regression (each
        of model_a's channels: least-squares and L1 error, the L1 fit's
        channel count and α, the layer means) and the pair's CKA
        (`CorrelationStep.cross_network`).
      global_step: the step to log at.
      channel_dim: the channel dimension of every layer's outputs; None
        (default): dim 1 of (N, C, H, W, …), the last of (N, C) and (N, L, C),
        dim 1 of a Conv1d-like module's (N, C, L).
      channel_dims: per layer (its label, see Returns), overriding channel_dim.
      matrix_dtype: "float16" or "uint8", for the logged matrices.
      names: what to call the two models in the logged series (rows are
        model_a's channels, columns model_b's), e.g. their run names.
      regression: predict each of model_a's channels from model_b's
        (`LayerComparison.regression`). The least squares take one
        eigendecomposition of model_b's C_b × C_b correlations; the L1 fits
        walk every channel's exact lasso path at once (on one CPU thread
        3 ms at 96 channels and 0.08 s at 512 when each fit uses ~4
        channels, as in Li et al.; 2 s at 512 when they use ~50):
        False skips both (the CKA is still taken and logged).

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
        within_a, within_b, cross = accumulator.comoments()
        usable_b = ~(correlation.cols.dead | correlation.cols.overflow)
        predicted = None
        if regression:
            predicted = channel_regression(
                correlation.matrix,
                correlation.within_cols,
                usable_a=~(correlation.rows.dead | correlation.rows.overflow),
                usable_b=usable_b,
            )
        cka = cka_from_comoments(cross, within_a, within_b)
        matching = match_channels(correlation.matrix)  # once: logged and returned
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
                cross_network=cross_network_fit_pb(
                    predicted, cka, predictors=int(np.count_nonzero(usable_b))
                ),
                matching=matching,
            )
        results[label] = LayerComparison(
            name_a=name_a,
            name_b=name_b,
            correlation=correlation,
            matching=matching,
            tag=tag,
            regression=predicted,
            cka=cka,
        )
    return results


@dataclass(frozen=True)
class CkaComparison:
    """The layer × layer linear CKA of two networks on one probe.

    matrix: float64 [len(layers_a), len(layers_b)], entry (i, j) the CKA of
    model_a's layer i with model_b's layer j, in [0, 1] (NaN where a layer's
    outputs do not vary over the probe); samples: the probe inputs; tag: where
    it was logged (None without a writer).
    """

    matrix: np.ndarray
    layers_a: list[str]
    layers_b: list[str]
    samples: int
    tag: str | None = None
    seconds: float = 0.0


def _layer_names(layers, what: str) -> list[str]:
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a non-empty list of module names, got {layers!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a layer twice: {names}")
    return names


def compare_cka(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    probe,
    layers_a: Sequence[str],
    layers_b: Sequence[str] | None = None,
    writer=None,
    tag: str = "cka",
    global_step: int | None = None,
    names: tuple[str, str] = ("model_a", "model_b"),
) -> CkaComparison:
    """Linear CKA of every layer of model_a against every layer of model_b, on the same probe.

    Each probe input is one sample and a layer's whole output for it (C·H·W,
    or L·C) its features, so layers of any shapes and widths compare
    (Kornblith et al. 2019): CKA = ⟨K_c, L_c⟩_F / (‖K_c‖_F‖L_c‖_F) of the
    layers' centred n × n Gram matrices (`analysis.cka.centered_gram`,
    `cka_matrix`). 1 for a network against itself on the diagonal; invariant
    to orthogonal transforms and isotropic scaling of a layer's features.
    Pass the same model twice with another checkpoint loaded into one to
    compare two checkpoints.

    Args:
      model_a, model_b: the two networks (model_b may be model_a).
      probe: input batches, as for `compare` (a tensor, an (inputs, labels)
        pair, or an iterable of either); every input goes through both models.
      layers_a: model_a's module names (as in `named_modules()`, with or
        without torch.compile's `_orig_mod.`); the matrix's rows.
      layers_b: model_b's; the columns (default: the same names as layers_a).
      writer: a `deepscope.SummaryWriter`; if given the matrix is logged
        under `tag` (kind "cka", `add_cka_matrix`).
      global_step: the step to log at.
      names: what to call the two models in the logged series.

    The models run in eval mode under `torch.no_grad()`, their modes and
    hooks restored afterwards. Memory: every layer's outputs on the whole
    probe are kept (float32, on the model's device) until the Grams are
    taken: n·(features) per layer, n × n float64 per Gram; keep the probe to
    a few hundred inputs.

    Returns:
      `CkaComparison`.
    """
    import time

    from deepscope.analysis.cka import centered_gram, cka_matrix

    started = time.perf_counter()
    for name, model in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(
            f"names must be two non-empty strings (model_a's, model_b's), got {names!r}"
        )
    raw = {"a": _layer_names(layers_a, "compare_cka: layers_a")}
    raw["b"] = raw["a"] if layers_b is None else _layer_names(layers_b, "compare_cka: layers_b")
    models = {"a": model_a, "b": model_b}
    modules = {
        side: find_modules(models[side], raw[side], f"compare_cka: model_{side}") for side in "ab"
    }
    shown = {side: [strip_compile_prefix(n) for n in raw[side]] for side in "ab"}
    features: dict[tuple[str, int], list[torch.Tensor]] = {}
    caught: dict[tuple[str, int], torch.Tensor] = {}
    running = {"side": None}

    def hook_for(side: str, index: int):
        def hook(module, inputs, output):
            if running["side"] == side:
                if (side, index) in caught:
                    raise reused_module_error(shown[side][index])
                out = layer_output(output)
                caught[(side, index)] = out.detach().reshape(out.shape[0], -1).float()

        return hook

    handles = []
    samples = 0
    try:
        for side in "ab":
            for index, module in enumerate(modules[side]):
                handles.append(module.register_forward_hook(hook_for(side, index)))
        with probing(model_a), probing(model_b):
            for batch in probe_batches(probe):
                for side in "ab":
                    caught.clear()
                    running["side"] = side
                    run_probe(
                        eager_module(models[side]), batch_to(batch, model_device(models[side]))
                    )
                    running["side"] = None
                    missing = [
                        shown[side][i] for i in range(len(modules[side])) if (side, i) not in caught
                    ]
                    if missing:
                        raise RuntimeError(
                            not_called_message(models[side], missing, f"compare_cka: model_{side}")
                        )
                    sizes = {caught[(side, i)].shape[0] for i in range(len(modules[side]))}
                    if len(sizes) != 1:
                        raise ValueError(
                            f"compare_cka: model_{side}'s layers saw different numbers of "
                            f"samples in one batch ({sorted(sizes)}): every layer needs one "
                            "output row per probe input (batch-first outputs)"
                        )
                    for key, value in caught.items():
                        features.setdefault(key, []).append(value)
                samples += next(iter(sizes))
    finally:
        running["side"] = None
        caught.clear()
        for handle in handles:
            handle.remove()
    if samples == 0:
        raise ValueError("probe holds no batches")
    if samples < 2:
        raise ValueError(
            "compare_cka needs at least 2 probe inputs (CKA compares how layers arrange the "
            "samples); give more"
        )
    grams = {
        side: [centered_gram(torch.cat(features.pop((side, i)))) for i in range(len(modules[side]))]
        for side in "ab"
    }
    matrix = cka_matrix(grams["a"], grams["b"])
    seconds = time.perf_counter() - started
    logged = None
    if writer is not None:
        logged = tag
        writer.add_cka_matrix(
            tag,
            matrix,
            shown["a"],
            shown["b"],
            global_step=global_step,
            row_name=names[0],
            col_name=names[1],
            samples=samples,
            seconds=seconds,
        )
    return CkaComparison(matrix, shown["a"], shown["b"], samples, logged, seconds)
