"""Event files of damaged deepscope data, for the damaged-data fuzz tests (issue 10 §3).

`write_damaged_log(root)` writes one run, `RUN`, holding for every kind of
`deepscope.kinds.KINDS`:

- one series per damage (tag `<kind>/<damage>`): good steps `GOOD_STEPS` around
  a damaged step `DAMAGED_STEP` (and a series whose newest step is the damaged
  one, `<kind>/newest_damaged`). The good payloads come from the kinds' public
  builders (`deepscope.writer.*`); the damage is done by hand on the bytes or
  on the parsed `*Step` message: garbage bytes, a truncated payload, a flipped
  byte that still parses (|ρ| > 1, a negative singular value or ratio, a
  shape that no longer fits the data), an unknown dtype enum, data of another
  size than the shape, 0-d arrays, indices out of range, |ρ| > 1, a blob step
  with no blobs, a payload of another kind's message, and per kind more (a
  float tensor, a [2] string vector, no names for update ratios, ...).
  Each damage is checked here to be what it says (a garbage payload does not
  parse, a flipped ρ is beyond 1, ...). The damages every kind gets are here;
  each kind's good payload (`good`), main array (`MAIN_ARRAY`) and own damages
  (`damages`) are its module's, tests/kind_cases/<kind>.py, found by its name;
- one series per metadata damage (tag `meta/<kind>/<damage>`) with good
  payloads: garbage, empty, an unknown kind, a newer schema version, another
  kind's details, the other data class.

`write_crc_flipped_log(root)` writes run `CRC_RUN`: a correlation series with
a byte flipped on disk, its record's checksum left as written.
`write_odd_name_log(root)` writes good series of every kind whose run or tag
name holds `"`, `\\`, a newline, a tab or a control character (the Rust data
server cannot read blob series of such names). Every run's file ends with a
good update-ratio series, `SENTINEL_TAG`: once a loader serves it, it has read
the whole file. `series_plan()` and `metadata_plan()` name what
`write_damaged_log` writes without writing it (for test ids).

The expected values of the good steps are computed independently of the
writer (numpy's SVD and corrcoef, the arrays passed in). Writes with
TensorBoard's tf-free `EventFileWriter`; the builders import torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from deepscope import kinds, metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from tests import kind_cases

RUN = "damaged"
GOOD_STEPS = (10, 30)
DAMAGED_STEP = 20
WALL_TIME = 1_750_000_000.0  # seconds since the epoch of step 0
PARAMETER_NAMES = ("encoder.weight", "encoder.bias", "head.weight")
LAYER_NAMES = ("conv1", "conv2", "fc")
NO_NAMES_TAG = "update_ratios/no_names"
# The last series of every run's file (see `_Events`).
SENTINEL_TAG = "written_last"
CRC_RUN = "crc_flipped"
# Characters of run and tag names that tensorboard-data-server 0.7.2 cannot parse back
# from its own blob keys.
ODD_CHARACTERS = {"quote": '"', "backslash": "\\", "newline": "\n", "tab": "\t", "control": "\x01"}


@dataclasses.dataclass(frozen=True)
class DamagedSeries:
    """One series of damaged data: good steps around damaged ones.

    good: good step → what a reader must serve for it: update ratios' and layer
      values' float32 [P] row, a spectrum's singular values [groups, k] (numpy's
      SVD in float64), a correlation matrix [R, C] (numpy's corrcoef in float64),
      saliency maps [N, ...] (as passed to the builder).
    damaged: the steps whose payload is damaged.
    whole_series: the damage is the series' own (no step can be read right).
    cross: a cross-network correlation series.
    """

    kind: str
    tag: str
    damage: str
    good: Mapping[int, np.ndarray]
    damaged: tuple[int, ...]
    names: tuple[str, ...] = ()
    whole_series: bool = False
    cross: bool = False


@dataclasses.dataclass(frozen=True)
class DamagedMetadata:
    """A series whose metadata is damaged; `kind`'s good payloads at `GOOD_STEPS`."""

    kind: str
    tag: str
    damage: str


@dataclasses.dataclass(frozen=True)
class DamagedLog:
    logdir: Path
    run: str
    series: tuple[DamagedSeries, ...]
    metadata: tuple[DamagedMetadata, ...]


@dataclasses.dataclass(frozen=True)
class OddNamedSeries:
    """A good series whose run or tag name holds an odd character."""

    run: str
    tag: str
    kind: str
    character: str  # the name of the odd character (a key of ODD_CHARACTERS)
    good: Mapping[int, np.ndarray]


# --------------------------------------------------------------------------- good payloads


@dataclasses.dataclass(frozen=True)
class Good:
    summary: summary_pb2.Summary  # the builder's, metadata included
    values: np.ndarray  # what a reader must serve for it


def rng(tag: str, step: int) -> np.random.Generator:
    """The seeded generator of a good step's data."""
    return np.random.default_rng([sum(tag.encode()), len(tag), step])


def _good(kind: str, tag: str, step: int, cross: bool = False) -> Good:
    """A good step of `kind`, from its tests/kind_cases/<kind>.py `good`."""
    return kind_cases.attribute(kind, "good")(tag, step, cross)


# --------------------------------------------------------------------------- damage by hand


def _is_blob(kind: str) -> bool:
    return kinds.by_name(kind).data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE


def _payload(summary: summary_pb2.Summary) -> bytes:
    return summary.value[0].tensor.string_val[0]


def _with_payload(summary: summary_pb2.Summary, payload: bytes) -> summary_pb2.Summary:
    changed = summary_pb2.Summary()
    changed.CopyFrom(summary)
    del changed.value[0].tensor.string_val[:]
    changed.value[0].tensor.string_val.append(payload)
    return changed


def _parses(kind: str, payload: bytes) -> bool:
    try:
        kinds.by_name(kind).step_message.FromString(payload)
    except Exception:
        return False
    return True


def mutated(kind: str, mutate: Callable) -> Callable:
    """A damage that parses the good payload's `*Step`, changes it with `mutate(step)`."""

    def damage(good: Good) -> summary_pb2.Summary:
        step = kinds.by_name(kind).step_message.FromString(_payload(good.summary))
        mutate(step)
        return _with_payload(good.summary, step.SerializeToString())

    return damage


def _garbage(kind: str):
    def damage(good: Good) -> summary_pb2.Summary:
        payload = b"\xff" * 24  # a varint that never ends
        assert not _parses(kind, payload)
        return _with_payload(good.summary, payload)

    return damage


def _truncated(kind: str):
    def damage(good: Good) -> summary_pb2.Summary:
        payload = _payload(good.summary)
        for cut in range(len(payload) // 2, len(payload)):
            if not _parses(kind, payload[:cut]):
                return _with_payload(good.summary, payload[:cut])
        raise AssertionError(f"no truncation of a {kind} payload fails to parse")

    return damage


def _main_array(kind: str, step) -> pb.Array:
    return getattr(step, kind_cases.attribute(kind, "MAIN_ARRAY"))


def _wrong_dtype(kind: str):
    return mutated(kind, lambda step: setattr(_main_array(kind, step), "dtype", 99))


def _size_mismatch(kind: str):
    def mutate(step):
        array = _main_array(kind, step)
        itemsize = arrays.decode_array(array).dtype.itemsize
        array.data = array.data[:-itemsize]  # one element short of the shape

    return mutated(kind, mutate)


def _zero_d(kind: str):
    def mutate(step):
        names = (
            ("maps", "inputs")
            if kind == "saliency"
            else (kind_cases.attribute(kind, "MAIN_ARRAY"),)
        )
        for name in names:
            array = getattr(step, name)
            itemsize = arrays.decode_array(array).dtype.itemsize
            del array.shape[:]
            array.data = array.data[:itemsize]  # one element, shape []

    return mutated(kind, mutate)


def _empty_payload(kind: str):
    """An empty payload: it parses, as a message with nothing set."""
    return lambda good: _with_payload(good.summary, b"")


def _shape(kind: str, dims: list[int]):
    """The main array's shape replaced by `dims` (its data unchanged)."""

    def mutate(step):
        array = _main_array(kind, step)
        array.shape[:] = dims

    return mutated(kind, mutate)


def _foreign_payload(kind: str) -> bytes:
    """Another kind's step message, whose main array cannot be `kind`'s."""
    if kind == "saliency":
        values = np.array([[3.0, 2.0, 1.0]], np.float32)
        return pb.SpectrumStep(singular_values=arrays.encode_array(values)).SerializeToString()
    images = np.ones((2, 1, 3, 3), np.float16)
    return pb.SaliencyStep(
        inputs=arrays.encode_array(images), maps=arrays.encode_array(images)
    ).SerializeToString()


def _wrong_message(kind: str):
    return lambda good: _with_payload(good.summary, _foreign_payload(kind))


def _xor_byte(payload: bytes, offset: int, mask: int) -> bytes:
    changed = bytearray(payload)
    changed[offset] ^= mask
    return bytes(changed)


def _flipped_byte(kind: str):
    """One byte of the payload flipped, the message still parsing, a value now invalid."""

    def damage(good: Good) -> summary_pb2.Summary:
        payload = _payload(good.summary)
        message_type = kinds.by_name(kind).step_message
        step = message_type.FromString(payload)
        array = _main_array(kind, step)
        if kind in ("update_ratios", "spectrum"):
            # The sign bit of the first float32: a negative ratio, a negative singular value.
            offset = payload.index(array.data) + 3
            changed = _xor_byte(payload, offset, 0x80)
            value = arrays.decode_array(_main_array(kind, message_type.FromString(changed)))
            assert value.reshape(-1)[0] < 0
        elif kind == "correlation":
            # The exponent of ρ[0, 1] (float16, little-endian: byte 1 is the high one).
            offset = payload.index(array.data) + 2 * 1 + 1
            for mask in (0x20, 0x10, 0x40, 0x08):
                changed = _xor_byte(payload, offset, mask)
                value = arrays.decode_array(_main_array(kind, message_type.FromString(changed)))
                rho = float(value.reshape(-1)[1])
                if np.isfinite(rho) and abs(rho) > 1.5:
                    break
            else:
                raise AssertionError("no flip of ρ's exponent makes |ρ| > 1.5")
        else:
            # Dim 0 of the main array's shape: the data no longer fits it.
            serialized = array.SerializeToString()
            assert serialized[0] == 0x0A and serialized[2] < 0x80  # packed shape, small dim 0
            offset = payload.index(serialized) + 2
            changed = _xor_byte(payload, offset, 0x01)
            try:
                arrays.decode_array(_main_array(kind, message_type.FromString(changed)))
            except ValueError:
                pass
            else:
                raise AssertionError("the flipped shape still fits the data")
        return _with_payload(good.summary, changed)

    return damage


def _no_blobs(kind: str):
    def damage(good: Good) -> summary_pb2.Summary:
        changed = summary_pb2.Summary()
        changed.CopyFrom(good.summary)
        tensor = changed.value[0].tensor
        del tensor.string_val[:]
        tensor.tensor_shape.CopyFrom(
            tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=0)])
        )
        return changed

    return damage


