"""Filters and feature maps as images: `filters_pb`, `feature_maps_pb` and their `add_*`.

One kind ("filters"), two sources, because both are a stack of 2-d images that
the tab draws the same way (a grid of tiles, a colour scale per tile or shared,
a diverging map for signed values, hover naming the tile's indices and value):

- **weights** (`add_filters`): a conv layer's weight [O, I, kH, kW] (a 1-d
  conv's [O, I, k] is one row high). With I == 3 (an RGB input layer) each
  out-channel is one RGB tile; otherwise each (out, in) pair is one grayscale
  tile. At most `max_tiles` tiles are stored a step: the first K out-channels
  whose tiles fit (at least one);
- **feature maps** (`add_feature_maps`): a layer's output on one fixed probe
  sample, [C, H, W] (or [N, C, H, W] and a sample index; [C, L] is one row
  high), one tile per channel, the first `max_tiles` channels stored.

Values are stored as measured (FLOAT16, or FLOAT32 where float16 would lose
them: see `saliency.compact_float_array`), never rescaled, so the tab chooses
the scale and a reader recovers them within float16's rounding. A step is a
blob sequence whose first blob is a `FiltersStep`; a ResNet-18 `conv1` weight
(64 × 3 × 7 × 7) costs 18.8 kB a step, a 64 × 56 × 56 feature map 401 kB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import blob_sequence_summary

# Tiles stored a step when the caller gives no cap: every tile of a
# 64 → 128 conv (8192 3×3 tiles, 147 kB in float16), the first 512 channels of a
# feature map.
DEFAULT_MAX_TILES = 8192
DEFAULT_MAX_CHANNELS = 512

_SCALES = {"per_tile": pb.FILTERS_SCALE_PER_TILE, "shared": pb.FILTERS_SCALE_SHARED}
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_FLOAT16_SMALLEST_NORMAL = float(np.finfo(np.float16).smallest_normal)


def _host_array(name: str, values: object) -> np.ndarray:
    """A tensor (any device; one host copy), array or nested list as a float32 numpy array."""
    try:
        import torch
    except ImportError:  # the builder also works with numpy only
        torch = None
    if torch is not None and isinstance(values, torch.nn.Module):
        raise TypeError(f"{name} is a {type(values).__name__}: give a tensor (or a conv module)")
    if torch is not None and isinstance(values, torch.Tensor):
        values = values.detach()
        if values.is_complex() or values.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
        if values.dtype not in (torch.float16, torch.float32):
            values = values.float()
        return values.cpu().numpy().astype(np.float32, copy=False)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a tensor or an array, got {type(values).__name__}"
        ) from error
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def compact_values(values: np.ndarray) -> pb.Array:
    """FLOAT16, or FLOAT32 when float16 would lose the values (overflow or no digits left)."""
    from deepscope.proto import arrays

    values = np.asarray(values, dtype=np.float32)
    finite = np.abs(values[np.isfinite(values)])
    largest = float(finite.max()) if finite.size else 0.0
    if largest > _FLOAT16_MAX or 0.0 < largest < _FLOAT16_SMALLEST_NORMAL:
        return arrays.encode_array(values)
    return arrays.encode_array(values.astype(np.float16))


def _check_cap(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_scale(scale: str) -> int:
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {sorted(_SCALES)}, got {scale!r}")
    return _SCALES[scale]


def filters_step(
    weight: object,
    max_tiles: int = DEFAULT_MAX_TILES,
    rgb: bool | None = None,
    seconds: float = 0.0,
) -> pb.FiltersStep:
    """One step of a conv weight's filters.

    Args:
      weight: [O, I, kH, kW] (a 2-d conv) or [O, I, k] (1-d: one row high), a
        tensor on any device (one host copy) or an array, or a conv module
        (its `.weight`).
      max_tiles: tiles stored at most: the first K out-channels with K·I ≤
        max_tiles grayscale tiles (K ≤ max_tiles RGB ones), at least one.
      rgb: one RGB tile per out-channel; None: when I == 3.

    Raises:
      ValueError: another shape, an empty weight, rgb=True without 3 input
        channels, a bad cap. TypeError: not numbers.
    """
    values = _host_array("weight", _weight_of(weight))
    if values.ndim == 3:
        values = values[:, :, None, :]
    if values.ndim != 4 or values.size == 0:
        raise ValueError(
            f"weight must be a conv weight [out, in, kH, kW] (or [out, in, k]), got shape "
            f"{list(values.shape)}"
        )
    out, inputs = values.shape[:2]
    if rgb is None:
        rgb = inputs == 3
    elif rgb and inputs != 3:
        raise ValueError(f"rgb=True needs 3 input channels, the weight has {inputs}")
    per_filter = 1 if rgb else inputs
    kept = max(1, min(out, _check_cap("max_tiles", max_tiles) // per_filter))
    values = values[:kept]
    return pb.FiltersStep(
        values=compact_values(values),
        total=out,
        rgb=bool(rgb),
        non_finite=int(np.count_nonzero(~np.isfinite(values))),
        seconds=float(seconds),
    )


def feature_maps_step(
    activations: object,
    sample: int | None = None,
    max_channels: int = DEFAULT_MAX_CHANNELS,
    seconds: float = 0.0,
) -> pb.FiltersStep:
    """One step of a layer's output channels on one probe sample.

    Args:
      activations: [C, H, W] or [C, L] (one row high) of one sample, or a batch
        [N, C, H, W] / [N, C, L] with `sample` its index (default 0).
      sample: the sample of a batch; for one sample, its index in the probe
        (stored, shown by the tab; default 0).
      max_channels: the first this many channels are stored.

    Raises:
      ValueError: another shape, a sample out of range, a bad cap.
    """
    values = _host_array("activations", activations)
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)):
        raise TypeError(f"sample must be an int index, got {sample!r}")
    index = 0 if sample is None else sample
    if values.ndim == 4:
        if not 0 <= index < values.shape[0]:
            raise ValueError(f"sample {index} is out of range for a batch of {values.shape[0]}")
        values = values[index]
    elif sample is not None and sample < 0:
        raise ValueError(f"sample must be >= 0, got {sample}")
    if values.ndim == 2:
        values = values[:, None, :]
    if values.ndim != 3 or values.size == 0:
        raise ValueError(
            "activations must be one sample's [C, H, W] (or [C, L]) or a batch [N, C, H, W] "
            f"with sample=, got shape {list(np.shape(activations))}"
        )
    channels = values.shape[0]
    values = values[: _check_cap("max_channels", max_channels)]
    return pb.FiltersStep(
        values=compact_values(values),
        total=channels,
        sample=index,
        non_finite=int(np.count_nonzero(~np.isfinite(values))),
        seconds=float(seconds),
    )


def filters_plugin_data(source: int, layer: str = "", scale: str = "per_tile") -> pb.PluginData:
    """The `PluginData` of a filters series: its source, layer name and default scale."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a string, got {layer!r}")
    return pb.PluginData(
        kind=pb.FILTERS,
        filters=pb.FiltersInfo(source=source, layer=layer, scale=_check_scale(scale)),
    )


