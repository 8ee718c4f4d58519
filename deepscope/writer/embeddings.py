"""A layer's outputs on probe samples, as embeddings in TensorBoard's Projector tab.

`log_embeddings(writer, model, layer, probe, labels=..., images=...)` runs the
probe through the model once, catches the layer's output, pools it to one
vector per sample and writes the vectors with TensorBoard's own
`SummaryWriter.add_embedding` (torch's; `deepscope.SummaryWriter` is one), so
that the Projector tab shows them with its PCA, t-SNE and UMAP, coloured and
labelled by the metadata, each point drawn as its sprite image.

The pass: the eager module (torch.compile's wrapper is looked through) in
eval mode (batch norm on running statistics, dropout off) under
`torch.no_grad()`; every module's training mode and the CPU and CUDA RNG
states are restored after, and nothing touches a parameter's `.grad`.

Pooling, one vector per sample from the layer's output (its first tensor by
`probe.layer_output`'s rule; the samples are dim 0):

- (N, D): as is, whatever `pooling` says.
- (N, C, *positions) for 4-d and larger outputs, and 3-d outputs of
  channels-first modules (Conv1d, BatchNorm1d, pools; the channel dim by the
  rule of `deepscope.analysis.correlation.default_channel_dim`): the
  positions (H, W, ...) are pooled, one vector of C per sample.
- (N, L, C) for other 3-d outputs (a transformer's hidden states): the L
  positions (tokens) are pooled. When the probe batch is a mapping with an
  `attention_mask` of shape (N, L), "mean" and "max" pool the unmasked
  positions only (padding left out).

`pooling`: "mean" (the default), "max", "first" (alias "cls": the first
position, a BERT-style [CLS] token), "flatten" (every value: reshape to
(N, -1), the positions and channels in memory order), or a function taking
the output tensor and returning (N, D). `channel_dim=` overrides the rule.
Vectors are float32 (float64 outputs stay float64); half and bfloat16
outputs are pooled in float32.

What is written (torch's layout; the run is the writer's log dir):
`projector_config.pbtxt` (one entry per logged embedding, tensor name
"<tag>:<step, 5 digits>"), and in `<step:05d>/<tag with / as %2f>/`:
`tensors.tsv` (the vectors, one row per sample, tab-separated, each value
written exactly), `metadata.tsv` and, with images, `sprite.png`.

Metadata: one column "index" (the sample's position in the probe) when no
labels are given (one column: no header, the projector's convention); with
labels, a header and the columns "label", with `class_names` "class" (the
label's name), and "index" (the projector labels points by the first
column). Tabs and newlines in labels are written as spaces. The projector
colours by a categorical column of at most 50 values.

Sprite images, one per sample: `images` (N, H, W), (N, 1|3, H, W) or
(N, H, W, 1|3); None takes the probe's inputs when they are image-like
(float (N, 1|3, H, W)); False writes none. Scaling: uint8 / 255, bool as
0/1, floats within [0, 1] as they are, other floats min–max scaled over all
the images together to [0, 1] (one scale: relative brightness kept).
Non-square images are padded to squares with black (the projector's sprite
is a square grid of square cells), and shrunk by area averaging when the
grid would exceed SPRITE_MAX_PIXELS on a side (TensorBoard's limit).
"""

from __future__ import annotations

import difflib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepscope import module_names
from deepscope.writer.probe import (
    ProbeBatch,
    batch_to,
    layer_channel_dim,
    layer_output,
    model_device,
    not_called_message,
    probing,
    reused_module_error,
    run_probe,
)

POOLINGS = ("mean", "max", "first", "cls", "flatten")
DEFAULT_TAG = "embeddings"
SPRITE_MAX_PIXELS = 8192  # TensorBoard's projector: a sprite at most 8192 x 8192 pixels
ROOT_NAME = "(model)"  # the tag's layer name for the model itself (module name "")
_NAMES_SUGGESTED = 3
_LISTED = 20