def _tensor_of(good: Good, tensor: tensor_pb2.TensorProto) -> summary_pb2.Summary:
    changed = summary_pb2.Summary()
    changed.CopyFrom(good.summary)
    changed.value[0].tensor.CopyFrom(tensor)
    return changed


def float_tensor(kind: str):
    return lambda good: _tensor_of(
        good,
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(),
            float_val=[1.5],
        ),
    )


def string_vector(kind: str):
    def damage(good: Good) -> summary_pb2.Summary:
        payload = _payload(good.summary)
        return _tensor_of(
            good,
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_STRING,
                tensor_shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=2)]
                ),
                string_val=[payload, payload],
            ),
        )

    return damage


def set_values(field: str, value) -> Callable:
    def mutate(step):
        getattr(step, field)[:] = value

    return mutate


# Correlation damages written on a within-layer series (the rest: cross-network), and
# those written on both. A within-layer tag holding "packed" is written as an upper triangle.
_WITHIN_LAYER = frozenset({"packed_wrong_length"})
_ALSO_WITHIN_LAYER = frozenset(
    {"garbage", "flipped_byte", "size_mismatch", "rho_out_of_range", "dead_out_of_range"}
)


def damages(kind: str) -> dict[str, Callable]:
    """Damage name → function(good step) → damaged `Summary`, every damage of `kind`."""
    found = {
        "garbage": _garbage(kind),
        "truncated": _truncated(kind),
        "flipped_byte": _flipped_byte(kind),
        "wrong_dtype": _wrong_dtype(kind),
        "size_mismatch": _size_mismatch(kind),
        "zero_d": _zero_d(kind),
        "wrong_message": _wrong_message(kind),
        "empty_payload": _empty_payload(kind),
        # 2^62 elements: a product of dims that overflows int64 must not pass for a small one.
        "huge_shape": _shape(kind, [2**31, 2**31]),
        "negative_shape": _shape(kind, [-1, 3]),
    }
    if _is_blob(kind):
        found["no_blobs"] = _no_blobs(kind)
    found.update(kind_cases.attribute(kind, "damages")())
    return found


