"""Reading deepscope series through TensorBoard's data provider.

Works with both loaders (the Python multiplexer and the Rust data server) and
any log dir TensorBoard can read, because it reads only through
`context.data_provider`. Returns plain numpy results; HTTP lives in the plugin.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tensorboard import errors
from tensorboard.data import provider

from deepscope import metadata
from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb

# Stands in for "no limit" where the sampling hint is 0 (keep every sample).
_UNBOUNDED = 2**31 - 1


@dataclasses.dataclass
class SeriesInfo:
    """What the tag list says about one series."""

    kind: str
    version: int
    plugin_data: pb.PluginData | None  # None when it cannot be read
    error: str | None = None

    def to_json(self) -> dict:
        entry: dict = {"kind": self.kind, "version": self.version}
        if self.error:
            entry["error"] = self.error
        elif self.plugin_data is not None:
            details = self.plugin_data.WhichOneof("details")
            if details == "update_ratios":
                entry["names"] = list(self.plugin_data.update_ratios.names)
            elif details is not None:
                # The kind's constant facts, e.g. a spectrum's weight_shape and layer_kind.
                entry.update(_scalar_fields(getattr(self.plugin_data, details)))
        return entry


def _scalar_fields(message) -> dict:
    """A message of scalar and repeated scalar fields as JSON values (int64 as numbers)."""
    result = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        result[field.name] = list(value) if _is_repeated(field) else value
    return result


def _is_repeated(field) -> bool:
    # protobuf 6.31 and 7 have FieldDescriptor.is_repeated; 7 dropped label.
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return field.label == field.LABEL_REPEATED


def describe(content: bytes) -> SeriesInfo:
    """Read a series' plugin data into a `SeriesInfo`; unreadable or newer ones carry an error."""
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
    return SeriesInfo(
        kind=metadata.KIND_NAMES[plugin_data.kind],
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
    for listing in (
        data_provider.list_tensors(ctx, **kwargs),
        data_provider.list_blob_sequences(ctx, **kwargs),
    ):
        for run, tags in listing.items():
            for tag, time_series in tags.items():
                result.setdefault(run, {})[tag] = describe(time_series.plugin_content)
    return result


class SeriesCatalog:
    """The deepscope series of each experiment, their metadata remembered.

    TensorBoard keeps a series' first metadata, so it does not change while the
    series exists: remembering it spares each data request a listing round trip
    (tens of milliseconds on the Rust data server). `list()` refreshes what is
    remembered of an experiment; `forget()` drops a series that turned out gone.
    """

    def __init__(self, data_provider):
        self._data_provider = data_provider
        self._known: dict[tuple[str, str, str], SeriesInfo] = {}

    def list(self, ctx, experiment_id: str) -> dict[str, dict[str, SeriesInfo]]:
        """Every deepscope series of the experiment: run → tag → `SeriesInfo`."""
        listing = list_series(self._data_provider, ctx, experiment_id)
        for key in [key for key in self._known if key[0] == experiment_id]:
            del self._known[key]
        for run, tags in listing.items():
            for tag, info in tags.items():
                self._known[(experiment_id, run, tag)] = info
        return listing

    def forget(self, experiment_id: str, run: str, tag: str) -> None:
        self._known.pop((experiment_id, run, tag), None)

    def find(self, ctx, experiment_id: str, run: str, tag: str, kind: str) -> pb.PluginData:
        """The plugin data of (run, tag), which must hold `kind`.

        Raises:
          errors.NotFoundError: no such run or tag (the message lists what exists).
          errors.InvalidArgumentError: the series is of another kind or unreadable.
        """
        info = self._known.get((experiment_id, run, tag))
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
                    f"no run named {run!r} has deepscope data; runs with deepscope data: {known}"
                )
            if tag not in listing[run]:
                known = ", ".join(repr(t) for t in sorted(listing[run]))
                raise errors.NotFoundError(
                    f"run {run!r} has no deepscope tag {tag!r}; its tags: {known}"
                )
            info = self._known[(experiment_id, run, tag)] = listing[run][tag]
        if info.error:
            raise errors.InvalidArgumentError(f"tag {tag!r} of run {run!r}: {info.error}")
        if info.kind != kind:
            raise errors.InvalidArgumentError(
                f"tag {tag!r} of run {run!r} holds {info.kind} data, not {kind}; "
                f"ask the {info.kind} route for it"
            )
        return info.plugin_data


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


def read_update_ratios(
    data_provider,
    ctx,
    experiment_id: str,
    run: str,
    tag: str,
    plugin_data: pb.PluginData,
    downsample: int | None,
) -> UpdateRatios:
    """Read and decode every kept step of an update-ratio series, in step order."""
    limit = _UNBOUNDED if not downsample else downsample
    data = data_provider.read_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        downsample=limit,
    )
    datums = sorted(data.get(run, {}).get(tag, []), key=lambda d: d.step)
    series_names = list(plugin_data.update_ratios.names)
    series_crc = metadata.names_crc32(series_names)
    row_bytes = 4 * len(series_names)
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
    unknown_names_steps = []
    malformed_steps = []
    for datum in datums:
        try:
            step = pb.UpdateRatiosStep.FromString(datum.numpy.item())
        except Exception:  # damaged bytes: this event's error, not the route's
            malformed_steps.append(datum.step)
            continue
        row = len(steps)
        # A block of K rows carries each row's step; a single step is the event's own.
        rows_steps = step.steps or (datum.step,)
        rows_times = step.wall_times or (datum.wall_time,)
        width = len(step.names) or len(series_names)
        size = width * len(rows_steps)
        if (
            len(rows_times) != len(rows_steps)
            or (step.no_update and max(step.no_update) >= size)
            or (step.zero_weight and max(step.zero_weight) >= size)
            or (step.no_update and step.zero_weight and set(step.no_update) & set(step.zero_weight))
        ):
            malformed_steps.append(datum.step)
            continue
        if step.names:
            try:
                ratios = arrays.decode_array(step.ratios).reshape(len(rows_steps), len(step.names))
            except ValueError:
                malformed_steps.append(datum.step)
                continue
            for k in range(len(rows_steps)):
                other_rows.append((row + k, ratios[k], list(step.names)))
            for name in step.names:
                columns.setdefault(name, len(columns))
        elif step.names_crc32 in (series_crc, 0) and (
            step.ratios.dtype == pb.FLOAT32 and len(step.ratios.data) == row_bytes * len(rows_steps)
        ):
            chunks.append(step.ratios.data)
            own_rows.extend(range(row, row + len(rows_steps)))
        else:
            unknown_names_steps.append(datum.step)
            continue
        if step.no_update:
            no_update_marks.extend((row + i // width, i % width) for i in step.no_update)
        if step.zero_weight:
            zero_weight_marks.extend((row + i // width, i % width) for i in step.zero_weight)
        steps.extend(rows_steps)
        wall_times.extend(rows_times)
    warnings: list[str] = []
    if malformed_steps:
        warnings.append(
            f"{len(malformed_steps)} event(s) (first at step {malformed_steps[0]}) are malformed "
            "and left out"
        )
    if unknown_names_steps:
        warnings.append(
            f"{len(unknown_names_steps)} step(s) (first: {unknown_names_steps[0]}) were logged "
            "with parameter names this series' metadata does not list (a restarted run with "
            "other parameters?) and are left out; log them under a new tag"
        )
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