def filters_pb(
    tag: str,
    weight: object,
    layer: str = "",
    max_tiles: int = DEFAULT_MAX_TILES,
    rgb: bool | None = None,
    scale: str = "per_tile",
    description: str = "",
    seconds: float = 0.0,
) -> summary_pb2.Summary:
    """A `Summary` with one step of a conv weight's filters, its metadata included.

    For other writers: `file_writer.add_summary(filters_pb(tag, conv.weight), step)`.
    Arguments as `filters_step`; `scale` ("per_tile" or "shared") is the tab's
    default colour scale.
    """
    plugin_data = filters_plugin_data(pb.FILTERS_SOURCE_WEIGHTS, layer, scale)
    step = filters_step(weight, max_tiles, rgb, seconds)
    return blob_sequence_summary(tag, [step.SerializeToString()], plugin_data, description)


def feature_maps_pb(
    tag: str,
    activations: object,
    sample: int | None = None,
    layer: str = "",
    max_channels: int = DEFAULT_MAX_CHANNELS,
    scale: str = "per_tile",
    description: str = "",
    seconds: float = 0.0,
) -> summary_pb2.Summary:
    """A `Summary` with one step of a layer's feature maps on one sample, its metadata included.

    Arguments as `feature_maps_step`; `scale` as `filters_pb`.
    """
    plugin_data = filters_plugin_data(pb.FILTERS_SOURCE_FEATURE_MAPS, layer, scale)
    step = feature_maps_step(activations, sample, max_channels, seconds)
    return blob_sequence_summary(tag, [step.SerializeToString()], plugin_data, description)


