"""Layer values on the read side: decode a layer-values series, serve `layer_values`.

A layer-values series (a user's own per-layer quantity, `add_layer_values`) is a
tensor series: each event is a DT_STRING scalar holding one `LayerValuesStep`
(its layer names, their float32 values, the indices of those not measured).
Steps may name different layers: the series' layers are the union, in order of
first appearance, and a layer a step does not name is not measured there.
`read_layer_values` decodes every kept event into one matrix (steps × layers);
`LayerValuesRoutes` serves it as the `update_ratios` route serves update
ratios (same JSON shape, plus the series' `quantity`, `unit` and `scale`), the
decoded series and whole responses remembered by the series' version.

Damaged data (deepscope's one policy): an event that cannot be read or fails
validation (payload type, dtype, byte count against shape and names, empty or
repeated names, not-measured indices, wall time) drops only its own row, and
the response's `warnings` say which step and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import responses, tensor_kind
from deepscope.tb_plugin.tensor_kind import MalformedEvent, dtype_name

KIND = "layer_values"
# Decoded series and whole responses remembered, by the series' version (its
# listing's max step and wall time).
_SERIES_BYTES = 32 * 1024 * 1024
_BODY_BYTES = 32 * 1024 * 1024
# The scale's name in responses; LAYER_VALUES_SCALE_UNSPECIFIED reads as log.
_SCALE_NAMES = {
    pb.LAYER_VALUES_SCALE_UNSPECIFIED: "log",
    pb.LAYER_VALUES_SCALE_LOG: "log",
    pb.LAYER_VALUES_SCALE_LINEAR: "linear",
}
_FLOAT_DTYPES = (pb.FLOAT32, pb.FLOAT16, pb.FLOAT64)


@dataclasses.dataclass
class LayerValues:
    """A layer-values series: values[i, j] is layer names[j] at steps[i].

    `measured[i, j]` is False where the layer was not measured at that step
    (marked so, or not named by it); the value there is NaN and means nothing.
    Non-finite values where `measured` is True are measurements, kept.
    """

    steps: np.ndarray  # int64 [S]
    wall_times: np.ndarray  # float64 [S]
    names: list[str]
    values: np.ndarray  # float32 [S, P]
    measured: np.ndarray  # bool [S, P]
    warnings: list[str]

    @property
    def nbytes(self) -> int:
        """Bytes held (for a cache's budget)."""
        arrays_bytes = sum(a.nbytes for a in (self.steps, self.wall_times, self.values))
        return arrays_bytes + self.measured.nbytes + sum(len(n) + 50 for n in self.names) + 200


def decode_payload(payload) -> tuple[tuple[str, ...], np.ndarray, list[int]]:
    """(names, float32 values [P], not-measured indices) of one event's tensor value.

    `payload` is the datum's numpy value: a string scalar holding a serialized
    `LayerValuesStep`.

    Raises:
      ValueError: what is wrong with it (not a string scalar, does not parse,
        no names, an empty or repeated name, values of another dtype or count,
        a not-measured index outside the names).
    """
    return StepDecoder().decode(payload)


class StepDecoder:
    """Decodes the events of one series, reusing the names the previous event carried.

    Most steps of a series name the same layers, and making their strings is
    most of a step's decoding (200 names: about 0.1 ms). A protobuf message is
    the merge of its parts, so when an event's bytes start with the previous
    event's serialized names, those parse to the same names and only the rest
    (values, marks) is parsed.
    """

    def __init__(self) -> None:
        self._prefix = b""  # the previous event's names, serialized as the writer does
        self._names: tuple[str, ...] = ()

    def decode(self, payload) -> tuple[tuple[str, ...], np.ndarray, list[int]]:
        """As `decode_payload`."""
        content = tensor_kind.string_payload(payload, "LayerValuesStep")
        try:
            if self._prefix and content.startswith(self._prefix):
                step = pb.LayerValuesStep.FromString(content[len(self._prefix) :])
                names = self._names + tuple(step.names) if step.names else self._names
            else:
                step = pb.LayerValuesStep.FromString(content)
                names = tuple(step.names)
        except Exception as error:  # protobuf raises DecodeError or RuntimeError
            raise MalformedEvent(
                f"the payload does not parse as a LayerValuesStep ({error})"
            ) from None
        if names is not self._names:
            _check_names(names)
        values, not_measured = _values(step, len(names))
        if names is not self._names:
            prefix = pb.LayerValuesStep(names=names).SerializeToString()
            self._prefix = prefix if content.startswith(prefix) else b""
            self._names = names
        return names, values, not_measured


def _values(step: pb.LayerValuesStep, count: int) -> tuple[np.ndarray, list[int]]:
    """The step's float32 values [count] and not-measured indices, checked."""
    stored = step.values
    if stored.dtype not in _FLOAT_DTYPES:
        raise MalformedEvent(
            f"values of dtype {dtype_name(stored.dtype)}, not FLOAT32 (or FLOAT16, FLOAT64)"
        )
    if stored.dtype == pb.FLOAT32 and len(stored.shape) == 1 and stored.shape[0] == count:
        # What the writer writes: checked here, read without decode_array's general checks.
        if len(stored.data) != 4 * count:
            raise MalformedEvent(
                f"values: {len(stored.data)} bytes for {tensor_kind.count(count, 'float32 value')} "
                f"(needs {4 * count})"
            )
        values = np.frombuffer(stored.data, dtype="<f4")
    else:
        try:
            values = np.asarray(arrays.decode_array(stored), dtype=np.float32)
        except ValueError as error:
            raise MalformedEvent(f"values: {error}") from None
    if values.shape != (count,):
        raise MalformedEvent(
            f"values of shape {list(values.shape)} for {tensor_kind.count(count, 'layer name')}"
        )
    not_measured = list(step.not_measured)
    if not_measured and max(not_measured) >= count:
        raise MalformedEvent(
            f"not-measured index {max(not_measured)} outside the step's "
            f"{tensor_kind.count(count, 'layer')}"
        )
    return values, not_measured


def _check_names(names: tuple[str, ...]) -> None:
    """`MalformedEvent` unless `names` are one or more unique, non-empty names."""
    if not names:
        raise MalformedEvent("the step names no layers")
    unique = set(names)
    if "" in unique:
        raise MalformedEvent("a layer name is empty")
    if len(unique) != len(names):
        seen: set[str] = set()
        repeated = next(name for name in names if name in seen or seen.add(name))
        raise MalformedEvent(f"layer name {responses.echo(repeated)} appears twice")


def read_layer_values(
    data_provider,
    ctx,
    experiment_id: str,
    run: str,
    tag: str,
    downsample: int | None,
) -> LayerValues:
    """Read and decode every kept step of a layer-values series, in step order.

    Events that cannot be read are left out, each named in `warnings`.
    """
    datums = tensor_kind.read_events(data_provider, ctx, experiment_id, run, tag, downsample)
    columns: dict[str, int] = {}
    steps: list[int] = []
    wall_times: list[float] = []
    # Rows by the tuple of names they carry (most steps carry the same), placed together.
    groups: dict[tuple[str, ...], list[tuple[int, np.ndarray, list[int]]]] = {}
    malformed: list[tuple[int, str]] = []  # (event's step, what is wrong)
    decoder = StepDecoder()
    for datum in datums:
        try:
            wall_time = float(datum.wall_time)
            if not math.isfinite(wall_time):
                raise MalformedEvent(f"wall time {wall_time} is not a number of seconds")
            key, values, not_measured = decoder.decode(datum.numpy)
        except MalformedEvent as error:
            malformed.append((int(datum.step), str(error)))
            continue
        if key not in groups:
            for name in key:
                columns.setdefault(name, len(columns))
            groups[key] = []
        groups[key].append((len(steps), values, not_measured))
        steps.append(int(datum.step))
        wall_times.append(wall_time)
    values = np.full((len(steps), len(columns)), np.nan, dtype=np.float32)
    measured = np.zeros(values.shape, dtype=bool)
    for names, rows in groups.items():
        cols = np.fromiter((columns[name] for name in names), dtype=np.intp, count=len(names))
        index = np.asarray([row for row, _, _ in rows], dtype=np.intp)
        values[index[:, None], cols[None, :]] = np.stack([v for _, v, _ in rows])
        measured[index[:, None], cols[None, :]] = True
        for row, _, not_measured in rows:
            if not_measured:
                values[row, cols[not_measured]] = np.nan
                measured[row, cols[not_measured]] = False
    return LayerValues(
        steps=np.asarray(steps, dtype=np.int64),
        wall_times=np.asarray(wall_times, dtype=np.float64),
        names=list(columns),
        values=values,
        measured=measured,
        warnings=tensor_kind.malformed_warnings(malformed),
    )


class LayerValuesRoutes(tensor_kind.TensorKindRoutes):
    """The `layer_values` route (the shared parts: `tensor_kind.TensorKindRoutes`)."""

    KIND = KIND
    ROUTE = "layer_values"
    NOUN = "layer"
    SERIES_BYTES = _SERIES_BYTES
    BODY_BYTES = _BODY_BYTES

    def layer_values(self, ctx, experiment: str, run: str, tag: str) -> LayerValues:
        """The decoded series (run, tag), remembered; 404/400 as `SeriesCatalog.find`."""
        return self.decoded(ctx, experiment, run, tag)

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data) -> LayerValues:
        return read_layer_values(
            self._context.data_provider, ctx, experiment, run, tag, self._context.downsample
        )

    def make_body(
        self, decoded: LayerValues, plugin_data, run: str, tag: str, fmt: str, wanted: list[str]
    ) -> responses.PreparedJson:
        """The `layer_values` response (docs/http_api.md) of a decoded series."""
        info = plugin_data.layer_values
        values, measured, names = decoded.values, decoded.measured, decoded.names
        warnings = list(decoded.warnings)
        columns = self.select_columns(names, wanted, run, tag)
        if columns is not None:
            values, measured, names = values[:, columns], measured[:, columns], list(wanted)
        scale = _SCALE_NAMES.get(info.scale)
        if scale is None:
            warnings.append(
                f"unknown scale {info.scale} in the series' metadata (written by a newer "
                "deepscope?): drawn on a log scale"
            )
            scale = "log"
        head = {
            "run": run,
            "tag": tag,
            "quantity": info.quantity,
            "unit": info.unit,
            "scale": scale,
            "steps": decoded.steps.tolist(),
            "wall_times": decoded.wall_times.tolist(),
            "names": names,
            "non_finite": int((~np.isfinite(values) & measured).sum()),
            "warnings": warnings,
        }
        if fmt == "base64":
            head["not_measured"] = np.argwhere(~measured).tolist()
            head["values"] = {"dtype": "float32", "shape": list(values.shape), "base64": ""}
            return responses.prepare_base64_json(head, values.astype("<f4").tobytes())
        head["values"] = tensor_kind.json_matrix(values, ~measured)
        return responses.prepare_json_text(responses.json_text(head))