Pooling = str | Callable[[torch.Tensor], torch.Tensor]
LayerSpec = str | torch.nn.Module


@dataclass
class LoggedEmbedding:
    """One embedding written by `log_embeddings` (or the `Embeddings` measurer).

    tag: the tag given to `add_embedding` ("embeddings/<layer>" by default).
    step: the global step (0 when none was given, as torch's add_embedding does).
    tensor_name: the projector's name of the tensor, "<tag>:<step:05d>".
    layer: the layer's module name as users know it ("" for the model itself).
    vectors: the pooled vectors written, numpy (N, D), float32 (float64 for a
      float64 layer).
    metadata: the metadata rows written (header first when there is one).
    sprite: whether a sprite image was written.
    directory: the folder holding tensors.tsv, metadata.tsv and sprite.png.
    bytes: the size of those files, bytes (the storage of this embedding; the
      projector_config.pbtxt is rewritten whole and not counted).
    seconds: host seconds it took to write them (the probe pass not included).
    """

    tag: str
    step: int
    tensor_name: str
    layer: str
    vectors: np.ndarray
    metadata: list[str]
    sprite: bool
    directory: Path
    bytes: int
    seconds: float


# --------------------------------------------------------------------------- pooling


def check_pooling(pooling: object) -> Pooling:
    """`pooling` if it is one of POOLINGS or callable; ValueError otherwise."""
    if callable(pooling) or (isinstance(pooling, str) and pooling in POOLINGS):
        return pooling  # type: ignore[return-value]
    raise ValueError(
        f"pooling must be one of {list(POOLINGS)} or a function of the layer's output "
        f"returning (N, D), got {pooling!r}"
    )


