"""Running probe batches through a model and catching its layers' outputs.

Shared by `compare()` and watch()'s correlation measurer: what a probe is (a
tensor, an (inputs, labels) tuple, a mapping of inputs, or batches of those),
moving it to the model's device, one forward pass, a layer's output tensor and
its channel dim by the default rule, and eval mode without gradients for the
duration, with every module's mode restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch

from deepscope.analysis.correlation import default_channel_dim, is_channels_first_module
from deepscope.module_names import is_compiled, strip_compile_prefix

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
