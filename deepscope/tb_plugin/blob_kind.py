"""The base of every blob kind's routes: arguments, catalog, steps listing, decode and cache,
and the one damaged-step policy.

A blob kind (spectra, correlations, saliency, ...) keeps each logged step as a
blob sequence whose first blob is its serialized `*Step` message. Its routes
derive from `BlobKindRoutes` and declare only what is their own:

- `KIND`: the kind's name in `deepscope.kinds`;
- `decode(data, info) -> decoded`: the step's bytes to a decoded value,
  raising `StepError` (a `ValueError`) on anything wrong: unreadable bytes,
  sizes, shapes against the series' `info`, index and value ranges;
- `series_facts(series)`: the series' constant facts, in the steps listing and
  in a damaged step's body;
- `step_routes()`: routes that read one step (`?run&tag[&step]`), each a
  handler `(series, step, query) -> body` called with a step that decoded;
- `series_routes()`: other routes, each a handler `(query) -> body`;
- optionally `steps_extra` (more fields of the steps listing), `check_series`
  (a one-step route refusing a series before any read), `weigh` and
  `CACHE_CAPACITY` (the decoded-step cache's budget), `as_damaged`.

Handlers return data: a dict (sent as JSON), a `Base64Json` (JSON with array
slots sent as base64) or a prepared `responses.PreparedJson`; the base turns
them into responses. Tests call `routes.handle(route, args)` without HTTP.

The base serves `<kind>_steps?run&tag` (run, tag, facts, steps, wall_times,
plus `steps_extra`). Damaged data, one policy for every kind: a step that
cannot be decoded or fails validation is that step's error, never a 500 nor
the whole series' failure. A one-step route answers it with 200 and
`{"run", "tag", "step", "wall_time", <facts>, "error": message}` (a good
step's body carries `"error": null`); multi-step routes give that step's entry
the error and serve the rest (`read_many`). A kind may instead turn a damaged
step into a decoded value with an error (`as_damaged`; spectra do: their
steps have always carried an error).

Decoded steps (and damaged ones: a blob key's bytes never change) are cached
by blob key, step listings remembered, as `blob_steps` says.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import werkzeug
from tensorboard import context as tb_context
from tensorboard import errors, plugin_util
from werkzeug.datastructures import MultiDict

from deepscope import kinds
from deepscope.tb_plugin import blob_steps, responses
from deepscope.tb_plugin.route_context import RouteContext

# Characters of a run or tag name that tensorboard-data-server 0.7.2 cannot parse back
# from its own blob keys: '"', '\' and control characters (Unicode category Cc).
_UNREADABLE_IN_BLOB_KEYS = frozenset('"\\')


class StepError(ValueError):
    """A step's payload is damaged or inconsistent: what is wrong, for that step's error."""


@dataclasses.dataclass(frozen=True)
class Damaged:
    """A step that could not be decoded: what is wrong with it."""

    error: str


@dataclasses.dataclass(frozen=True)
class Series:
    """One series a request names: its run, tag and metadata."""

    run: str
    tag: str
    experiment: str
    ctx: Any  # tensorboard.context.RequestContext
    plugin_data: Any  # deepscope_pb2.PluginData
    info: Any  # the kind's *Info message (plugin_data.<kind.details>)


@dataclasses.dataclass(frozen=True)
class Step:
    """One kept step of a series, decoded."""

    step: int
    wall_time: float
    key: str  # its first blob's key: what caches of this step are keyed by ("": none)
    decoded: Any


@dataclasses.dataclass(frozen=True)
class Base64Json:
    """A JSON body whose array slots (`{"dtype", "shape", "base64": ""}`) get `data`'s bytes.

    `data`: the bytes of `body[slot_key]`, or slot name → bytes for several slots
    (see `responses.respond_base64_json`).
    """

    body: dict
    data: bytes | dict[str, bytes]
    slot_key: str = "values"


@dataclasses.dataclass(frozen=True)
class Query:
    """A request's query arguments and context, as handlers read them.

    It has `.args` like a werkzeug request, so `responses.required_arg(query, ...)`,
    `int_arg` and `choice_arg` take it.
    """

    args: MultiDict
    ctx: Any
    experiment: str

    @classmethod
    def of(cls, args: Mapping[str, Any], ctx=None, experiment: str = "") -> Query:
        """A query from a mapping (a list value is a repeated argument), for tests."""
        items = []
        for name, value in args.items():
            for item in value if isinstance(value, list | tuple) else [value]:
                items.append((name, str(item)))
        return cls(MultiDict(items), ctx or tb_context.RequestContext(), experiment)


def unreadable_name_character(name: str) -> str | None:
    """The first character of `name` the fast data server cannot take in a blob key, or None."""
    for char in name:
        if char in _UNREADABLE_IN_BLOB_KEYS or unicodedata.category(char) == "Cc":
            return char
    return None


def unreadable_name_error(run: str, tag: str, cause: str) -> errors.InvalidArgumentError | None:
    """The 400 explaining a failed blob read of a series whose name the fast loader cannot read.

    None when neither name contains such a character (the failure is another one).
    """
    for what, name in (("run", run), ("tag", tag)):
        char = unreadable_name_character(name)
        if char is not None:
            return errors.InvalidArgumentError(
                f"cannot read the steps of tag {responses.echo(tag)} of run {responses.echo(run)}: "
                f"the {what} name contains {char!r}, and TensorBoard's fast data server "
                "(tensorboard-data-server, --load_fast=true, the default on Linux) cannot read "
                "blob series (spectra, correlations, saliency) of a run or tag whose name "
                "contains '\"', '\\', a newline, a tab or another control character. Rename "
                "the run or tag, or start tensorboard with --load_fast=false. "
                f"(The data server said: {responses.cap(cause)})"
            )
    return None


class BlobKindRoutes:
    """Routes of one blob kind (see the module docstring). Subclasses set `KIND` and more."""

    KIND: str = ""
    CACHE_CAPACITY: int = 32  # decoded steps kept (in `weigh` units)
    FETCH_THREADS: int = 8  # parallel blob reads of `read_many`

    def __init__(self, context: RouteContext):
        self.kind = kinds.by_name(self.KIND)
        self._context = context
        self._cache = blob_steps.LRUCache(
            self.CACHE_CAPACITY,
            weigh=lambda value: 1 if isinstance(value, Damaged) else self.weigh(value),
        )
        self._listings = blob_steps.StepListings(context)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ what a kind declares

    def decode(self, data: bytes, info) -> Any:
        """One step's first blob, decoded and validated; `StepError` when anything is wrong."""
        raise NotImplementedError

    def weigh(self, decoded) -> int:
        """What a decoded step costs the cache (1: the cache counts steps)."""
        return 1

    def as_damaged(self, error: str) -> Any | None:
        """A damaged step as a decoded value carrying `error`, or None (the base's damaged body)."""
        return None

    def series_facts(self, series: Series) -> dict:
        """The series' constant facts (JSON), in the steps listing and in damaged bodies."""
        return {}

    def steps_extra(self, series: Series, steps: list[blob_steps.BlobStep]) -> dict:
        """More fields of the steps listing (e.g. read from the newest step)."""
        return {}

    def step_routes(self) -> dict[str, Callable[[Series, Step, Query], Any]]:
        """Route name → handler of a route reading one step (`?run&tag[&step]`)."""
        return {}

    def check_series(self, route: str, series: Series) -> None:
        """Raise a 400 when one-step route `route` does not serve `series` (before any read)."""

    def series_routes(self) -> dict[str, Callable[[Query], Any]]:
        """Route name → handler of the kind's other routes."""
        return {}

    # ------------------------------------------------------------------ routes

    @property
    def steps_route(self) -> str:
        return f"{self.kind.name}_steps"

    def example(self, route: str) -> str:
        """An example request of `route`, for the messages of missing arguments."""
        return f"{route}?run=RUN&tag=TAG"

    def handlers(self) -> dict[str, Callable[[Query], Any]]:
        """Route name → handler `(query) -> body`, every route of the kind."""
        handlers: dict[str, Callable[[Query], Any]] = {self.steps_route: self._steps}
        for name, handler in self.step_routes().items():
            handlers[name] = self._one_step(name, handler)
        handlers.update(self.series_routes())
        return handlers

    def handle(self, route: str, args: Mapping[str, Any], ctx=None, experiment: str = ""):
        """The body `route` answers `args` with (no HTTP: for tests and benchmarks)."""
        return self.handlers()[route](Query.of(args, ctx, experiment))

    def apps(self) -> dict:
        """Route path → WSGI app, for the plugin's route table."""
        return {f"/{name}": self._app(handler) for name, handler in self.handlers().items()}

    def _app(self, handler: Callable[[Query], Any]):
        @werkzeug.wrappers.Request.application
        def app(request):
            query = Query(
                request.args,
                plugin_util.context(request.environ),
                plugin_util.experiment_id(request.environ),
            )
            return respond(request, handler(query))

        return app

    def _steps(self, query: Query) -> dict:
        series = self.series(query, self.example(self.steps_route))
        steps = self._listings.list(series.ctx, series.experiment, series.run, series.tag)
        return {
            "run": series.run,
            "tag": series.tag,
            **self.series_facts(series),
            "steps": [s.step for s in steps],
            "wall_times": [s.wall_time for s in steps],
            **self.steps_extra(series, steps),
        }

    def _one_step(self, name: str, handler: Callable[[Series, Step, Query], Any]):
        def serve(query: Query):
            series = self.series(query, self.example(name))
            wanted = responses.int_arg(query, "step")
            self.check_series(name, series)
            blob_step, decoded = self.read_one(series, wanted)
            head = {
                "run": series.run,
                "tag": series.tag,
                "step": blob_step.step,
                "wall_time": blob_step.wall_time,
            }
            if isinstance(decoded, Damaged):
                return {**head, **self.series_facts(series), "error": decoded.error}
            key = blob_step.blob_keys[0] if blob_step.blob_keys else ""
            result = handler(series, Step(blob_step.step, blob_step.wall_time, key, decoded), query)
            if isinstance(result, Base64Json):
                body = {**head, **result.body}
                body.setdefault("error", None)
                return Base64Json(body, result.data, result.slot_key)
            if isinstance(result, dict):
                body = {**head, **result}
                body.setdefault("error", None)
                return body
            return result

        return serve

    # ------------------------------------------------------------------ reading

    def series(self, query: Query, example: str) -> Series:
        """The series `run` and `tag` name (both required); 400/404 saying what to ask."""
        run = responses.required_arg(query, "run", example)
        tag = responses.required_arg(query, "tag", example)
        return self.find(query, run, tag)

    def find(self, query: Query, run: str, tag: str) -> Series:
        """The series (run, tag) of this kind; 404 listing what exists, 400 for another kind."""
        plugin_data = self._context.catalog.find(
            query.ctx, query.experiment, run, tag, self.kind.name
        )
        info = getattr(plugin_data, self.kind.details)
        return Series(run, tag, query.experiment, query.ctx, plugin_data, info)

    def list_steps(self, series: Series, want: int | None = None) -> list[blob_steps.BlobStep]:
        """The series' kept steps, ascending (listed again when step `want` is missing)."""
        return self._listings.list(series.ctx, series.experiment, series.run, series.tag, want)

    def read_one(self, series: Series, step: int | None):
        """(kept step, decoded or `Damaged`) of step `step` (the newest when None).

        404 naming the nearest kept steps when it was not kept. A read that fails
        (the step gone since it was listed) lists again and reads once more.
        """
        steps = self.list_steps(series, want=step)
        chosen = blob_steps.find_step(steps, step, series.run, series.tag)
        try:
            return chosen, self.read(series, chosen)
        except errors.PublicError:
            raise
        except Exception:  # gone since it was listed (downsampled, rewritten): list anew
            steps = self._listings.list_tags(
                series.ctx, series.experiment, series.run, [series.tag], fresh=True
            )[series.tag]
            chosen = blob_steps.find_step(steps, step, series.run, series.tag)
            return chosen, self.read(series, chosen)

    def read(self, series: Series, blob_step: blob_steps.BlobStep):
        """The decoded step (from the cache or read), or `Damaged` saying what is wrong.

        Read failures raise (a fast-loader name is a 400 explaining it); a damaged
        payload does not.
        """
        if not blob_step.blob_keys:
            return self._damaged(blob_step, "the step holds no blob (no payload was written)")
        key = blob_step.blob_keys[0]
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = self._read_blob(series, key)
        try:
            decoded = self.decode(data, series.info)
        except StepError as error:
            decoded = self._damaged(blob_step, str(error))
        except Exception as error:  # protobuf's DecodeError, numpy's, ...: the step's error
            name = self.kind.step_message.__name__
            reason = f"{type(error).__name__}: {responses.cap(str(error))}"
            decoded = self._damaged(blob_step, f"unreadable {name} ({reason})")
        self._cache.put(key, decoded)
        return decoded

    def read_many(self, items: Sequence[tuple[Series, blob_steps.BlobStep]]) -> list:
        """`read` of each (series, step), blobs not cached read in parallel.

        For multi-step routes: a step of a series whose name the fast loader
        cannot read comes back as that step's error rather than the route's.
        """
        found: list = [None] * len(items)
        missing = []
        for i, (_, s) in enumerate(items):
            cached = self._cache.get(s.blob_keys[0]) if s.blob_keys else None
            if cached is not None:
                found[i] = cached
            else:
                missing.append(i)

        def fetch(i: int):
            series, blob_step = items[i]
            try:
                return self.read(series, blob_step)
            except errors.InvalidArgumentError as error:
                if unreadable_name_character(series.run + series.tag) is None:
                    raise
                message = str(error).removeprefix("Invalid argument: ")
                return self._damaged(blob_step, message, damaged=False)

        if len(missing) <= 2:
            for i in missing:
                found[i] = fetch(i)
        else:  # a few chunks, not a task per blob: futures cost more than in-memory reads
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.FETCH_THREADS, thread_name_prefix=f"deepscope-{self.KIND}"
                )
            chunks = [missing[k :: self.FETCH_THREADS] for k in range(self.FETCH_THREADS)]
            for chunk, results in zip(
                chunks, self._pool.map(lambda chunk: [fetch(i) for i in chunk], chunks)
            ):
                for i, result in zip(chunk, results):
                    found[i] = result
        return found

    def _damaged(self, blob_step: blob_steps.BlobStep, error: str, damaged: bool = True):
        """The step's error: `as_damaged`'s value, or a `Damaged`."""
        message = f"damaged step: {error}" if damaged else error
        decoded = self.as_damaged(message)
        return Damaged(message) if decoded is None else decoded

    def _read_blob(self, series: Series, key: str) -> bytes:
        try:
            return self._context.data_provider.read_blob(series.ctx, blob_key=key)
        except Exception as error:
            explained = unreadable_name_error(series.run, series.tag, str(error))
            if explained is not None:
                raise explained from None
            raise


def respond(request, result):
    """The response of a handler's result (dict, `Base64Json` or `PreparedJson`), or a 304."""
    if isinstance(result, Base64Json):
        return responses.respond_base64_json(request, result.body, result.data, result.slot_key)
    if isinstance(result, responses.PreparedJson):
        return responses.respond_json_text(request, result)
    return responses.respond_json(request, result)
