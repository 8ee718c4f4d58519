"""Every number deepscope logged under a log dir, flattened, to compare two runs field by field.

Reads the event files directly (tensorboard's EventFileLoader), finds each
deepscope series' kind from its first event's metadata, decodes each step's
`*Step` message and flattens it to {field path: value}: `Array` messages
decoded to numpy arrays, repeated scalars to arrays, strings kept. Fields that
time the measurement itself (host seconds) are left out: they differ between
any two runs. A block of update-ratio steps (one event holding K steps, grouped
by the writer as time allows) is split into one record per step, so two runs
compare the same whatever their blocking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf.message import Message
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from deepscope import kinds, metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb

TIMING_FIELDS = {"seconds", "wall_times", "measure_seconds", "elapsed_seconds"}


def event_files(log_dir: Path) -> list[Path]:
    return sorted(Path(log_dir).rglob("events.out.tfevents.*"))


def read_logged(log_dir: Path) -> dict[tuple[str, int], dict[str, object]]:
    """{(tag, step): {field path: value}} of every deepscope summary under `log_dir`."""
    by_enum = {kind.enum: kind for kind in kinds.KINDS}
    kind_of: dict[str, kinds.Kind] = {}
    logged: dict[tuple[str, int], dict[str, object]] = {}
    for path in event_files(log_dir):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name == (
                    metadata.PLUGIN_NAME
                ):
                    data = metadata.parse_plugin_data(value.metadata.plugin_data.content)
                    kind_of[value.tag] = by_enum[data.kind]
                kind = kind_of.get(value.tag)
                if kind is None:
                    continue
                step = kind.step_message()
                step.ParseFromString(value.tensor.string_val[0])
                for row_step, row in _rows(step, int(event.step)):
                    key = (value.tag, row_step)
                    assert key not in logged, f"{key} logged twice"
                    logged[key] = flatten(row)
    return logged


def _rows(step: Message, event_step: int) -> list[tuple[int, Message]]:
    """[(global step, one step's message)]: an update-ratio block split by row."""
    if not isinstance(step, pb.UpdateRatiosStep) or not step.steps:
        return [(event_step, step)]
    ratios = arrays.decode_array(step.ratios)
    k, p = ratios.shape
    rows = []
    for i, row_step in enumerate(step.steps):
        row = pb.UpdateRatiosStep()
        row.CopyFrom(step)
        row.ClearField("steps")
        row.ClearField("wall_times")
        row.ratios.CopyFrom(arrays.encode_array(ratios[i]))
        for name in ("no_update", "zero_weight"):
            field = getattr(row, name)
            del field[:]
            field.extend(j - i * p for j in getattr(step, name) if i * p <= j < (i + 1) * p)
        rows.append((int(row_step), row))
    return rows


def flatten(message: Message, prefix: str = "") -> dict[str, object]:
    """A message's set fields as {dotted path: value}; Arrays decoded."""
    if isinstance(message, pb.Array):
        return {prefix: arrays.decode_array(message)}
    out: dict[str, object] = {}
    for field, value in message.ListFields():
        if field.name in TIMING_FIELDS:
            continue
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.type == field.TYPE_MESSAGE:
            if _repeated(field) and not field.message_type.GetOptions().map_entry:
                for i, item in enumerate(value):
                    out.update(flatten(item, f"{path}[{i}]"))
            elif _repeated(field):
                for k in sorted(value):
                    item = value[k]
                    out.update(
                        flatten(item, f"{path}[{k}]")
                        if isinstance(item, Message)
                        else {f"{path}[{k}]": item}
                    )
            else:
                out.update(flatten(value, path))
        elif _repeated(field):
            out[path] = list(value) if field.type == field.TYPE_STRING else np.asarray(list(value))
        else:
            out[path] = value
    return out


def assert_same_numbers(got: dict, want: dict, rtol: float, atol: float, what: str = "") -> None:
    """Every series step and field of `want` is in `got` with the same value (floats within tol)."""
    assert sorted(got) == sorted(want), (
        f"{what}: logged series steps differ: {sorted(set(got) ^ set(want))}"
    )
    for key in want:
        g, w = got[key], want[key]
        assert sorted(g) == sorted(w), f"{what} {key}: fields differ: {sorted(set(g) ^ set(w))}"
        for field in w:
            a, b = g[field], w[field]
            if isinstance(b, (str, bytes, bool)) or (
                isinstance(b, list) and b and isinstance(b[0], str)
            ):
                assert a == b, f"{what} {key} {field}: {a!r} != {b!r}"
                continue
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape, f"{what} {key} {field}: shape {a.shape} != {b.shape}"
            if a.dtype.kind in "iub" and b.dtype.kind in "iub":
                np.testing.assert_array_equal(a, b, err_msg=f"{what} {key} {field}")
            else:
                # Values stored in a narrower float than the tolerance asked for (float16
                # arrays) may round to the neighbouring value: two of its ulps. Values
                # near 0 carry the rounding of their array's larger values (a sum of
                # products that cancels): the absolute tolerance scales with the array.
                eps = float(np.finfo(b.dtype).eps) if b.dtype.kind == "f" else 0.0
                finite = np.abs(b[np.isfinite(b)]) if b.dtype.kind == "f" else np.abs(b)
                scale = float(finite.max()) if finite.size else 0.0
                np.testing.assert_allclose(
                    a.astype(np.float64),
                    b.astype(np.float64),
                    rtol=max(rtol, 2 * eps),
                    atol=max(atol, (rtol + 2 * eps) * scale),
                    equal_nan=True,
                    err_msg=f"{what} {key} {field}",
                )


def _repeated(field) -> bool:
    """Whether a field is repeated (protobuf 6 and 7 both)."""
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == field.LABEL_REPEATED