def _weight_of(weight_or_module: object) -> object:
    """The weight of a conv module (anything with `forward` and `weight`), or the weight."""
    weight = getattr(weight_or_module, "weight", None)
    if weight is not None and hasattr(weight_or_module, "forward"):
        return weight
    return weight_or_module


def tiles_of(step: pb.FiltersStep) -> int:
    """Tiles a stored step draws: K (RGB or feature maps) or K·I (grayscale filters)."""
    shape = list(step.values.shape)
    if len(shape) == 4 and not step.rgb:
        return shape[0] * shape[1]
    return shape[0] if shape else 0


class FiltersSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_filters` and `add_feature_maps`.

    Needs the writer core's `_write` and `_series_plugin_data`.
    """

    def add_filters(
        self,
        tag: str,
        weight_or_module: object,
        global_step: int | None = None,
        walltime: float | None = None,
        layer: str = "",
        max_tiles: int = DEFAULT_MAX_TILES,
        rgb: bool | None = None,
        scale: str = "per_tile",
        description: str = "",
        seconds: float = 0.0,
    ) -> None:
        """Log a conv weight (or a conv module's) as a grid of images, stored as measured.

        Args:
          tag: the series, e.g. "filters/conv1"; one layer per tag.
          weight_or_module: a conv weight [O, I, kH, kW] ([O, I, k] for 1-d) or a
            module with `.weight` (nn.Conv1d/2d).
          global_step, walltime: as torch's `add_*`.
          layer: the layer's name, shown by the tab.
          max_tiles: tiles stored at most (the first out-channels that fit).
          rgb: one RGB tile per out-channel (default: when I == 3).
          scale: the tab's default colour scale, "per_tile" (each filter or channel
            on its own range) or "shared" (one range for the step).

        Raises:
          ValueError: not a conv weight; the tag holds feature maps.
        """
        weight = _weight_of(weight_or_module)
        summary = filters_pb(tag, weight, layer, max_tiles, rgb, scale, description, seconds)
        self._check_source(tag, pb.FILTERS_SOURCE_WEIGHTS)
        self._write(summary, global_step, walltime)

    def add_feature_maps(
        self,
        tag: str,
        activations: object,
        global_step: int | None = None,
        walltime: float | None = None,
        sample: int | None = None,
        layer: str = "",
        max_channels: int = DEFAULT_MAX_CHANNELS,
        scale: str = "per_tile",
        description: str = "",
        seconds: float = 0.0,
    ) -> None:
        """Log a layer's output on one (fixed probe) sample, one image per channel.

        Args:
          tag: the series, e.g. "feature_maps/layer1"; one layer per tag.
          activations: [C, H, W] of one sample, or [N, C, H, W] with `sample`
            (default 0); [C, L] / [N, C, L] are one row high.
          sample: the sample's index in the batch (or in the probe).
          layer: the layer's name, shown by the tab.
          max_channels: the first this many channels are stored.
          scale: the tab's default colour scale, "per_tile" (each filter or channel
            on its own range) or "shared" (one range for the step).

        Raises:
          ValueError: another shape; the tag holds filters.
        """
        summary = feature_maps_pb(
            tag, activations, sample, layer, max_channels, scale, description, seconds
        )
        self._check_source(tag, pb.FILTERS_SOURCE_FEATURE_MAPS)
        self._write(summary, global_step, walltime)

    def _check_source(self, tag: str, source: int) -> None:
        known = self._series_plugin_data(tag)
        if known is not None and known.kind == pb.FILTERS and known.filters.source != source:
            held = "filters" if source == pb.FILTERS_SOURCE_FEATURE_MAPS else "feature maps"
            raise ValueError(f"tag {tag!r} holds {held}; log these under another tag")


__all__: Sequence[str] = (
    "FiltersSummaries",
    "feature_maps_pb",
    "feature_maps_step",
    "filters_pb",
    "filters_step",
)