def pool(
    output: torch.Tensor,
    pooling: Pooling = "mean",
    channel_dim: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """One vector per sample from a layer's output (N, ...): (N, D), on its device.

    `channel_dim` is the output's channel dim (>= 1; the others after dim 0
    are positions, pooled); `mask` (N, positions), for a (N, L, C) output,
    marks the positions "mean" and "max" use (an all-zero row pools to 0).
    Half and bfloat16 are pooled in float32; the result is float32 (float64
    for float64 outputs). See the module doc for the rules.
    """
    pooling = check_pooling(pooling)
    if callable(pooling):
        vectors = pooling(output)
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2:
            raise ValueError(
                "a pooling function must return a 2-d tensor (N, D) of one vector per sample, "
                f"got {type(vectors).__name__}"
                + (f" of shape {tuple(vectors.shape)}" if isinstance(vectors, torch.Tensor) else "")
            )
        if vectors.shape[0] != output.shape[0]:
            raise ValueError(
                f"the pooling function returned {vectors.shape[0]} vectors for "
                f"{output.shape[0]} samples"
            )
        return _as_vector_dtype(vectors)
    if output.ndim < 2:
        raise ValueError(
            f"the layer's output has shape {tuple(output.shape)}: an embedding needs at least "
            "2 dims (samples, features), one number per sample is not a vector"
        )
    if output.is_complex():
        raise TypeError(f"the layer's output is {output.dtype}, not real numbers")
    x = _as_vector_dtype(output)
    if x.ndim == 2:
        return x
    if pooling == "flatten":
        return x.reshape(x.shape[0], -1)
    channel_dim = channel_dim % x.ndim if -x.ndim <= channel_dim < x.ndim else channel_dim
    if not 1 <= channel_dim < x.ndim:
        raise ValueError(
            f"channel_dim {channel_dim} is not a dim of the layer's output after the samples' "
            f"(dim 0), shape {tuple(x.shape)}"
        )
    x = x.movedim(channel_dim, -1).reshape(x.shape[0], -1, x.shape[channel_dim])  # (N, P, C)
    if pooling in ("first", "cls"):
        return x[:, 0].contiguous()
    if mask is not None:
        keep = mask.to(device=x.device, dtype=torch.bool).reshape(x.shape[0], -1, 1)
        if pooling == "mean":
            count = keep.sum(dim=1).clamp(min=1).to(x.dtype)
            return torch.where(keep, x, 0).sum(dim=1) / count
        lowest = torch.finfo(x.dtype).min
        pooled = torch.where(keep, x, lowest).amax(dim=1)
        return torch.where(keep.any(dim=1), pooled, 0)
    if pooling == "mean":
        return x.mean(dim=1)
    return x.amax(dim=1)


def _as_vector_dtype(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float64:
        return x
    return x.to(torch.float32)


def _sequence_mask(batch: ProbeBatch, output: torch.Tensor, channel_dim: int):
    """The batch's attention mask when it masks the positions of a (N, L, C) output."""
    if not isinstance(batch, Mapping) or output.ndim != 3 or channel_dim % 3 != 2:
        return None
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(output.shape[:2]):
        return mask
    return None


# --------------------------------------------------------------------------- layers


def resolve_layer(
    model: torch.nn.Module, layer: LayerSpec, what: str
) -> tuple[str, torch.nn.Module]:
    """(user name, module) of `layer`: a module of `model`, or its name.

    Names are as in `model.named_modules()` without torch.compile's
    `_orig_mod.` ("" is the model itself); a raw name with `_orig_mod.` works.

    Raises:
      TypeError: not a name or a module.
      ValueError: an unknown name (close matches suggested), or a module that
        is not part of `model`.
    """
    modules = dict(module_names.named_modules(model))
    if isinstance(layer, torch.nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        wrapped = module_names.eager_module(layer)
        for name, module in modules.items():
            if module is wrapped:
                return name, module
        raise ValueError(
            f"{what}: the module given ({type(layer).__name__}) is not a submodule of the "
            "model; pass one of its modules or its name as in model.named_modules()"
        )
    if not isinstance(layer, str):
        raise TypeError(
            f"{what}: a layer is a module of the model or its name (a str), "
            f"got {type(layer).__name__}"
        )
    name = module_names.strip_compile_prefix(layer)
    if name in modules:
        return name, modules[name]
    known = [k for k in modules if k]
    close = difflib.get_close_matches(name, known, n=_NAMES_SUGGESTED)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    listed = ", ".join(known[:_LISTED])
    if len(known) > _LISTED:
        listed += f", ... and {len(known) - _LISTED} more"
    raise ValueError(
        f"{what}: no module named {layer!r}{hint}; names are as in model.named_modules() "
        f'("" for the model itself): {listed or "(the model has no submodules)"}'
    )


def default_tag(layer_name: str) -> str:
    """The default tag of a layer's embeddings: "embeddings/<layer>" ("(model)" for "")."""
    return f"{DEFAULT_TAG}/{layer_name or ROOT_NAME}"


# --------------------------------------------------------------------------- probe


@dataclass
class Probe:
    """A probe split into input batches, with its labels and images when it carries them.

    batches: the input batches (tensors, or mappings of tensors for `model(**batch)`).
    sizes: the samples in each batch.
    labels: the labels of every sample (from (inputs, labels) batches or a
      mapping's "labels"), concatenated; None when some batch has none.
    images: the inputs concatenated when they are image-like (float
      (N, 1|3, H, W)), else None.
    """

    batches: list[ProbeBatch]
    sizes: list[int]
    labels: torch.Tensor | None
    images: torch.Tensor | None

    @property
    def samples(self) -> int:
        return sum(self.sizes)


def split_probe(probe) -> Probe:
    """The batches of `probe`: a tensor, an (inputs, labels) tuple, a mapping of inputs,
    or an iterable (a list, a DataLoader) of those. TypeError/ValueError when it is not."""
    if isinstance(probe, (torch.Tensor, Mapping)) or (
        isinstance(probe, tuple) and probe and isinstance(probe[0], torch.Tensor)
    ):
        items: list = [probe]
    elif isinstance(probe, Iterable) and not isinstance(probe, (str, bytes)):
        items = list(probe)
    else:
        raise TypeError(
            "probe must be a tensor of inputs, an (inputs, labels) tuple, a mapping of input "
            f"tensors, or an iterable of such batches, got {type(probe).__name__}"
        )
    if not items:
        raise ValueError("the probe holds no batches")
    batches, sizes, labels = [], [], []
    for item in items:
        label = None
        if isinstance(item, (tuple, list)) and item and not isinstance(item[0], (int, float)):
            if len(item) > 1 and isinstance(item[1], torch.Tensor):
                label = item[1]
            item = item[0]
        if isinstance(item, Mapping):
            if not item or not all(isinstance(v, torch.Tensor) for v in item.values()):
                raise TypeError(
                    "a probe batch given as a mapping must map input names to tensors "
                    f"(e.g. input_ids, attention_mask), got {dict(item)!r:.200}"
                )
            item = dict(item)
            first = next(iter(item.values()))
            label = item.get("labels") if label is None else label
            size = first.shape[0] if first.ndim else 0
        elif isinstance(item, torch.Tensor):
            size = item.shape[0] if item.ndim else 0
        else:
            raise TypeError(
                "each probe batch must be a tensor of inputs, an (inputs, labels) pair or a "
                f"mapping of input tensors, got {type(item).__name__}"
            )
        if size == 0:
            raise ValueError("a probe batch holds no samples (its first dim is 0 or missing)")
        if label is not None and tuple(label.shape[:1]) != (size,):
            label = None  # not one label per sample: not labels
        batches.append(item)
        sizes.append(size)
        labels.append(label)
    images = None
    if all(isinstance(b, torch.Tensor) and _image_like(b) for b in batches):
        images = torch.cat([b.detach().cpu() for b in batches])  # type: ignore[misc]
    joined = None
    if all(label is not None and label.ndim == 1 for label in labels):
        joined = torch.cat([label.detach().cpu() for label in labels])  # type: ignore[union-attr]
    return Probe(batches, sizes, joined, images)


def _image_like(x: torch.Tensor) -> bool:
    return x.ndim == 4 and x.is_floating_point() and x.shape[1] in (1, 3)


# --------------------------------------------------------------------------- the pass


def compute_embeddings(
    model: torch.nn.Module,
    layers: Mapping[str, torch.nn.Module],
    probe: Probe,
    pooling: Pooling = "mean",
    channel_dims: Mapping[str, int] | None = None,
    what: str = "log_embeddings",
) -> dict[str, torch.Tensor]:
    """Layer name → its pooled vectors (N, D) on the CPU, from one pass of the probe.

    The eager module runs each batch (moved to the model's device) in eval
    mode under no_grad; modes and RNG states are restored after.

    Raises:
      RuntimeError: a layer did not run, or ran more than once per batch.
      ValueError: a layer's output is not one row per sample, or cannot be pooled.
    """
    channel_dims = dict(channel_dims or {})
    eager = module_names.eager_module(model)
    device = model_device(model)
    pooled: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    calls: dict[str, int] = {}
    errors: list[BaseException] = []
    current: dict = {}

    def hook_for(name: str, module: torch.nn.Module):
        def hook(_module, _args, output):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] > 1 or errors:
                return
            try:
                tensor = layer_output(output)
                dim = 1  # (pool says what is wrong with fewer than 2 dims)
                if tensor.ndim >= 2:
                    dim = layer_channel_dim(tensor, module, channel_dims.get(name))
                mask = _sequence_mask(current["batch"], tensor, dim)
                vectors = pool(tensor.detach(), pooling, dim, mask)
                if vectors.shape[0] != current["size"]:
                    raise ValueError(
                        f"layer {name!r}: its output has shape {tuple(tensor.shape)}, "
                        f"{vectors.shape[0]} rows for a batch of {current['size']} samples; "
                        "its first dim is not the samples (name another layer or give a "
                        "pooling function)"
                    )
                pooled[name].append(vectors)
            except BaseException as error:  # raised after the pass, with the modes restored
                errors.append(error)

        return hook

    handles = [m.register_forward_hook(hook_for(n, m)) for n, m in layers.items()]
    try:
        with torch.random.fork_rng(devices=_cuda_devices(device), enabled=True), probing(model):
            for batch, size in zip(probe.batches, probe.sizes):
                calls.clear()
                current["batch"], current["size"] = batch_to(batch, device), size
                run_probe(eager, current["batch"])
                if errors:
                    raise errors[0]
                reused = [n for n, c in calls.items() if c > 1]
                if reused:
                    raise reused_module_error(reused[0])
                missing = [n for n in layers if n not in calls]
                if missing:
                    raise RuntimeError(not_called_message(model, missing, what))
    finally:
        for handle in handles:
            handle.remove()
        current.clear()
    return {name: torch.cat(parts).cpu() for name, parts in pooled.items()}


def _cuda_devices(device: torch.device | None) -> list[int]:
    if device is not None and device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


# --------------------------------------------------------------------------- labels, images


def metadata_rows(
    samples: int, labels=None, class_names: Sequence[str] | None = None
) -> tuple[list, list[str] | None]:
    """(rows, header) for `add_embedding`'s metadata: see the module doc.

    `labels`: one per sample, a 1-d tensor or array of ints, or a sequence of
    ints or strings. `class_names[label]` names integer labels 0..K-1.

    Raises:
      ValueError: not one label per sample, class names without labels, or a
        label outside 0..len(class_names)-1.
    """
    if class_names is not None:
        if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
            raise TypeError(f"class_names must be a sequence of strings, got {class_names!r:.200}")
        class_names = list(class_names)
    if labels is None:
        if class_names is not None:
            raise ValueError(
                "class_names name the labels, but there are none: pass labels=... (or a probe "
                "of (inputs, labels))"
            )
        return [str(i) for i in range(samples)], None
    values = _label_list(labels)
    if len(values) != samples:
        raise ValueError(f"labels holds {len(values)} labels for {samples} probe samples")
    header = ["label"]
    rows = [[_clean(v)] for v in values]
    if class_names is not None:
        header.append("class")
        for row, value in zip(rows, values):
            index = _class_index(value)
            if index is None or not 0 <= index < len(class_names):
                raise ValueError(
                    f"label {value!r} is not a class index 0..{len(class_names) - 1} of "
                    f"class_names ({len(class_names)} names)"
                )
            row.append(_clean(class_names[index]))
    header.append("index")
    for i, row in enumerate(rows):
        row.append(str(i))
    return rows, header


def _label_list(labels) -> list:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-d, one per sample, got shape {labels.shape}")
        return labels.tolist()
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise TypeError(
            "labels must be a 1-d tensor or array, or a sequence of ints or strings, one per "
            f"sample, got {type(labels).__name__}"
        )
    return list(labels)


def _class_index(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _clean(value) -> str:
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def sprite_images(images, samples: int) -> torch.Tensor:
    """`images` as torch's `add_embedding` wants them: float32 (N, 1|3, S, S) in [0, 1].

    See the module doc for the shapes accepted and the scaling.

    Raises:
      TypeError: not a tensor or array of numbers.
      ValueError: not one image per sample, a shape that is not an image, or
        non-finite values.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a tensor or numpy array (N, H, W) or (N, C, H, W), got "
            f"{type(images).__name__}"
        )
    x = images.detach().cpu()
    if x.is_complex():
        raise TypeError(f"images must be real numbers, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # channels last (N, H, W, C)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(
            "images must be (N, H, W), (N, 1|3, H, W) or (N, H, W, 1|3): grayscale or RGB, "
            f"got shape {tuple(images.shape)}"
        )
    if x.shape[0] != samples:
        raise ValueError(f"images holds {x.shape[0]} images for {samples} probe samples")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"images are empty, shape {tuple(images.shape)}")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255
    else:
        x = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        if not torch.isfinite(x).all():
            raise ValueError("images hold non-finite values (NaN or infinity)")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            x = (x - low) / (high - low) if high > low else torch.zeros_like(x)
        x = x.to(torch.float32)
    height, width = x.shape[2], x.shape[3]
    side = max(height, width)
    if height != width:  # black padding to a square, the image centred
        top, left = (side - height) // 2, (side - width) // 2
        square = torch.zeros((x.shape[0], x.shape[1], side, side), dtype=x.dtype)
        square[:, :, top : top + height, left : left + width] = x
        x = square
    per_row = math.ceil(math.sqrt(samples))
    if per_row * side > SPRITE_MAX_PIXELS:
        x = torch.nn.functional.interpolate(x, size=SPRITE_MAX_PIXELS // per_row, mode="area")
    return x.contiguous()


# --------------------------------------------------------------------------- writing


def check_writer(writer) -> None:
    """TypeError unless `writer` is a torch SummaryWriter (deepscope's is one)."""
    from torch.utils.tensorboard import SummaryWriter as TorchSummaryWriter

    if not isinstance(writer, TorchSummaryWriter):
        raise TypeError(
            "writer must be a torch.utils.tensorboard.SummaryWriter (deepscope.SummaryWriter "
            f"is one), got {type(writer).__name__}"
        )


def check_step(global_step) -> int:
    """`global_step` as an int >= 0 (None → 0, as torch's add_embedding does)."""
    if global_step is None:
        return 0
    if isinstance(global_step, bool) or not hasattr(global_step, "__index__"):
        raise TypeError(f"global_step must be an int, got {global_step!r}")
    step = int(global_step.__index__())
    if step < 0:
        raise ValueError(f"global_step must be >= 0, got {step}")
    return step


def write_embedding(
    writer,
    vectors: torch.Tensor,
    tag: str,
    step: int,
    layer: str,
    rows: list,
    header: list[str] | None,
    sprite: torch.Tensor | None,
) -> LoggedEmbedding:
    """Write one embedding with `writer.add_embedding` and say what was written.

    Raises:
      ValueError: non-finite vectors (the projector cannot place them), or the
        tag already logged at this step by this writer (the projector would
        list two tensors of one name); nothing is written then.
    """
    values = vectors.detach().cpu().numpy()
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).any(axis=1).sum())
        raise ValueError(
            f"{tag} at step {step}: {bad} of {values.shape[0]} vectors hold non-finite values "
            "(NaN or infinity), which the projector cannot place; nothing was written"
        )
    name = f"{tag}:{str(step).zfill(5)}"
    config = getattr(writer, "_projector_config", None)
    if config is not None and any(e.tensor_name == name for e in config.embeddings):
        raise ValueError(
            f"{tag!r} was already logged at step {step} by this writer: give another "
            "global_step or tag (the projector would list two tensors named "
            f"{name!r}); nothing was written"
        )
    began = time.perf_counter()
    writer.add_embedding(
        values,
        metadata=rows,
        label_img=sprite,
        global_step=step,
        tag=tag,
        metadata_header=header,
    )
    seconds = time.perf_counter() - began
    directory = (
        Path(writer._get_file_writer().get_logdir()) / str(step).zfill(5) / writer._encode(tag)
    )
    files = ("tensors.tsv", "metadata.tsv", "sprite.png")
    size = sum(os.path.getsize(directory / f) for f in files if (directory / f).exists())
    lines = ["\t".join(header)] if header else []
    lines += ["\t".join(row) if isinstance(row, list) else row for row in rows]
    return LoggedEmbedding(
        tag=tag,
        step=step,
        tensor_name=name,
        layer=layer,
        vectors=values,
        metadata=lines,
        sprite=sprite is not None,
        directory=directory,
        bytes=size,
        seconds=seconds,
    )


def prepared_images(images, probe: Probe) -> torch.Tensor | None:
    """The sprite images: `images`, the probe's own when None and image-like, none for False."""
    if images is False:
        return None
    if images is None or images is True:
        if probe.images is None:
            if images is True:
                raise ValueError(
                    "images=True takes the probe's inputs as images, but they are not "
                    "image-like float (N, 1|3, H, W) tensors: pass images=..."
                )
            return None
        images = probe.images
    return sprite_images(images, probe.samples)


def log_embeddings(
    writer,
    model: torch.nn.Module,
    layer: LayerSpec,
    probe,
    labels=None,
    images=None,
    global_step: int | None = None,
    *,
    class_names: Sequence[str] | None = None,
    pooling: Pooling = "mean",
    channel_dim: int | None = None,
    tag: str | None = None,
) -> LoggedEmbedding:
    """Write `layer`'s outputs on `probe`, one vector per sample, for TensorBoard's Projector.

    One pass of the probe through the model (eval mode, no gradients; modes,
    RNG states and `.grad` as they were), the layer's output pooled by the
    module doc's rule, written with `writer.add_embedding` under `tag` at
    `global_step`: tensors.tsv, metadata.tsv and sprite.png in the run's
    `<step:05d>/<tag>/` folder, listed in its projector_config.pbtxt.

    Args:
      writer: a torch `SummaryWriter` (`deepscope.SummaryWriter` is one).
      model: the network (a torch.compile'd one too).
      layer: the module whose output is embedded, or its name as in
        `model.named_modules()` ("" for the model's own output).
      probe: the samples: a tensor (N, ...), an (inputs, labels) tuple, a
        mapping of input tensors (`model(**batch)`), or a list or DataLoader
        of those (concatenated, in order).
      labels: one per sample (ints or strings); None takes the probe's own
        labels when its batches are (inputs, labels) tuples.
      images: sprite images, one per sample (see the module doc); None uses
        image-like probe inputs; False writes none.
      global_step: the step (None: 0, as torch's add_embedding does).
      class_names: names of integer labels 0..K-1 (a "class" column).
      pooling: "mean", "max", "first" / "cls", "flatten", or a function of
        the output tensor returning (N, D).
      channel_dim: the output's channel dim, overriding the rule.
      tag: the embedding's tag (default "embeddings/<layer>").

    Returns:
      A `LoggedEmbedding`: the vectors written, where, and their size.

    Raises:
      TypeError / ValueError: bad arguments (an unknown layer name lists close
        matches); RuntimeError: the layer did not run on the probe, or ran
        twice in one forward pass.
    """
    check_writer(writer)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name, module = resolve_layer(model, layer, "log_embeddings")
    pooling = check_pooling(pooling)
    step = check_step(global_step)
    if tag is None:
        tag = default_tag(name)
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string, got {tag!r}")
    if channel_dim is not None and (
        isinstance(channel_dim, bool) or not isinstance(channel_dim, int)
    ):
        raise TypeError(f"channel_dim must be an int or None, got {channel_dim!r}")
    batches = split_probe(probe)
    if labels is None:
        labels = batches.labels
    rows, header = metadata_rows(batches.samples, labels, class_names)
    sprite = prepared_images(images, batches)
    dims = {} if channel_dim is None else {name: channel_dim}
    vectors = compute_embeddings(model, {name: module}, batches, pooling, dims)[name]
    return write_embedding(writer, vectors, tag, step, name, rows, header, sprite)


__all__ = [
    "DEFAULT_TAG",
    "POOLINGS",
    "SPRITE_MAX_PIXELS",
    "LoggedEmbedding",
    "log_embeddings",
    "pool",
]