def covered_kinds() -> frozenset[str]:
    """The kinds this module can write damaged data of: those with complete
    tests/kind_cases/<kind>.py modules (`kind_cases.problems()` says what the others lack)."""
    return frozenset(kind_cases.covered())


# --------------------------------------------------------------------------- metadata


def _plugin_data_of(summary: summary_pb2.Summary) -> pb.PluginData:
    return pb.PluginData.FromString(summary.value[0].metadata.plugin_data.content)


def _other_kind(kind: str) -> kinds.Kind:
    return next(
        k for k in kinds.KINDS if k.name != kind and k.details != kinds.by_name(kind).details
    )


def _metadata_damages(kind: str) -> dict[str, Callable[[summary_pb2.Summary], None]]:
    """Damage name → function changing a summary's metadata in place."""

    def content(make: Callable[[pb.PluginData], bytes]):
        def damage(summary):
            plugin_data = summary.value[0].metadata.plugin_data
            plugin_data.content = make(pb.PluginData.FromString(plugin_data.content))

        return damage

    def unknown_kind(data: pb.PluginData) -> bytes:
        return pb.PluginData(version=metadata.SCHEMA_VERSION, kind=99).SerializeToString()

    def newer(data: pb.PluginData) -> bytes:
        data.version = metadata.SCHEMA_VERSION + 1
        return data.SerializeToString()

    def other_details(data: pb.PluginData) -> bytes:
        other = _other_kind(kind)
        changed = pb.PluginData(version=metadata.SCHEMA_VERSION, kind=data.kind)
        getattr(changed, other.details).SetInParent()
        return changed.SerializeToString()

    def other_data_class(summary):
        blob = summary_pb2.DATA_CLASS_BLOB_SEQUENCE
        tensor = summary_pb2.DATA_CLASS_TENSOR
        summary.value[0].metadata.data_class = tensor if _is_blob(kind) else blob

    return {
        "garbage": content(lambda data: b"\xff" * 8),
        "empty": content(lambda data: b""),
        "unknown_kind": content(unknown_kind),
        "newer_version": content(newer),
        "other_details": content(other_details),
        "other_data_class": other_data_class,
    }


