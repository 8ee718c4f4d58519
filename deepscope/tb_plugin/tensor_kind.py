"""The base of the tensor kinds' routes (update ratios, layer values): one route per kind.

A tensor kind's series is small per step and read whole: every kept event is
decoded into one matrix of steps × names (parameters, layers) and served as
one JSON response (docs/http_api.md), in `format=json` or `format=base64`,
optionally of some names only (`name=` repeated). What every such kind shares
lives here: argument parsing, the catalog lookup, the decoded series and whole
responses remembered by the series' version, the `name=` selection, and the
JSON matrix. A kind declares `KIND`, `ROUTE`, `NOUN`, `read(...)` (decode every
kept event: a damaged one drops its own rows with a warning) and `body(...)`
(the decoded series as a response). Blob kinds have their own base, `blob_kind`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import werkzeug
from tensorboard import errors, plugin_util
from tensorboard.data import provider

from deepscope import metadata
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_steps, responses, series
from deepscope.tb_plugin.route_context import RouteContext

FORMATS = ("json", "base64")
# Damaged events whose reason a warning spells out (the rest are counted).
REASONS_SHOWN = 5


StepData = TypeVar("StepData")


@dataclasses.dataclass
class DecodedSeries(Generic[StepData]):
    """A decoded series of one step payload per event: the good steps in order, and the
    damaged ones' errors. `StepData` has an `nbytes` (the cache's size estimate)."""

    steps: np.ndarray  # int64 [T]
    wall_times: np.ndarray  # float64 [T]
    data: list[StepData]
    damaged: dict[int, str]  # step → what is wrong with its event
    warnings: list[str]

    @property
    def nbytes(self) -> int:
        return (
            self.steps.nbytes
            + self.wall_times.nbytes
            + sum(d.nbytes for d in self.data)
            + sum(len(m) + 50 for m in self.damaged.values())
            + 200
        )


class MalformedEvent(ValueError):
    """An event that cannot be read; the message says what is wrong with it."""


def read_events(
    data_provider, ctx, experiment_id: str, run: str, tag: str, downsample: int | None
) -> list:
    """Every kept event (`TensorDatum`) of (run, tag), in step order; 0 or None keeps all."""
    data = data_provider.read_tensors(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        downsample=downsample or blob_steps.UNBOUNDED,
    )
    return sorted(data.get(run, {}).get(tag, []), key=lambda d: d.step)


def decode_series(datums, decode: Callable[[object], StepData]) -> DecodedSeries[StepData]:
    """Each event's payload decoded by `decode` (a `TensorDatum`'s `numpy` in, the step's
    data out, `MalformedEvent` for a damaged one), in the events' order.

    A damaged event (its payload, or a wall time that is not a number of
    seconds) is left out, named in `warnings` and kept in `damaged` (step →
    what is wrong): the rest of the series is served.
    """
    steps, wall_times, data = [], [], []
    malformed: list[tuple[int, str]] = []
    for datum in datums:
        try:
            wall_time = float(datum.wall_time)
            if not math.isfinite(wall_time):
                raise MalformedEvent(f"wall time {wall_time} is not a number of seconds")
            decoded = decode(datum.numpy)
        except MalformedEvent as error:
            malformed.append((int(datum.step), str(error)))
            continue
        steps.append(int(datum.step))
        wall_times.append(wall_time)
        data.append(decoded)
    return DecodedSeries(
        steps=np.asarray(steps, dtype=np.int64),
        wall_times=np.asarray(wall_times, dtype=np.float64),
        data=data,
        damaged=dict(malformed),
        warnings=malformed_warnings(malformed),
    )


@dataclasses.dataclass(frozen=True)
class StepChoice:
    """The step a one-step route answers: every kept step (good and damaged, in order), the
    step chosen, and its row in the decoded series (None when it is damaged: see `error`)."""

    kept: list[int]
    step: int
    row: int | None
    error: str | None


def choose_step(decoded: DecodedSeries, run: str, tag: str, step: int | None) -> StepChoice:
    """`step` of a decoded series (None: the last kept one); NotFoundError (404) naming the
    run, tag and some of its steps when the series has none or not that one."""
    kept = sorted({*decoded.steps.tolist(), *decoded.damaged})
    if not kept:
        raise errors.NotFoundError(
            f"tag {responses.echo(tag)} of run {responses.echo(run)} has no steps"
        )
    if step is None:
        step = kept[-1]
    if step in decoded.damaged:
        return StepChoice(kept, step, None, decoded.damaged[step])
    where = np.flatnonzero(decoded.steps == step)
    if not where.size:
        shown = ", ".join(str(s) for s in kept[:20]) + (" ..." if len(kept) > 20 else "")
        raise errors.NotFoundError(
            f"tag {responses.echo(tag)} of run {responses.echo(run)} has no step {step}; "
            f"its steps: {shown}"
        )
    return StepChoice(kept, step, int(where[0]), None)


def string_payload(array, message: str) -> bytes:
    """The bytes of an event's tensor value, which must be one string scalar holding a
    serialized `message` (e.g. "UpdateRatiosStep"); `MalformedEvent` saying what it is else."""
    try:
        content = array.item()  # a string scalar's bytes (the cheap test first)
    except (AttributeError, ValueError):
        content = None
    if isinstance(content, bytes):
        return content
    array = np.asarray(array)
    if array.dtype.kind not in "OS":
        raise MalformedEvent(
            f"the payload is a {array.dtype} tensor of shape {list(array.shape)}, not a "
            f"serialized {message} (a string scalar)"
        )
    if array.size != 1:
        raise MalformedEvent(
            f"the payload is a string tensor of shape {list(array.shape)}, not one "
            f"serialized {message} (a string scalar)"
        )
    raise MalformedEvent(f"the payload holds a {type(array.item()).__name__}, not bytes")


def malformed_warnings(malformed: list[tuple[int, str]]) -> list[str]:
    """A response's warning for damaged events: each (step, reason), the first few spelled out."""
    if not malformed:
        return []
    reasons = "; ".join(f"step {s}: {reason}" for s, reason in malformed[:REASONS_SHOWN])
    more = len(malformed) - REASONS_SHOWN
    return [
        f"{len(malformed)} event(s) (first at step {malformed[0][0]}) are malformed and "
        f"left out: {reasons}" + (f"; and {more} more" if more > 0 else "")
    ]


