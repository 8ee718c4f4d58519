"""Update ratios on the read side: decode an update-ratio series, serve `update_ratios`.

An update-ratio series is a tensor series: each event is a DT_STRING scalar
holding one `UpdateRatiosStep` (one measured step, or a block of K steps that
watch() writes together). `read_update_ratios` decodes every kept event into one
matrix (steps × parameters); `UpdateRatioRoutes` serves it, the decoded series
and whole responses remembered by the series' version.

Damaged data (deepscope's one policy): an event that cannot be read or fails
validation (payload type, dtype, byte count against shape and names, mark
indices, steps against wall times) drops only its own rows, and the response's
`warnings` say which step and what is wrong; the rest of the series is served.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import responses, tensor_kind
from deepscope.tb_plugin.tensor_kind import MalformedEvent, dtype_name

KIND = "update_ratios"
# Decoded update-ratio series and whole update_ratios responses remembered, by the
# series' version (its listing's max step and wall time): a 10,000-step x 201-parameter
# series is 8 MB decoded and 11 MB as base64 JSON.
_SERIES_BYTES = 64 * 1024 * 1024
_BODY_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class UpdateRatios:
    """An update-ratio series: values[i, j] is parameter names[j] at steps[i].

    `no_update[i, j]` is True where the parameter got no update (or was not
    measured) in that step; `zero_weight[i, j]` where its weight was exactly
    zero before the step and moved (a fresh bias: the ratio is undefined).
    Values at either are NaN and mean nothing.
    """

    steps: np.ndarray  # int64 [S]
    wall_times: np.ndarray  # float64 [S]
    names: list[str]
    values: np.ndarray  # float32 [S, P]
    no_update: np.ndarray  # bool [S, P]
    zero_weight: np.ndarray  # bool [S, P]
    warnings: list[str]

    @property
    def nbytes(self) -> int:
        """Bytes held (for a cache's budget)."""
        arrays_bytes = sum(
            a.nbytes
            for a in (self.steps, self.wall_times, self.values, self.no_update, self.zero_weight)
        )
        return arrays_bytes + sum(len(n) + 50 for n in self.names) + 200


class _OtherNames(Exception):
    """An event logged with parameter names the series' metadata does not list."""


def _payload(datum) -> pb.UpdateRatiosStep:
    """The `UpdateRatiosStep` a tensor datum holds; `MalformedEvent` says why it holds none."""
    content = tensor_kind.string_payload(datum.numpy, "UpdateRatiosStep")
    try:
        return pb.UpdateRatiosStep.FromString(content)
    except Exception as error:  # protobuf raises DecodeError or RuntimeError
        raise MalformedEvent(
            f"the payload does not parse as an UpdateRatiosStep ({error})"
        ) from None


def _ratios_error(ratios: pb.Array, data: bytes, width: int, rows: int) -> str | None:
    """What is wrong with `ratios` (bytes `data`) as float32 [rows, width], if anything."""
    if ratios.dtype != pb.FLOAT32:
        return f"ratios of dtype {dtype_name(ratios.dtype)}, not FLOAT32"
    expected = 4 * width * rows
    if len(data) != expected:
        return (
            f"{len(data)} bytes of ratios for {tensor_kind.count(width, 'parameter')} × "
            f"{tensor_kind.count(rows, 'step')} (expected {expected})"
        )
    shape = ratios.shape
    if shape and math.prod(shape) != width * rows:
        return (
            f"ratios of shape {list(shape)} for {tensor_kind.count(width, 'parameter')} × "
            f"{tensor_kind.count(rows, 'step')}"
        )
    return None


def _marks_error(no_update: Sequence[int], zero_weight: Sequence[int], size: int) -> str | None:
    """What is wrong with the marks of an event of `size` values, if anything: each must be
    an index into its values, and no value marked both ways."""
    for marks, what in ((no_update, "no-update"), (zero_weight, "zero-weight")):
        if marks and max(marks) >= size:
            return (
                f"{what} mark {max(marks)} outside the event's {tensor_kind.count(size, 'value')}"
            )
    if no_update and zero_weight:
        both = set(no_update) & set(zero_weight)
        if both:
            return f"value {min(both)} is marked both no-update and zero-weight"
    return None


def _rows_error(rows_steps: Sequence[int], rows_times: Sequence[float]) -> str | None:
    """What is wrong with an event's row steps and wall times (seconds), if anything."""
    if len(rows_times) != len(rows_steps):
        steps, times = len(rows_steps), len(rows_times)
        return f"{tensor_kind.count(steps, 'step')} but {tensor_kind.count(times, 'wall time')}"
    for wall_time in rows_times:
        if not math.isfinite(wall_time):
            return f"wall time {wall_time} is not a number of seconds"
    return None


def _names_error(names: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return f"parameter name {responses.echo(name)} appears twice"
        seen.add(name)
    return None


class _Event(NamedTuple):
    """One event's rows, validated: `data` is float32 [len(steps), width] bytes."""

    steps: Sequence[int]
    wall_times: Sequence[float]
    names: list[str] | None  # None: the series' own names
    data: bytes
    no_update: Sequence[int]  # indices into the event's flattened values
    zero_weight: Sequence[int]


def _decode(datum, series_names: list[str], series_crc: int) -> _Event:
    """One tensor datum's rows; `MalformedEvent` or `_OtherNames` when they cannot be placed.

    Each check is a cheap test first (a series of 10,000 one-step events runs
    it 10,000 times); the message is made only when it fails.
    """
    step = _payload(datum)
    # A block of K rows carries each row's step; a single step is the event's own.
    rows_steps = step.steps or [int(datum.step)]
    rows_times = step.wall_times or [float(datum.wall_time)]
    rows = len(rows_steps)
    if len(rows_times) != rows or not all(map(math.isfinite, rows_times)):
        raise MalformedEvent(_rows_error(rows_steps, rows_times))
    names = list(step.names) if step.names else None
    if names is not None:
        if len(set(names)) != len(names):
            raise MalformedEvent(_names_error(names))
        width = len(names)
    elif not series_names:
        raise MalformedEvent(
            "no parameter names: neither the event nor the series' metadata lists any"
        )
    elif step.names_crc32 not in (series_crc, 0):
        raise _OtherNames
    else:
        width = len(series_names)
    ratios = step.ratios
    data = ratios.data
    shape = ratios.shape
    if (
        ratios.dtype != pb.FLOAT32
        or len(data) != 4 * width * rows
        or (len(shape) == 1 and shape[0] != width * rows)
        or (len(shape) > 1 and math.prod(shape) != width * rows)
    ):
        raise MalformedEvent(_ratios_error(ratios, data, width, rows))
    no_update, zero_weight = step.no_update, step.zero_weight
    if no_update or zero_weight:
        error = _marks_error(no_update, zero_weight, width * rows)
        if error:
            raise MalformedEvent(error)
    return _Event(rows_steps, rows_times, names, data, no_update, zero_weight)


def read_update_ratios(
    data_provider,
    ctx,
    experiment_id: str,
    run: str,
    tag: str,
    plugin_data: pb.PluginData,
    downsample: int | None,
) -> UpdateRatios:
    """Read and decode every kept step of an update-ratio series, in step order.

    Events that cannot be read are left out, each named in `warnings`.
    """
    datums = tensor_kind.read_events(data_provider, ctx, experiment_id, run, tag, downsample)
    series_names = list(plugin_data.update_ratios.names)
    series_crc = metadata.names_crc32(series_names)
    columns = {name: j for j, name in enumerate(series_names)}
    steps, wall_times = [], []
    # Rows in the series' own names, as float32 bytes, decoded at once below; the rest
    # (steps that carry their own names) are placed one by one.
    chunks: list[bytes] = []
    own_rows: list[int] = []
    other_rows: list[tuple[int, np.ndarray, list[str]]] = []
    # (row, index into that row's names) of each mark.
    no_update_marks: list[tuple[int, int]] = []
    zero_weight_marks: list[tuple[int, int]] = []
    unknown_names_steps: list[int] = []
    malformed: list[tuple[int, str]] = []  # (event's step, what is wrong)
    event_steps: list[int] = []  # the step of each placed event
    row_events: list[int] = []  # the index (into event_steps) of the event each row came from
    for datum in datums:
        try:
            event = _decode(datum, series_names, series_crc)
        except MalformedEvent as error:
            malformed.append((int(datum.step), str(error)))
            continue
        except _OtherNames:
            unknown_names_steps.append(int(datum.step))
            continue
        row, rows = len(steps), len(event.steps)
        if event.names is not None:
            width = len(event.names)
            ratios = np.frombuffer(event.data, dtype="<f4").reshape(rows, width)
            for k in range(rows):
                other_rows.append((row + k, ratios[k], event.names))
            for name in event.names:
                columns.setdefault(name, len(columns))
        else:
            width = len(series_names)
            chunks.append(event.data)
            own_rows.extend(range(row, row + rows))
        if event.no_update:
            no_update_marks.extend((row + i // width, i % width) for i in event.no_update)
        if event.zero_weight:
            zero_weight_marks.extend((row + i // width, i % width) for i in event.zero_weight)
        steps.extend(event.steps)
        wall_times.extend(event.wall_times)
        row_events.extend([len(event_steps)] * rows)
        event_steps.append(int(datum.step))
    values = np.full((len(steps), len(columns)), np.nan, dtype=np.float32)
    # Not measured unless a row says otherwise.
    no_update = np.ones(values.shape, dtype=bool)
    if own_rows:
        own = np.frombuffer(b"".join(chunks), dtype="<f4").reshape(len(own_rows), -1)
        values[own_rows, : own.shape[1]] = own
        no_update[own_rows, : own.shape[1]] = False
    row_columns = {}
    for row, row_values, names in other_rows:
        cols = [columns[name] for name in names]
        values[row, cols] = row_values
        no_update[row, cols] = False
        row_columns[row] = cols
    zero_weight = np.zeros(values.shape, dtype=bool)
    for marks, marked in ((no_update_marks, no_update), (zero_weight_marks, zero_weight)):
        for row, i in marks:
            j = row_columns[row][i] if row in row_columns else i
            values[row, j] = np.nan
            marked[row, j] = True
    steps_array = np.asarray(steps, dtype=np.int64)
    wall_times_array = np.asarray(wall_times, dtype=np.float64)
    negative = _negative_events(values, np.asarray(row_events, dtype=np.int64), list(columns))
    if negative:
        keep = ~np.isin(row_events, list(negative))
        steps_array, wall_times_array = steps_array[keep], wall_times_array[keep]
        values, no_update, zero_weight = values[keep], no_update[keep], zero_weight[keep]
        malformed = sorted(malformed + [(event_steps[e], why) for e, why in negative.items()])
    warnings = _warnings(malformed, unknown_names_steps)
    if np.any(np.diff(steps_array) < 0):  # blocks of a restarted run may interleave
        order = np.argsort(steps_array, kind="stable")
        steps_array, wall_times_array = steps_array[order], wall_times_array[order]
        values, no_update, zero_weight = values[order], no_update[order], zero_weight[order]
    return UpdateRatios(
        steps=steps_array,
        wall_times=wall_times_array,
        names=list(columns),
        values=values,
        no_update=no_update,
        zero_weight=zero_weight,
        warnings=warnings,
    )


def _negative_events(values: np.ndarray, row_events: np.ndarray, names: list[str]) -> dict:
    """Event (its index in `row_events`) → what is wrong, for each with a finite negative ratio.

    ‖ΔW‖/‖W‖ is never negative: a finite negative value is damage (a flipped sign
    bit, which the fast data server, not checking record checksums, serves as
    data). Non-finite values are kept as measured (a NaN or infinite weight).
    """
    negative = values < 0  # NaN compares False
    if not negative.any():
        return {}
    negative &= values > -np.inf
    found: dict[int, str] = {}
    for i, j in np.argwhere(negative).tolist():
        event = int(row_events[i])
        if event not in found:
            found[event] = (
                f"ratio {float(values[i, j]):.6g} of parameter {responses.echo(names[j])} is "
                "negative; ‖ΔW‖/‖W‖ cannot be (damaged bytes?)"
            )
    return found


def _warnings(malformed: list[tuple[int, str]], unknown_names_steps: list[int]) -> list[str]:
    """The response's warnings: damaged events (each step and reason), then foreign names."""
    warnings = tensor_kind.malformed_warnings(malformed)
    if unknown_names_steps:
        warnings.append(
            f"{len(unknown_names_steps)} step(s) (first: {unknown_names_steps[0]}) were logged "
            "with parameter names this series' metadata does not list (a restarted run with "
            "other parameters?) and are left out; log them under a new tag"
        )
    return warnings


class UpdateRatioRoutes(tensor_kind.TensorKindRoutes):
    """The `update_ratios` route (the shared parts: `tensor_kind.TensorKindRoutes`)."""

    KIND = KIND
    ROUTE = "update_ratios"
    NOUN = "parameter"
    SERIES_BYTES = _SERIES_BYTES
    BODY_BYTES = _BODY_BYTES

    def update_ratios(self, ctx, experiment: str, run: str, tag: str) -> UpdateRatios:
        """The decoded series (run, tag), remembered; 404/400 as `SeriesCatalog.find`."""
        return self.decoded(ctx, experiment, run, tag)

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data) -> UpdateRatios:
        return read_update_ratios(
            self._context.data_provider,
            ctx,
            experiment,
            run,
            tag,
            plugin_data,
            self._context.downsample,
        )

    def make_body(
        self, decoded: UpdateRatios, plugin_data, run: str, tag: str, fmt: str, wanted: list[str]
    ) -> responses.PreparedJson:
        """The `update_ratios` response (docs/http_api.md) of a decoded series."""
        values, no_update, names = decoded.values, decoded.no_update, decoded.names
        zero_weight = decoded.zero_weight
        columns = self.select_columns(names, wanted, run, tag)
        if columns is not None:
            values, no_update, names = values[:, columns], no_update[:, columns], wanted
            zero_weight = zero_weight[:, columns]
        head = {
            "run": run,
            "tag": tag,
            "steps": decoded.steps.tolist(),
            "wall_times": decoded.wall_times.tolist(),
            "names": names,
            "non_finite": int((~np.isfinite(values) & ~no_update & ~zero_weight).sum()),
            "zero_weight": np.argwhere(zero_weight).tolist(),
            "warnings": decoded.warnings,
        }
        if fmt == "base64":
            head["no_update"] = np.argwhere(no_update).tolist()
            head["values"] = {"dtype": "float32", "shape": list(values.shape), "base64": ""}
            return responses.prepare_base64_json(head, values.astype("<f4").tobytes())
        head["values"] = tensor_kind.json_matrix(values, no_update | zero_weight)
        return responses.prepare_json_text(responses.json_text(head))
