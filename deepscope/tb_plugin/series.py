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
        elif self.plugin_data is not None and self.plugin_data.HasField("update_ratios"):
            entry["names"] = list(self.plugin_data.update_ratios.names)
        return entry


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


def find_series(
    data_provider, ctx, experiment_id: str, run: str, tag: str, kind: str
) -> pb.PluginData:
    """The plugin data of (run, tag), which must hold `kind`.

    Raises:
      errors.NotFoundError: no such run or tag (the message lists what exists).
      errors.InvalidArgumentError: the series is of another kind or unreadable.
    """
    listing = list_series(
        data_provider, ctx, experiment_id, provider.RunTagFilter(runs=[run], tags=[tag])
    )
    if tag not in listing.get(run, {}):
        # Not found: list everything, so that the message can say what exists.
        listing = list_series(data_provider, ctx, experiment_id)
    if run not in listing:
        known = ", ".join(repr(r) for r in sorted(listing)) or "none"
        raise errors.NotFoundError(
            f"no run named {run!r} has deepscope data; runs with deepscope data: {known}"
        )
    if tag not in listing[run]:
        known = ", ".join(repr(t) for t in sorted(listing[run]))
        raise errors.NotFoundError(f"run {run!r} has no deepscope tag {tag!r}; its tags: {known}")
    info = listing[run][tag]
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
    measured) in that step; values there are NaN and mean nothing.
    """

    steps: np.ndarray  # int64 [S]
    wall_times: np.ndarray  # float64 [S]
    names: list[str]
    values: np.ndarray  # float32 [S, P]
    no_update: np.ndarray  # bool [S, P]
    warnings: list[str]


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
    warnings: list[str] = []
    columns = {name: j for j, name in enumerate(series_names)}
    rows: list[tuple[int, float, np.ndarray, np.ndarray]] = []  # step, time, values, columns
    unknown_names_steps = []
    for datum in datums:
        step = pb.UpdateRatiosStep.FromString(datum.numpy.item())
        values = arrays.decode_array(step.ratios)
        if step.names:
            for name in step.names:
                columns.setdefault(name, len(columns))
            cols = np.fromiter((columns[n] for n in step.names), dtype=np.int64)
        elif step.names_crc32 in (series_crc, 0) and values.shape[0] == len(series_names):
            cols = None  # the series' own names, in order
        else:
            unknown_names_steps.append(datum.step)
            continue
        if step.no_update:
            values = values.copy()
            values[list(step.no_update)] = np.nan
            marks = np.zeros(values.shape[0], dtype=bool)
            marks[list(step.no_update)] = True
        else:
            marks = None
        rows.append((datum.step, datum.wall_time, values, cols, marks))
    if unknown_names_steps:
        warnings.append(
            f"{len(unknown_names_steps)} step(s) (first: {unknown_names_steps[0]}) were logged "
            "with parameter names this series' metadata does not list (a restarted run with "
            "other parameters?) and are left out; log them under a new tag"
        )
    width = len(columns)
    values = np.full((len(rows), width), np.nan, dtype=np.float32)
    no_update = np.zeros((len(rows), width), dtype=bool)
    if rows and all(r[3] is None for r in rows) and width == len(series_names):
        values[:] = np.stack([r[2] for r in rows])
        for i, row in enumerate(rows):
            if row[4] is not None:
                no_update[i] = row[4]
    else:
        no_update[:] = True
        for i, (_, _, row_values, cols, marks) in enumerate(rows):
            cols = np.arange(row_values.shape[0]) if cols is None else cols
            values[i, cols] = row_values
            no_update[i, cols] = False if marks is None else marks
    return UpdateRatios(
        steps=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        wall_times=np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)),
        names=list(columns),
        values=values,
        no_update=no_update,
        warnings=warnings,
    )
