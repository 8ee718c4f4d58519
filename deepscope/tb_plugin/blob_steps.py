"""Reading blob-sequence series (spectra, correlations, saliency) one step at a time.

Each step of such a series is a blob sequence whose first blob is the kind's
serialized `*Step` message. Listing the steps reads only blob keys; a step's
payload is fetched on its own, so a route can serve one step of a long run
without loading them all. Reads only through `context.data_provider`.
"""

from __future__ import annotations

import dataclasses

from tensorboard import errors
from tensorboard.data import provider

from deepscope import metadata

# Stands in for "no limit" where the sampling hint is 0 (keep every sample).
UNBOUNDED = 2**31 - 1


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
    tag: str,
    downsample: int | None,
) -> list[BlobStep]:
    """Every kept step of (run, tag), ascending by step (the last write of a step wins)."""
    data = data_provider.read_blob_sequences(
        ctx,
        experiment_id=experiment_id,
        plugin_name=metadata.PLUGIN_NAME,
        run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        downsample=UNBOUNDED if not downsample else downsample,
    )
    by_step: dict[int, BlobStep] = {}
    for datum in data.get(run, {}).get(tag, []):
        by_step[int(datum.step)] = BlobStep(
            step=int(datum.step),
            wall_time=float(datum.wall_time),
            blob_keys=tuple(ref.blob_key for ref in datum.values),
        )
    return [by_step[s] for s in sorted(by_step)]


def find_step(steps: list[BlobStep], step: int | None, run: str, tag: str) -> BlobStep:
    """The kept step `step` (the last one when None); a 404 naming the nearest kept steps."""
    if not steps:
        raise errors.NotFoundError(f"tag {tag!r} of run {run!r} has no steps yet")
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
        f"tag {tag!r} of run {run!r} has no step {step}; nearest kept steps: {nearest} "
        f"({len(kept)} kept, from {kept[0]} to {kept[-1]}; the steps route lists them all)"
    )


def read_blob(data_provider, ctx, blob_step: BlobStep, index: int = 0) -> bytes:
    """The bytes of one blob of a step; a 404 if the step has no such blob."""
    if index >= len(blob_step.blob_keys):
        raise errors.NotFoundError(
            f"step {blob_step.step} holds {len(blob_step.blob_keys)} blob(s), not {index + 1}"
        )
    return data_provider.read_blob(ctx, blob_key=blob_step.blob_keys[index])