# --------------------------------------------------------------------------- writing


class _Events:
    """Events of one run, written with TensorBoard's tf-free writer.

    `close()` ends the file with a good update-ratio series, `SENTINEL_TAG`: a
    loader that serves its steps has read the whole file.
    """

    def __init__(self, logdir: Path):
        self._writer = EventFileWriter(str(logdir))

    def add(self, summary: summary_pb2.Summary, step: int) -> None:
        self._writer.add_event(
            event_pb2.Event(summary=summary, step=step, wall_time=WALL_TIME + step)
        )

    def close(self) -> None:
        _write_series(self, "update_ratios", SENTINEL_TAG, None, GOOD_STEPS, ())
        self._writer.close()


def _without_metadata(summary: summary_pb2.Summary) -> summary_pb2.Summary:
    changed = summary_pb2.Summary()
    changed.CopyFrom(summary)
    changed.value[0].ClearField("metadata")
    return changed


def _write_series(
    events: _Events,
    kind: str,
    tag: str,
    damage: Callable | None,
    steps: tuple[int, ...],
    damaged: tuple[int, ...],
    cross: bool = False,
) -> dict[int, np.ndarray]:
    """Good steps and damaged ones, in step order, metadata on the first; the good values."""
    good_values = {}
    for i, step in enumerate(steps):
        good = _good(kind, tag, step, cross)
        summary = damage(good) if step in damaged else good.summary
        if step not in damaged:
            good_values[step] = good.values
        events.add(summary if i == 0 else _without_metadata(summary), step)
    return good_values


