"""Reading blob-sequence series (spectra, correlations, saliency) one step at a time.

Each step of such a series is a blob sequence whose first blob is the kind's
serialized `*Step` message. Listing the steps reads only blob keys; a step's
payload is fetched on its own (`blob_kind.BlobKindRoutes.read`), so a route
can serve one step of a long run without loading them all. Reads only through
`context.data_provider`.

Two things spare the routes round trips (each tens of milliseconds on the Rust
data server), shared by every kind:

- `StepListings`: a step listing is remembered for `LISTING_SECONDS`, and a
  request naming a step that the remembered listing lacks lists again;
- `LRUCache`: decoded steps by blob key (a blob key's bytes never change, so a
  cached step never goes stale), least recently used dropped beyond a budget.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from tensorboard import errors
from tensorboard.data import provider

from deepscope import metadata
from deepscope.tb_plugin import responses

if TYPE_CHECKING:
    from deepscope.tb_plugin.route_context import RouteContext

# Stands in for "no limit" where the sampling hint is 0 (keep every sample).
UNBOUNDED = 2**31 - 1
# Seconds a step listing is remembered: TensorBoard's default reload interval. TensorBoard
# itself sees new events only once per reload, so a listing this old misses nothing it
# could show.
LISTING_SECONDS = 5.0
_LISTINGS_KEPT = 256


@dataclasses.dataclass(frozen=True)
class BlobStep:
    """One kept step of a blob-sequence series."""

    step: int
    wall_time: float
    blob_keys: tuple[str, ...]  # the step's blobs; [0] holds the *Step message


def list_steps(
    data_provider,
    ctx,
    experiment_id: str,
    run: str,
    tags: Sequence[str],
    downsample: int | None,
) -> dict[str, list[BlobStep]]:
    """Every kept step of each of `tags` of `run`, in one read RPC.

    Steps ascend; the last write of a step wins. A downsample of None or 0 keeps all.
    """
    if not tags:
        return {}
    data = data_provider.read_blob_sequences(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=provider.RunTagFilter(runs=[run], tags=list(tags)),
        downsample=downsample or UNBOUNDED,
    )
    listing: dict[str, list[BlobStep]] = {}
    for tag in tags:
        by_step: dict[int, BlobStep] = {}
        for datum in data.get(run, {}).get(tag, []):
            by_step[int(datum.step)] = BlobStep(
                step=int(datum.step),
                wall_time=float(datum.wall_time),
                blob_keys=tuple(ref.blob_key for ref in datum.values),
            )
        listing[tag] = [by_step[s] for s in sorted(by_step)]
    return listing


class StepListings:
    """Step listings of blob-sequence series, each remembered for `seconds`.

    The one freshness rule of the routes: a listing is reused for `seconds`
    (`LISTING_SECONDS` by default); `list(..., want=step)` lists again when
    `step` is not in the remembered listing (it may have been written since);
    `fresh=True` always lists again. A series listed with no steps is dropped
    from the catalog, so that the next request finds out whether it still exists.
    """

    def __init__(
        self,
        context: RouteContext,
        seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._context = context
        self._seconds = LISTING_SECONDS if seconds is None else seconds
        self._clock = clock
        # (experiment, run, tags) -> (clock time, tag -> kept steps)
        self._remembered: collections.OrderedDict[tuple, tuple[float, dict]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def list(
        self, ctx, experiment: str, run: str, tag: str, want: int | None = None
    ) -> list[BlobStep]:
        """The kept steps of (run, tag), ascending; listed again when step `want` is missing."""
        steps = self.list_tags(ctx, experiment, run, [tag])[tag]
        if want is not None and not any(s.step == want for s in steps):
            steps = self.list_tags(ctx, experiment, run, [tag], fresh=True)[tag]
        return steps

    def list_tags(
        self, ctx, experiment: str, run: str, tags: Sequence[str], fresh: bool = False
    ) -> dict[str, list[BlobStep]]:
        """Each tag's kept steps, ascending, in one read RPC (or remembered)."""
        key = (experiment, run, tuple(sorted(tags)))
        now = self._clock()
        with self._lock:
            hit = self._remembered.get(key)
        if hit is not None and not fresh and now - hit[0] < self._seconds:
            return hit[1]
        listing = list_steps(
            self._context.data_provider, ctx, experiment, run, key[2], self._context.downsample
        )
        for tag, steps in listing.items():
            if not steps:
                self._context.catalog.forget(experiment, run, tag)
        with self._lock:
            self._remembered[key] = (now, listing)
            self._remembered.move_to_end(key)
            while len(self._remembered) > _LISTINGS_KEPT:
                self._remembered.popitem(last=False)
        return listing


class LRUCache:
    """A thread-safe least-recently-used cache, bounded by the total `weigh` of its values.

    With the default weight (1 per value) `capacity` counts values; with
    `weigh=lambda v: v.nbytes` it counts bytes. The newest value is always kept,
    even when it alone weighs more than `capacity`.
    """

    def __init__(self, capacity: int, weigh: Callable[[Any], int] = lambda value: 1):
        self._capacity = capacity
        self._weigh = weigh
        self._weight = 0
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value of `key` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= self._weigh(old)
            self._items[key] = value
            self._weight += self._weigh(value)
            while self._weight > self._capacity and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._weight -= self._weigh(dropped)

    def __len__(self) -> int:
        return len(self._items)


def find_step(steps: list[BlobStep], step: int | None, run: str, tag: str) -> BlobStep:
    """The kept step `step` (the last one when None); a 404 naming the nearest kept steps."""
    tag, run = responses.echo(tag), responses.echo(run)
    if not steps:
        raise errors.NotFoundError(f"tag {tag} of run {run} has no steps yet")
    if step is None:
        return steps[-1]
    for candidate in steps:
        if candidate.step == step:
            return candidate
    kept = [s.step for s in steps]
    below = [s for s in kept if s < step][-1:]
    above = [s for s in kept if s > step][:1]
    nearest = ", ".join(str(s) for s in below + above)
    raise errors.NotFoundError(
        f"tag {tag} of run {run} has no step {step}; nearest kept steps: {nearest} "
        f"({len(kept)} kept, from {kept[0]} to {kept[-1]}; the steps route lists them all)"
    )