def count(n: int, word: str) -> str:
    """ "1 layer", "3 layers": a count for messages."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def dtype_name(dtype: int) -> str:
    """An `Array` dtype's name in messages (an unknown number said so)."""
    try:
        return pb.DType.Name(dtype)
    except ValueError:
        return f"unknown dtype {dtype}"


class TensorKindRoutes:
    """One tensor kind's route, its decoded series and whole responses remembered.

    Both are remembered by the series' version (`series.tensor_series_version`),
    listed before reading: steps that arrive meanwhile give a newer version, so
    nothing older is served under it. Subclasses set:

      KIND: the kind's name in the registry, e.g. "layer_values".
      ROUTE: the route's path without the slash (usually KIND).
      NOUN: what a column is, in messages ("parameter", "layer").
      SERIES_BYTES, BODY_BYTES: the two caches' budgets.
    and implement `read` and `make_body`.
    """

    KIND: str = ""
    ROUTE: str = ""
    NOUN: str = "name"
    SERIES_BYTES = 32 * 1024 * 1024
    BODY_BYTES = 32 * 1024 * 1024

    def __init__(self, context: RouteContext):
        self._context = context
        self._series = blob_steps.LRUCache(self.SERIES_BYTES, weigh=lambda s: s.nbytes)
        self._bodies = blob_steps.LRUCache(self.BODY_BYTES, weigh=lambda b: b.nbytes)

    def apps(self) -> dict:
        return {f"/{self.ROUTE}": self._serve}

    # ------------------------------------------------------------- what a kind declares

    def read(self, ctx, experiment: str, run: str, tag: str, plugin_data: pb.PluginData):
        """Every kept event of (run, tag) decoded; the result has `steps` and `nbytes`."""
        raise NotImplementedError

    def make_body(
        self, decoded, plugin_data: pb.PluginData, run: str, tag: str, fmt: str, wanted: list[str]
    ) -> responses.PreparedJson:
        """The route's response of a decoded series (`select_columns` for `wanted`)."""
        raise NotImplementedError

    # ------------------------------------------------------------- shared

    def decoded(self, ctx, experiment: str, run: str, tag: str):
        """The decoded series (run, tag), remembered; 404/400 as `SeriesCatalog.find`."""
        plugin_data = self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        version = self._version(ctx, experiment, run, tag)
        return self._decoded(ctx, experiment, run, tag, plugin_data, version)

    def body(
        self,
        ctx,
        experiment: str,
        run: str,
        tag: str,
        fmt: str = "json",
        wanted: Sequence[str] = (),
    ) -> responses.PreparedJson:
        """The response of (run, tag) in `fmt` (docs/http_api.md), of the `wanted` names
        only when any are, in their order; remembered by the series' version."""
        plugin_data = self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        version = self._version(ctx, experiment, run, tag)
        body_key = ((experiment, run, tag, version), fmt, tuple(wanted))
        if version is not None:
            body = self._bodies.get(body_key)
            if body is not None:
                return body
        decoded = self._decoded(ctx, experiment, run, tag, plugin_data, version)
        body = self.make_body(decoded, plugin_data, run, tag, fmt, list(wanted))
        if version is not None and len(decoded.steps):
            self._bodies.put(body_key, body)
        return body

    def _version(self, ctx, experiment: str, run: str, tag: str):
        # Listed before reading: steps that arrive meanwhile give a newer version.
        return series.tensor_series_version(self._context.data_provider, ctx, experiment, run, tag)

    def _decoded(self, ctx, experiment: str, run: str, tag: str, plugin_data, version):
        key = (experiment, run, tag, version)
        decoded = self._series.get(key) if version is not None else None
        if decoded is None:
            decoded = self.read(ctx, experiment, run, tag, plugin_data)
            if version is not None and len(decoded.steps):
                self._series.put(key, decoded)
        if not len(decoded.steps):  # gone since it was remembered? look again
            self._context.catalog.forget(experiment, run, tag)
            self._context.catalog.find(ctx, experiment, run, tag, self.KIND)
        return decoded

    @werkzeug.wrappers.Request.application
    def _serve(self, request):
        example = f"{self.ROUTE}?run=RUN&tag=TAG"
        run = responses.required_arg(request, "run", example)
        tag = responses.required_arg(request, "tag", example)
        fmt = responses.choice_arg(request, "format", FORMATS, "json")
        wanted = request.args.getlist("name")
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        return responses.respond_json_text(
            request, self.body(ctx, experiment, run, tag, fmt, wanted)
        )

    def select_columns(
        self, names: list[str], wanted: list[str], run: str, tag: str
    ) -> list[int] | None:
        """Column indices of `wanted` among `names` (None when all are wanted); a 404
        naming the first missing one and listing what exists."""
        if not wanted:
            return None
        index = {name: j for j, name in enumerate(names)}
        missing = [name for name in wanted if name not in index]
        if missing:
            plural = f"{self.NOUN}s"
            raise errors.NotFoundError(
                f"tag {responses.echo(tag)} of run {responses.echo(run)} has no {self.NOUN} "
                f"{responses.echo(missing[0])}; its {plural}: "
                + responses.cap(", ".join(names[:20]))
                + (f" and {len(names) - 20} more" if len(names) > 20 else "")
            )
        return [index[name] for name in wanted]


def json_matrix(values: np.ndarray, not_measured: np.ndarray) -> list[list[Any]]:
    """values [S, P] as nested lists: numbers, null where not measured, "NaN"/"Infinity"/
    "-Infinity" for non-finite measured values (strict JSON has no NaN)."""
    rows = values.tolist()
    for i, j in np.argwhere(not_measured | ~np.isfinite(values)).tolist():
        if not_measured[i, j]:
            rows[i][j] = None
        else:
            value = values[i, j]
            rows[i][j] = "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return rows