@dataclasses.dataclass(frozen=True)
class Planned:
    """A damaged series `write_damaged_log` writes (known without writing: for test ids)."""

    kind: str
    tag: str
    damage: str
    cross: bool
    steps: tuple[int, ...]


def series_plan() -> list[Planned]:
    """Every damaged-payload series of `write_damaged_log`, in writing order."""
    plan = []
    all_steps = tuple(sorted((*GOOD_STEPS, DAMAGED_STEP)))
    for kind in kind_cases.covered():
        correlation = kind == "correlation"
        for name in damages(kind):
            plan.append(
                Planned(
                    kind,
                    f"{kind}/{name}",
                    name,
                    correlation and name not in _WITHIN_LAYER,
                    all_steps,
                )
            )
            if correlation and name in _ALSO_WITHIN_LAYER:
                plan.append(Planned(kind, f"{kind}/within/{name}", name, False, all_steps))
        plan.append(
            Planned(
                kind,
                f"{kind}/newest_damaged",
                "newest_damaged",
                correlation,
                (GOOD_STEPS[0], DAMAGED_STEP),
            )
        )
    plan.append(Planned("update_ratios", NO_NAMES_TAG, "no_names", False, GOOD_STEPS))
    return plan


def metadata_plan() -> list[DamagedMetadata]:
    """Every damaged-metadata series of `write_damaged_log`."""
    return [
        DamagedMetadata(kind, f"meta/{kind}/{name}", name)
        for kind in kind_cases.covered()
        for name in _metadata_damages(kind)
    ]


def write_damaged_log(root: Path) -> DamagedLog:
    """Write run `RUN` under `root` (see the module docstring); what was written."""
    events = _Events(root / RUN)
    written = []
    for planned in series_plan():
        if planned.damage == "no_names":
            written.append(_write_no_names(events))
            continue
        kind = planned.kind
        damage = (
            _garbage(kind) if planned.damage == "newest_damaged" else damages(kind)[planned.damage]
        )
        good = _write_series(
            events, kind, planned.tag, damage, planned.steps, (DAMAGED_STEP,), planned.cross
        )
        names = kind_cases.optional(kind, "NAMES", LAYER_NAMES)
        written.append(
            DamagedSeries(
                kind, planned.tag, planned.damage, good, (DAMAGED_STEP,), names, cross=planned.cross
            )
        )
    broken_metadata = metadata_plan()
    for case in broken_metadata:
        damage = _metadata_damages(case.kind)[case.damage]
        for i, step in enumerate(GOOD_STEPS):
            summary = _good(case.kind, case.tag, step, case.kind == "correlation").summary
            if i == 0:
                damage(summary)
                events.add(summary, step)
            else:
                events.add(_without_metadata(summary), step)
    events.close()
    return DamagedLog(root, RUN, tuple(written), tuple(broken_metadata))


