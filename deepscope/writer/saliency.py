"""Saliency summaries: the `saliency_pb` builder and `SummaryWriter.add_saliency`.

One step of a saliency series is a blob sequence whose first blob is a
serialized `SaliencyStep`: the raw inputs and maps (float16, so colour maps,
sign modes and clipping are chosen in the tab, not baked in), the labels,
predictions and each method's extras. The tag's first event carries
`SaliencyInfo(method, input_shape)` in its metadata. Token series (text
models) store the token ids (int64 [N, L]), one map value per token, the
token texts when given, and `SaliencyInfo.input_kind = "tokens"` with the
reduction over the embedding dim.

Maps from any method are accepted as they are: deepscope's own, Captum's
(tensors shaped like the inputs) or numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tensorboard.compat.proto import summary_pb2

from deepscope import metadata
from deepscope.analysis.saliency.token_embeddings import REDUCTION_TEXT, TOKEN_REDUCTIONS
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import blob_sequence_summary

# float16 keeps ~3 significant digits between its smallest normal number and
# its largest; values wholly outside that range are stored as float32.
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_FLOAT16_SMALLEST_NORMAL = float(np.finfo(np.float16).smallest_normal)

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _numpy(name: str, values: object) -> np.ndarray:
    """A tensor, array or nested list as a numpy array (detached, on the CPU)."""
    if isinstance(values, (tuple, list)) and values and isinstance(values[0], torch.Tensor):
        raise TypeError(
            f"{name} is a sequence of {len(values)} tensors (Captum returns a tuple for "
            "models with several inputs): log each input's maps under its own tag"
        )
    if isinstance(values, torch.Tensor):
        values = values.detach()
        if values.is_floating_point() and values.dtype not in (torch.float16, torch.float32):
            values = values.float()  # bfloat16 and float64 → float32 before numpy
        return values.cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a tensor or an array, got {type(values).__name__}"
        ) from error


def compact_float_array(values: np.ndarray) -> pb.Array:
    """Encode float values as FLOAT16, or as FLOAT32 when float16 would lose them.

    float16 loses the values when the largest finite magnitude exceeds its
    maximum (65504: they would turn infinite) or is below its smallest normal
    number (6.1e-5: they would lose their digits, e.g. tiny gradients).
    Non-finite values are kept as they are.
    """
    values = np.asarray(values, dtype=np.float32)
    finite = np.abs(values[np.isfinite(values)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest > _FLOAT16_MAX or 0.0 < largest < _FLOAT16_SMALLEST_NORMAL:
        return arrays.encode_array(values)
    return arrays.encode_array(values.astype(np.float16))


def _float_values(name: str, values: object, shape: tuple[int, ...]) -> np.ndarray:
    """`values` as floats of `shape` (size-1 dimensions broadcast), or a clear error."""
    array = _numpy(name, values)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    if array.shape != shape:
        fits = array.ndim == len(shape) and all(a in (1, s) for a, s in zip(array.shape, shape))
        if not fits:
            raise ValueError(
                f"{name} of shape {list(array.shape)} does not match the inputs' shape "
                f"{list(shape)}: give it the inputs' shape [N, ...] (size-1 dimensions, e.g. "
                "one channel, are broadcast)"
            )
        array = np.broadcast_to(array, shape)
    return array


def _per_sample(name: str, values: object, count: int, integer: bool) -> np.ndarray:
    array = _numpy(name, values).reshape(-1)
    if array.shape != (count,):
        raise ValueError(f"{name} needs one value per sample ({count}), got {array.size}")
    if integer:
        if not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise TypeError(f"{name} must be integer class indices, got dtype {array.dtype}")
        return array.astype(np.int64)
    return array.astype(np.float32)


def is_token_ids(inputs: object) -> bool:
    """Whether `inputs` are token ids: an integer batch [N, L] (maps one value per token)."""
    array = inputs.detach() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    if isinstance(array, torch.Tensor):
        integer = not (array.is_floating_point() or array.is_complex() or array.dtype == torch.bool)
    else:
        integer = np.issubdtype(array.dtype, np.integer)
    return bool(integer) and array.ndim == 2


def _token_texts(tokens: Sequence[Sequence[str]], shape: tuple[int, ...]) -> list[str]:
    """`tokens` (N lists of L strings) flattened row by row, shape checked."""
    if isinstance(tokens, str) or len(tokens) != shape[0]:
        raise ValueError(
            f"tokens must be {shape[0]} lists (one per sample) of {shape[1]} strings, got "
            f"{'a string' if isinstance(tokens, str) else f'{len(tokens)} items'}"
        )
    texts: list[str] = []
    for row, sample in enumerate(tokens):
        if isinstance(sample, str) or len(sample) != shape[1]:
            raise ValueError(
                f"tokens[{row}] must be {shape[1]} strings (one per token), got "
                f"{'a string' if isinstance(sample, str) else len(sample)}"
            )
        texts.extend(str(text) for text in sample)
    return texts


def saliency_step(
    inputs: ArrayLike,
    maps: ArrayLike,
    labels: ArrayLike | None = None,
    predictions: ArrayLike | None = None,
    baseline: ArrayLike | None = None,
    baseline_maps: ArrayLike | None = None,
    completeness_error: ArrayLike | None = None,
    tokens: Sequence[Sequence[str]] | None = None,
) -> pb.SaliencyStep:
    """One step's `SaliencyStep`, shapes checked.

    Args:
      inputs: the probe inputs [N, ...] (e.g. [N, C, H, W] images), or token ids:
        an integer [N, L], stored as INT64.
      maps: the saliency maps, shaped like the inputs (size-1 dims broadcast);
        for token ids one value per token [N, L].
      labels, predictions: class indices [N].
      baseline: baseline inputs [N, ...], or one shared by all samples ([1, ...] or
        one sample's shape), stored [1, ...]. Not for token ids.
      baseline_maps: maps at the baseline, shaped like the inputs.
      completeness_error: [N] (integrated gradients).
      tokens: for token ids, the texts of the tokens: N lists of L strings.
    """
    input_array = _numpy("inputs", inputs)
    if input_array.ndim < 2 or input_array.shape[0] == 0:
        raise ValueError(
            f"inputs must be a batch [N, ...] of at least one sample, got shape "
            f"{list(input_array.shape)}; for one sample pass inputs[None]"
        )
    shape, count = input_array.shape, input_array.shape[0]
    token_ids = is_token_ids(input_array)
    if tokens is not None and not token_ids:
        raise ValueError(
            f"tokens= names the tokens of token-id inputs (an integer [N, L]); these inputs "
            f"are {input_array.dtype} of shape {list(shape)}"
        )
    if token_ids:
        if baseline is not None:
            raise ValueError(
                "a baseline is not stored for token ids (it lives in embedding space); "
                "name it in the method or description instead"
            )
        stored_inputs = arrays.encode_array(input_array.astype(np.int64))
    else:
        stored_inputs = compact_float_array(_float_values("inputs", input_array, shape))
    map_array = _float_values("maps", maps, shape)
    step = pb.SaliencyStep(inputs=stored_inputs, maps=compact_float_array(map_array))
    if tokens is not None:
        step.token_texts.extend(_token_texts(tokens, shape))
    non_finite = int(np.count_nonzero(~np.isfinite(map_array.astype(np.float32))))
    if labels is not None:
        step.labels.CopyFrom(arrays.encode_array(_per_sample("labels", labels, count, True)))
    if predictions is not None:
        step.predictions.CopyFrom(
            arrays.encode_array(_per_sample("predictions", predictions, count, True))
        )
    if baseline is not None:
        base = _numpy("baseline", baseline)
        if base.ndim < len(shape):  # one sample's shape (or less): shared by all samples
            base = base.reshape((1,) * (len(shape) - base.ndim) + base.shape)
        base_shape = (1 if base.shape[:1] == (1,) else count,) + shape[1:]
        step.baseline.CopyFrom(compact_float_array(_float_values("baseline", base, base_shape)))
    if baseline_maps is not None:
        base_maps = _float_values("baseline_maps", baseline_maps, shape)
        step.baseline_maps.CopyFrom(compact_float_array(base_maps))
        non_finite += int(np.count_nonzero(~np.isfinite(base_maps.astype(np.float32))))
    if completeness_error is not None:
        step.completeness_error.CopyFrom(
            arrays.encode_array(_per_sample("completeness_error", completeness_error, count, False))
        )
    step.non_finite = non_finite
    return step


def saliency_plugin_data(
    method: str | None,
    input_shape: Sequence[int],
    input_kind: str = "",
    token_reduction: str = "",
) -> pb.PluginData:
    """The `PluginData` of a saliency series: its method ("" if unknown), one input's shape,
    and for token ids input_kind "tokens" and how the maps were reduced per token."""
    return pb.PluginData(
        kind=pb.SALIENCY,
        saliency=pb.SaliencyInfo(
            method=method or "",
            input_shape=[int(s) for s in input_shape],
            input_kind=input_kind,
            token_reduction=token_reduction,
        ),
    )


def _series_facts(
    step: pb.SaliencyStep, method: str | None, token_reduction: str | None
) -> tuple[str, list[int], str, str]:
    """(method, input shape, input kind, token reduction) of the series a step belongs to."""
    tokens = step.inputs.dtype == pb.INT64
    if token_reduction and not tokens:
        raise ValueError("token_reduction= is for token-id inputs (an integer [N, L])")
    if tokens and not token_reduction:
        rule = TOKEN_REDUCTIONS.get(method or "")
        token_reduction = REDUCTION_TEXT[rule] if rule else ""
    return (
        method or "",
        [int(s) for s in step.inputs.shape[1:]],
        "tokens" if tokens else "",
        token_reduction or "",
    )


def saliency_pb(
    tag: str,
    inputs: ArrayLike,
    maps: ArrayLike,
    labels: ArrayLike | None = None,
    predictions: ArrayLike | None = None,
    method: str | None = None,
    baseline: ArrayLike | None = None,
    baseline_maps: ArrayLike | None = None,
    completeness_error: ArrayLike | None = None,
    description: str = "",
    tokens: Sequence[Sequence[str]] | None = None,
    token_reduction: str | None = None,
) -> summary_pb2.Summary:
    """A `Summary` with one step of saliency maps, its metadata included.

    For other writers: `file_writer.add_summary(saliency_pb(...), step)`.
    Arguments as `saliency_step`; `method` names how the maps were made
    (free text for maps computed elsewhere, e.g. "captum.Saliency");
    `token_reduction` how per-token maps were reduced over the embedding dim
    (default: deepscope's rule for `method`).
    """
    step = saliency_step(
        inputs, maps, labels, predictions, baseline, baseline_maps, completeness_error, tokens
    )
    plugin_data = saliency_plugin_data(*_series_facts(step, method, token_reduction))
    return blob_sequence_summary(tag, [step.SerializeToString()], plugin_data, description)


class SaliencySummaries:
    """Mixin of `deepscope.SummaryWriter`: the saliency `add_*` methods.

    Needs the writer core's `_write` and `_series_plugin_data`.
    """

    def add_saliency(
        self,
        tag: str,
        inputs: ArrayLike,
        maps: ArrayLike,
        global_step: int | None = None,
        walltime: float | None = None,
        labels: ArrayLike | None = None,
        predictions: ArrayLike | None = None,
        method: str | None = None,
        baseline: ArrayLike | None = None,
        baseline_maps: ArrayLike | None = None,
        completeness_error: ArrayLike | None = None,
        description: str = "",
        tokens: Sequence[Sequence[str]] | None = None,
        token_reduction: str | None = None,
    ) -> None:
        """Log one step of saliency maps of a batch of inputs, both stored raw (float16).

        Token series: `inputs` are token ids (an integer [N, L], stored as int64),
        `maps` one value per token [N, L], `tokens` optionally their texts (N
        lists of L strings), `token_reduction` how each token's embedding
        attribution became one value (default: deepscope's rule for `method`).

        Args:
          tag: the series, e.g. "digits" or "saliency/gradient"; one method and
            one input shape per tag.
          inputs: the inputs [N, ...] (tensor or array).
          maps: their saliency maps from any method (deepscope's, Captum's,
            numpy), shaped like the inputs; non-finite values are kept and counted.
          global_step, walltime: as torch's `add_*`.
          labels, predictions: class indices [N], shown with each sample.
          method: how the maps were made, e.g. "integrated_gradients".
          baseline, baseline_maps: the baseline input and its maps (baseline_delta).
          completeness_error: [N] integrated gradients' Σmaps − (f(x) − f(baseline)).
          description: shown next to the tag.

        Raises:
          ValueError: shapes do not match, or the tag already holds another
            method's maps or another input shape.
        """
        summary_pb = saliency_pb(
            tag,
            inputs,
            maps,
            labels,
            predictions,
            method,
            baseline,
            baseline_maps,
            completeness_error,
            description,
            tokens,
            token_reduction,
        )
        known = self._series_plugin_data(tag)
        if known is not None and known.kind == pb.SALIENCY:
            info = metadata.parse_plugin_data(summary_pb.value[0].metadata.plugin_data.content)
            if info.saliency != known.saliency:
                raise ValueError(
                    f"tag {tag!r} holds {_said(known.saliency)}; log {_said(info.saliency)} "
                    "under another tag"
                )
        self._write(summary_pb, global_step, walltime)


def _said(info: pb.SaliencyInfo) -> str:
    """A series' method and input shape, in words."""
    kind = "token ids" if info.input_kind == "tokens" else "inputs"
    return f"{info.method or 'unnamed'} maps of {kind} shaped {list(info.input_shape)}"
