"""Listing deepscope series through TensorBoard's data provider: what every kind uses.

`list_series` and `SeriesCatalog` (the series of an experiment, their metadata
remembered) answer "which series exist, of which kind, with which constant
facts"; `tensor_series_version` tells when a tensor series got new events.
Each kind's decoding and data routes live in its own `*_routes` module.

Works with both loaders (the Python multiplexer and the Rust data server) and
any log dir TensorBoard can read, because it reads only through
`context.data_provider`.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from tensorboard import errors
from tensorboard.compat.proto import summary_pb2
from tensorboard.data import provider

from deepscope import kinds, metadata
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import responses

_DATA_CLASS_WORDS = {
    summary_pb2.DATA_CLASS_TENSOR: "a tensor",
    summary_pb2.DATA_CLASS_BLOB_SEQUENCE: "a blob sequence",
}


@dataclasses.dataclass
class SeriesInfo:
    """What the tag list says about one series."""

    kind: str
    version: int
    plugin_data: pb.PluginData | None  # None when it cannot be read
    error: str | None = None
    # The listing's newest step and wall time: what changes when the series gets events.
    max_step: int | None = None
    max_wall_time: float | None = None

    def to_json(self) -> dict:
        entry: dict = {"kind": self.kind, "version": self.version}
        if self.error:
            entry["error"] = self.error
        elif self.plugin_data is not None:
            details = self.plugin_data.WhichOneof("details")
            if details is not None:
                # The kind's constant facts: update ratios' names, a spectrum's weight_shape...
                entry.update(_scalar_fields(getattr(self.plugin_data, details)))
        return entry


def _scalar_fields(message) -> dict:
    """A message of scalar and repeated scalar fields as JSON values.

    int64 as numbers; an enum as its value's name, lower case without the enum's
    prefix (`LayerValuesScale.LINEAR` → "linear"), a number it does not know as is.
    """
    result = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.enum_type is not None:
            value = (
                [_enum_name(field, v) for v in value]
                if _is_repeated(field)
                else (_enum_name(field, value))
            )
        result[field.name] = list(value) if _is_repeated(field) else value
    return result


def _enum_name(field, number: int) -> str | int:
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return number
    prefix = _enum_prefix(field.enum_type.name)
    name = value.name
    return (name[len(prefix) :] if name.startswith(prefix) else name).lower()


def _enum_prefix(enum_name: str) -> str:
    """ "LayerValuesScale" → "LAYER_VALUES_SCALE_" (proto3's prefix for an enum's values)."""
    snake = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(enum_name))
    return snake.upper() + "_"


def _is_repeated(field) -> bool:
    # protobuf 6.31 and 7 have FieldDescriptor.is_repeated; 7 dropped label.
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return field.label == field.LABEL_REPEATED


def describe(content: bytes, data_class: int | None = None) -> SeriesInfo:
    """Read a series' plugin data into a `SeriesInfo`; unreadable or newer ones carry an error.

    `data_class`: how TensorBoard stores the series (which listing it came from);
    a kind stored otherwise than the registry says is an error too, since its
    routes could not read it.
    """
    try:
        plugin_data = metadata.parse_plugin_data(content)
    except metadata.MetadataError as error:
        loose = pb.PluginData()
        try:
            loose.ParseFromString(content)
        except Exception:
            loose = pb.PluginData()
        return SeriesInfo(
            kind=metadata.KIND_NAMES.get(loose.kind, "unknown"),
            version=loose.version,
            plugin_data=None,
            error=str(error),
        )
    kind = kinds.BY_ENUM[plugin_data.kind]
    if data_class is not None and data_class != kind.data_class:
        return SeriesInfo(
            kind=kind.name,
            version=plugin_data.version,
            plugin_data=None,
            error=(
                f"stored as {_DATA_CLASS_WORDS.get(data_class, f'data class {data_class}')}, "
                f"but {kind.name} series are stored as {_DATA_CLASS_WORDS[kind.data_class]}: "
                "written by another tool or damaged; log the series again with deepscope"
            ),
        )
    return SeriesInfo(
        kind=kind.name,
        version=plugin_data.version,
        plugin_data=plugin_data,
    )


def list_series(
    data_provider, ctx, experiment_id: str, run_tag_filter: provider.RunTagFilter | None = None
) -> dict[str, dict[str, SeriesInfo]]:
    """Every deepscope series of the experiment (or those the filter lets through)."""
    result: dict[str, dict[str, SeriesInfo]] = {}
    kwargs = dict(
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=run_tag_filter,
    )
    for data_class, listing in (
        (summary_pb2.DATA_CLASS_TENSOR, data_provider.list_tensors(ctx, **kwargs)),
        (summary_pb2.DATA_CLASS_BLOB_SEQUENCE, data_provider.list_blob_sequences(ctx, **kwargs)),
    ):
        for run, tags in listing.items():
            for tag, time_series in tags.items():
                info = describe(time_series.plugin_content, data_class)
                # (A provider's time series always has both; None where one does not.)
                max_step = getattr(time_series, "max_step", None)
                max_wall_time = getattr(time_series, "max_wall_time", None)
                info.max_step = None if max_step is None else int(max_step)
                info.max_wall_time = None if max_wall_time is None else float(max_wall_time)
                result.setdefault(run, {})[tag] = info
    return result


class SeriesCatalog:
    """The deepscope series of each experiment, their metadata remembered.

    TensorBoard keeps a series' first metadata, so it does not change while the
    series exists: remembering it spares each data request a listing round trip
    (tens of milliseconds on the Rust data server). `list()` refreshes what is
    remembered of an experiment; `forget()` drops a series that turned out gone.

    Request threads share one catalog: every use of what is remembered holds a lock.
    """

    def __init__(self, data_provider, clock=time.monotonic):
        self._data_provider = data_provider
        self._known: dict[tuple[str, str, str], SeriesInfo] = {}
        self._listings: dict[str, tuple[float, dict]] = {}  # experiment → (clock, listing)
        self._clock = clock
        self._lock = threading.Lock()

    def list(self, ctx, experiment_id: str) -> dict[str, dict[str, SeriesInfo]]:
        """Every deepscope series of the experiment: run → tag → `SeriesInfo`."""
        now = self._clock()
        listing = list_series(self._data_provider, ctx, experiment_id)
        with self._lock:
            for key in [key for key in self._known if key[0] == experiment_id]:
                del self._known[key]
            for run, tags in listing.items():
                for tag, info in tags.items():
                    self._known[(experiment_id, run, tag)] = info
            self._listings[experiment_id] = (now, listing)
        return listing

    def recent(self, ctx, experiment_id: str, seconds: float) -> dict[str, dict[str, SeriesInfo]]:
        """`list()`'s answer if one is at most `seconds` old (the tab asks `tags` and then
        `findings` in one refresh: they share one listing), else `list()` anew."""
        listing = self.recent_or_none(experiment_id, seconds)
        return listing if listing is not None else self.list(ctx, experiment_id)

    def recent_or_none(self, experiment_id: str, seconds: float):
        """The last `list()` answer if at most `seconds` old, else None (nothing is listed)."""
        with self._lock:
            hit = self._listings.get(experiment_id)
        return hit[1] if hit is not None and self._clock() - hit[0] <= seconds else None

    def forget(self, experiment_id: str, run: str, tag: str) -> None:
        with self._lock:
            self._known.pop((experiment_id, run, tag), None)

    def find(self, ctx, experiment_id: str, run: str, tag: str, kind: str) -> pb.PluginData:
        """The plugin data of (run, tag), which must hold `kind`.

        Raises:
          errors.NotFoundError: no such run or tag (the message lists what exists).
          errors.InvalidArgumentError: the series is of another kind or unreadable.
        """
        key = (experiment_id, run, tag)
        with self._lock:
            info = self._known.get(key)
        if info is None:
            listing = list_series(
                self._data_provider,
                ctx,
                experiment_id,
                provider.RunTagFilter(runs=[run], tags=[tag]),
            )
            if tag not in listing.get(run, {}):
                # Not found: list everything, so that the message can say what exists.
                listing = self.list(ctx, experiment_id)
            if run not in listing:
                known = ", ".join(repr(r) for r in sorted(listing)) or "none"
                raise errors.NotFoundError(
                    f"no run named {responses.echo(run)} has deepscope data; "
                    f"runs with deepscope data: {responses.cap(known)}"
                )
            if tag not in listing[run]:
                known = ", ".join(repr(t) for t in sorted(listing[run]))
                raise errors.NotFoundError(
                    f"run {responses.echo(run)} has no deepscope tag {responses.echo(tag)}; "
                    f"its tags: {responses.cap(known)}"
                )
            info = listing[run][tag]
            with self._lock:
                self._known[key] = info
        if info.error:
            raise errors.InvalidArgumentError(
                f"tag {responses.echo(tag)} of run {responses.echo(run)}: {info.error}"
            )
        if info.kind != kind:
            raise errors.InvalidArgumentError(
                f"tag {responses.echo(tag)} of run {responses.echo(run)} holds {info.kind} data, "
                f"not {kind}; ask the {info.kind} route for it"
            )
        return info.plugin_data


def tensor_series_version(
    data_provider, ctx, experiment_id: str, run: str, tag: str
) -> tuple[int, float] | None:
    """What changes when a tensor series gets new events: (max step, max wall time, s).

    From the provider's listing of that one series (no data read); None when it is
    not listed. A cache keyed by it serves new steps as soon as the loader has them.
    """
    listing = data_provider.list_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
    )
    time_series = listing.get(run, {}).get(tag)
    if time_series is None:
        return None
    return int(time_series.max_step), float(time_series.max_wall_time)
