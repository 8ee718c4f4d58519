"""Layer-values summaries: one number per layer per step, of a quantity the user measures.

The generic carrier for users' own diagnostics: a measurer computes, say, each
layer's gradient norm or dead-unit fraction and logs it with
`writer.add_layer_values("grad_norm", {"fc1": 0.12, "fc2": 0.03}, global_step=step,
quantity="gradient norm")`; the tab shows it as a layers × steps heatmap and
per-layer curves, as it shows update ratios.

A series is a tensor series (small per-step payloads): its metadata
(`LayerValuesInfo`: quantity, unit, scale, on the tag's first event) and, per
step, a DT_STRING scalar tensor holding a `LayerValuesStep` (the layer names,
their values as float32 [P], the indices of layers named but not measured).
Each step names its own layers, so a measurer may measure different layers on
different steps (the reader takes the union), and every kept step reads alone
whatever TensorBoard's sampling dropped. The names are most of a step's bytes:
4 per value plus each name's length and 2 (200 layers named like
"layer12.block.conv1.weight": about 6.4 kB a step, 6.4 MB per 1,000 steps).

Works with plain floats; torch is imported only when a value is a tensor
(torch is then imported already).
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from tensorboard.compat.proto import summary_pb2

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.writer.summary import tensor_summary

# The scales a series can ask the tab for, by the name the API takes.
SCALES: dict[str, int] = {
    "log": pb.LAYER_VALUES_SCALE_LOG,
    "linear": pb.LAYER_VALUES_SCALE_LINEAR,
}


def layer_values_info(quantity: str = "", unit: str = "", scale: str = "log") -> pb.PluginData:
    """The series' `PluginData`: what is measured, its unit, the scale the tab uses.

    Raises:
      TypeError: quantity or unit is not a string.
      ValueError: scale is not "log" or "linear".
    """
    for what, text in (("quantity", quantity), ("unit", unit)):
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a string, e.g. 'gradient norm', got {text!r}")
    if scale not in SCALES:
        raise ValueError(
            f"scale must be 'log' (positive values spanning decades) or 'linear' "
            f"(values that may be zero or negative), got {scale!r}"
        )
    return pb.PluginData(
        kind=pb.LAYER_VALUES,
        layer_values=pb.LayerValuesInfo(quantity=quantity, unit=unit, scale=SCALES[scale]),
    )


def layer_values_step(
    names: Sequence[str], values: np.ndarray, not_measured: Sequence[int] = ()
) -> pb.LayerValuesStep:
    """One step's `LayerValuesStep`.

    Args:
      names: P unique, non-empty layer names.
      values: P numbers (float32 on disk; beyond float32's range becomes ±inf);
        non-finite values are kept as measured.
      not_measured: indices into `names` of layers not measured at this step
        (their value is ignored and stored as NaN).

    Raises:
      ValueError: no names, an empty or repeated name, values of another
        length, an index out of range.
    """
    names = list(names)
    if not names:
        raise ValueError("a step needs at least one layer name")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"layer names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError("layer names must be unique")
    with np.errstate(over="ignore"):  # beyond float32 is stored as inf, as measured
        values = np.asarray(values, dtype=np.float32)
    if values.shape != (len(names),):
        raise ValueError(
            f"{len(names)} layer names need {len(names)} values, got shape {list(values.shape)}"
        )
    marks = sorted({int(i) for i in not_measured})
    if marks and not 0 <= marks[0] <= marks[-1] < len(names):
        raise ValueError(f"not_measured index out of range for {len(names)} layers")
    if marks:
        values = values.copy()
        values[marks] = np.nan
    return pb.LayerValuesStep(names=names, values=arrays.encode_array(values), not_measured=marks)


def values_from_mapping(
    values: Mapping[str, object],
) -> tuple[list[str], np.ndarray, list[int]]:
    """Split layer name → value into names, float32 values [P] and not-measured indices.

    A value is a number, a one-element tensor or numpy array, or None (not
    measured at this step). Tensors are copied to the host together, one copy
    per device, not one `.item()` each (each is a device sync).

    Raises:
      ValueError: an empty mapping, or an empty name.
      TypeError: a name that is not a string, or a value that is not a number
        (the message names its layer).
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError(
            "values must be a non-empty mapping of layer name to number, e.g. "
            '{"fc1": 0.12, "fc2": 0.03} (None marks a layer not measured at this step)'
        )
    names: list[str] = []
    # Python floats (float64), made float32 at once below; NaN where not measured.
    floats = [math.nan] * len(values)
    not_measured: list[int] = []
    # (index, tensor) of torch tensors, copied to the host together below.
    tensors: list[tuple[int, object]] = []
    torch = sys.modules.get("torch")  # a tensor value means torch is imported already
    for i, (name, value) in enumerate(values.items()):
        if not isinstance(name, str):
            raise TypeError(f"layer names must be strings, got {name!r}")
        if not name:
            raise ValueError("layer names must be non-empty strings, got ''")
        names.append(name)
        kind = type(value)
        if kind is float or kind is int:  # the common case, checked first
            floats[i] = _float(value)
        elif value is None:
            not_measured.append(i)
        elif torch is not None and isinstance(value, torch.Tensor):
            if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
                raise TypeError(_not_a_number(name, value))
            tensors.append((i, value))
        elif isinstance(value, np.ndarray):
            if value.size != 1 or not _real_dtype(value.dtype):
                raise TypeError(_not_a_number(name, value))
            floats[i] = float(value.reshape(()))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            floats[i] = _float(value)
        else:
            raise TypeError(_not_a_number(name, value))
    with np.errstate(over="ignore"):  # beyond float32 is stored as ±inf, as measured
        result = np.asarray(floats, dtype=np.float64).astype(np.float32)
    if tensors:
        _copy_tensors(torch, tensors, result)
    return names, result, not_measured


def _real_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def _float(value) -> float:
    """A real number as a float; an int beyond float64's range as ±inf (as measured)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _not_a_number(name: str, value) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:  # a tensor or array of several elements, or not of real numbers
        what = f"a {type(value).__name__} of shape {list(shape)} and dtype {value.dtype}"
        hint = "; reduce it to one real number first (e.g. .norm())"
    else:
        shown = repr(value)
        what, hint = (shown if len(shown) <= 80 else shown[:77] + "..."), ""
    return (
        f"value for layer {name!r} must be a number, a one-element tensor or None "
        f"(not measured), got {what}{hint}"
    )


def _copy_tensors(torch, tensors: list[tuple[int, object]], result: np.ndarray) -> None:
    """Place one-element tensors into `result`: one stack and host copy per device."""
    by_device: dict[object, list[tuple[int, object]]] = {}
    for i, tensor in tensors:
        by_device.setdefault(tensor.device, []).append((i, tensor))
    for group in by_device.values():
        with torch.no_grad():  # stack promotes mixed dtypes; one conversion, on the device
            stacked = torch.stack([t if t.dim() == 0 else t.reshape(()) for _, t in group])
            # float32 (values beyond its range become ±inf, as measured), then one host copy.
            host = stacked.to(torch.float32).cpu().numpy()
        result[[i for i, _ in group]] = host


def layer_values_pb(
    tag: str,
    values: Mapping[str, object],
    *,
    quantity: str = "",
    unit: str = "",
    scale: str = "log",
    description: str = "",
) -> summary_pb2.Summary:
    """A `Summary` with one step of layer values, its metadata included.

    For people who write events with another writer:
    `file_writer.add_summary(layer_values_pb("grad_norm", norms), step)`.

    Args:
      tag: the series' name, e.g. "grad_norm".
      values: layer name → this step's value: a number, a one-element tensor or
        numpy array, or None (the layer was not measured at this step).
        Non-finite values are kept and shown as such.
      quantity: what is measured, e.g. "gradient norm" (the tab's label).
      unit: its unit, e.g. "nats"; empty for a pure number.
      scale: "log" (positive values spanning decades: norms, ratios) or
        "linear" (values that may be zero or negative: fractions, means).
      description: shown by TensorBoard next to the tag.

    Raises:
      ValueError, TypeError: as `values_from_mapping` and `layer_values_info` say.
    """
    plugin_data = layer_values_info(quantity, unit, scale)
    names, floats, not_measured = values_from_mapping(values)
    step = layer_values_step(names, floats, not_measured)
    return tensor_summary(tag, step.SerializeToString(), plugin_data, description)


class LayerValueSummaries:
    """Mixin of `deepscope.SummaryWriter`: `add_layer_values`."""

    def add_layer_values(
        self,
        tag: str,
        values: Mapping[str, object],
        global_step: int | None = None,
        walltime: float | None = None,
        description: str = "",
        quantity: str = "",
        unit: str = "",
        scale: str = "log",
    ) -> None:
        """Log one step of a per-layer quantity of your own: one number per layer.

        Args:
          tag: the series, e.g. "grad_norm".
          values: layer name → value (a number or a one-element tensor; tensors
            are copied to the host together); None marks a layer not measured
            at this step. Steps may name different layers. Non-finite values
            are kept and shown as such.
          global_step: the training step.
          walltime: seconds since the epoch; now by default.
          description: shown next to the tag.
          quantity, unit: what is measured and its unit, e.g. "gradient norm", "".
          scale: "log" or "linear", how the tab draws the values.

        quantity, unit, scale and description are the series' metadata, which
        TensorBoard keeps from a tag's first event only: later calls may leave
        them out; later different ones are ignored, with a warning.

        Raises:
          ValueError, TypeError: bad names, values or options (the message
            says which).
        """
        summary_pb = layer_values_pb(
            tag, values, quantity=quantity, unit=unit, scale=scale, description=description
        )
        self._warn_if_metadata_differs(tag, summary_pb)
        self._write(summary_pb, global_step, walltime)

    def _warn_if_metadata_differs(self, tag: str, summary_pb: summary_pb2.Summary) -> None:
        """Warn when this step's quantity, unit or scale differ from the series' first ones."""
        written = self._series_plugin_data(tag)
        if written is None or written.WhichOneof("details") != "layer_values":
            return
        content = summary_pb.value[0].metadata.plugin_data.content
        given = pb.PluginData.FromString(content).layer_values
        # A call that gives none (all defaults) relies on the first event's: no warning.
        if given != written.layer_values and given != _DEFAULT_INFO:
            warned = self.__dict__.setdefault("_layer_values_warned", set())
            if tag not in warned:
                warned.add(tag)
                warnings.warn(
                    f"layer values {tag!r}: quantity, unit and scale are kept from the "
                    f"tag's first event ({_describe(written.layer_values)}); this step's "
                    f"({_describe(given)}) are ignored. Log other ones under a new tag.",
                    RuntimeWarning,
                    stacklevel=3,
                )


_DEFAULT_INFO = layer_values_info().layer_values


def _describe(info: pb.LayerValuesInfo) -> str:
    scale = {v: k for k, v in SCALES.items()}.get(info.scale, "log")
    return f"quantity {info.quantity!r}, unit {info.unit!r}, scale {scale!r}"