def _write_no_names(events: _Events) -> DamagedSeries:
    """An update-ratio series whose metadata lists no names, its steps no values."""
    from deepscope.writer.summary import tensor_summary

    tag = NO_NAMES_TAG
    plugin_data = pb.PluginData(kind=pb.UPDATE_RATIOS, update_ratios=pb.UpdateRatiosInfo())
    for i, step in enumerate(GOOD_STEPS):
        payload = pb.UpdateRatiosStep(ratios=arrays.encode_array(np.zeros(0, np.float32)))
        events.add(
            tensor_summary(tag, payload.SerializeToString(), plugin_data if i == 0 else None), step
        )
    return DamagedSeries("update_ratios", tag, "no_names", {}, GOOD_STEPS, (), whole_series=True)


def write_crc_flipped_log(root: Path) -> DamagedSeries:
    """Run `CRC_RUN`: a cross correlation series whose step 20 has a byte flipped on disk.

    The flipped byte is the exponent of ρ[0, 1] in the record's payload, and the
    record's checksum is left as written: TensorBoard's Python loader stops
    reading the file at that record (its CRC check fails), the Rust data server
    (which checks no record checksums) serves |ρ| > 1. The run's sentinel is
    written first, so that it does not wait behind the damaged record.
    """
    tag = "correlation/record_flipped_byte"
    events = _Events(root / CRC_RUN)
    _write_series(events, "update_ratios", SENTINEL_TAG, None, GOOD_STEPS, ())
    steps = tuple(sorted((*GOOD_STEPS, DAMAGED_STEP)))
    payloads = {}
    good = {}
    for i, step in enumerate(steps):
        written = _good("correlation", tag, step, True)
        payloads[step] = _payload(written.summary)
        good[step] = written.values
        events.add(written.summary if i == 0 else _without_metadata(written.summary), step)
    events._writer.close()  # no sentinel after the damage
    (path,) = (root / CRC_RUN).glob("events.out.tfevents.*")
    data = bytearray(path.read_bytes())
    matrix = pb.CorrelationStep.FromString(payloads[DAMAGED_STEP]).matrix
    offset = bytes(data).index(matrix.data) + 2 * 1 + 1  # the high byte of ρ[0, 1] (float16)
    assert bytes(data).count(matrix.data) == 1
    for mask in (0x20, 0x10, 0x40, 0x08):
        flipped = bytes([data[offset - 1], data[offset] ^ mask])
        rho = float(np.frombuffer(flipped, "<f2")[0])
        if np.isfinite(rho) and abs(rho) > 1.5:
            data[offset] ^= mask
            break
    else:
        raise AssertionError("no flip of ρ's exponent makes |ρ| > 1.5")
    path.write_bytes(bytes(data))
    del good[DAMAGED_STEP]
    return DamagedSeries(
        "correlation", tag, "record_flipped_byte", good, (DAMAGED_STEP,), cross=True
    )


def write_odd_name_log(root: Path) -> list[OddNamedSeries]:
    """Good series of every kind with an odd character in the run or the tag name."""
    written = []
    plain = _Events(root / "plain")
    for label, char in ODD_CHARACTERS.items():
        run = f"run{char}{label}"
        events = _Events(root / run)
        for kind in kind_cases.covered():
            cross = kind == "correlation"
            good = _write_series(events, kind, f"{kind}/odd_run", None, GOOD_STEPS, (), cross)
            written.append(OddNamedSeries(run, f"{kind}/odd_run", kind, label, good))
            tag = f"{kind}/tag{char}{label}"
            good = _write_series(plain, kind, tag, None, GOOD_STEPS, (), cross)
            written.append(OddNamedSeries("plain", tag, kind, label, good))
        events.close()
    plain.close()
    return written
