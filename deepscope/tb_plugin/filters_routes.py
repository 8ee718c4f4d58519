"""The filters routes: a filters (or feature-maps) series' steps, and a page of a step's tiles.

A filters series holds, at each logged step, a stack of 2-d images: a conv
weight's tiles (one per (out, in) pair, or one RGB tile per out-channel) or a
layer's output channels on one probe sample (one per channel). Each step is a
blob sequence whose first blob is a `FiltersStep` with the values as measured
(float16, or float32 where the writer kept it). `filters` sends a page of tiles
(`offset`, `limit`) as the stored bytes in base64 with each tile's finite range
and the step's shared range, so the tab draws per-tile or shared colour scales
and a diverging map for signed values without rescaling anything itself.
Documented in docs/http_api.md.

Tile order: grayscale weights tile t is (out t // I, in t % I); RGB weights tile
t is out-channel t (its 3 input channels the colours); feature maps tile t is
channel t.

Arguments, the steps listing, decoding and caching and the damaged-step policy
come from `blob_kind.BlobKindRoutes`: a step that fails validation is answered
with 200 and its `error`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tensorboard import errors

from deepscope.proto import arrays
from deepscope.proto import deepscope_pb2 as pb
from deepscope.tb_plugin import blob_kind, blob_steps, responses
from deepscope.tb_plugin.blob_kind import Base64Json, Damaged, Query, Series, Step, StepError

KIND = "filters"
# Tiles sent when the request names no limit, and at most.
DEFAULT_LIMIT = 256
MAX_LIMIT = 4096
# Bytes of values one response sends at most.
MAX_ARRAY_BYTES = 16 * 2**20

SOURCES = {
    pb.FILTERS_SOURCE_UNSPECIFIED: "weights",
    pb.FILTERS_SOURCE_WEIGHTS: "weights",
    pb.FILTERS_SOURCE_FEATURE_MAPS: "feature_maps",
}
SCALES = {
    pb.FILTERS_SCALE_UNSPECIFIED: "per_tile",
    pb.FILTERS_SCALE_PER_TILE: "per_tile",
    pb.FILTERS_SCALE_SHARED: "shared",
}


@dataclasses.dataclass(frozen=True)
class DecodedFilters:
    """A decoded, validated `FiltersStep`.

    `tiles`: [T, h, w] (grayscale) or [T, 3, h, w] (RGB), the stored values in
    tile order (float16 or float32 as stored); `shape` the stored array's shape;
    `total` the layer's out-channels or channels; `kept` those stored.
    """

    source: str
    tiles: np.ndarray
    shape: list[int]
    total: int
    kept: int
    rgb: bool
    sample: int
    non_finite: int
    seconds: float

    @property
    def count(self) -> int:
        return int(self.tiles.shape[0])


def decode_filters_step(data: bytes, info: pb.FiltersInfo) -> DecodedFilters:
    """Decode and validate a `FiltersStep` blob against its series' source.

    Raises:
      StepError: not a FiltersStep; no values; values not float; weights not
        [K, I, kH, kW] or feature maps not [K, H, W]; an empty dimension; more
        stored than `total`; RGB without 3 input channels or on feature maps; a
        negative sample; a non-finite count other than the values'.
    """
    try:
        message = pb.FiltersStep.FromString(data)
    except Exception as error:  # a DecodeError
        raise StepError(
            f"not a readable filters step ({responses.cap(str(error))}); was it written by "
            "deepscope's add_filters or add_feature_maps?"
        ) from None
    source = SOURCES.get(info.source)
    if source is None:
        raise StepError(f"unknown filters source {info.source} (a newer writer?)")
    if not message.values.shape and not message.values.data:
        raise StepError("the step holds no values")
    if message.values.dtype not in (pb.FLOAT16, pb.FLOAT32, pb.FLOAT64):
        dtype = message.values.dtype
        name = pb.DType.Name(dtype) if dtype in pb.DType.values() else f"dtype {dtype}"
        raise StepError(f"values are {name}, not floats")
    try:
        values = arrays.decode_array(message.values)
    except ValueError as error:
        raise StepError(f"values are malformed ({error})") from None
    if values.dtype == np.float64:
        values = values.astype(np.float32)
    want = 4 if source == "weights" else 3
    what = "[K, I, kH, kW]" if source == "weights" else "[K, H, W]"
    if values.ndim != want or 0 in values.shape:
        raise StepError(
            f"{source} values of shape {list(values.shape)}: must be {what}, none empty"
        )
    kept = int(values.shape[0])
    if kept > message.total:
        raise StepError(
            f"{kept} filters or channels stored of a layer said to have {message.total}"
        )
    if message.rgb and (source != "weights" or values.shape[1] != 3):
        raise StepError(f"RGB tiles need weights with 3 input channels, got {list(values.shape)}")
    if message.sample < 0:
        raise StepError(f"sample {message.sample} is negative")
    non_finite = int(np.count_nonzero(~np.isfinite(values)))
    if message.non_finite != non_finite:
        raise StepError(
            f"the step says {message.non_finite} non-finite values, its values hold {non_finite}"
        )
    if source == "weights" and not message.rgb:
        tiles = values.reshape(kept * values.shape[1], values.shape[2], values.shape[3])
    else:
        tiles = values
    return DecodedFilters(
        source=source,
        tiles=tiles,
        shape=[int(n) for n in values.shape],
        total=int(message.total),
        kept=kept,
        rgb=bool(message.rgb),
        sample=int(message.sample),
        non_finite=non_finite,
        seconds=float(message.seconds),
    )


def finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values as float64, or None when none is finite."""
    flat = values.astype(np.float64).reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return None
    return float(flat.min()), float(flat.max())


def tile_ranges(tiles: np.ndarray) -> list:
    """Each tile's finite [min, max] (null for a tile with no finite value)."""
    flat = tiles.astype(np.float64).reshape(tiles.shape[0], -1)
    finite = np.isfinite(flat)
    lo = np.where(finite, flat, np.inf).min(axis=1)
    hi = np.where(finite, flat, -np.inf).max(axis=1)
    return [None if not np.isfinite(a) else [float(a), float(b)] for a, b in zip(lo, hi)]


def filters_body(decoded: DecodedFilters, offset: int, limit: int) -> tuple[dict, bytes]:
    """A page of a step's tiles: the JSON head and the values' little-endian bytes.

    Raises:
      errors.InvalidArgumentError: offset past the tiles, limit over MAX_LIMIT, or
        a page of more than MAX_ARRAY_BYTES.
    """
    count = decoded.count
    if offset >= count:
        raise errors.InvalidArgumentError(
            f"offset {offset} is past this step's {count} tiles (0 to {count - 1})"
        )
    if limit > MAX_LIMIT:
        raise errors.InvalidArgumentError(f"limit {limit} is over {MAX_LIMIT} tiles; ask for fewer")
    page = decoded.tiles[offset : offset + limit]
    if page.dtype != np.float16:
        page = page.astype(np.float32)
    if page.nbytes > MAX_ARRAY_BYTES:
        raise errors.InvalidArgumentError(
            f"{page.shape[0]} tiles of shape {list(page.shape[1:])} make "
            f"{page.nbytes / 2**20:.1f} MiB, more than one response sends "
            f"({MAX_ARRAY_BYTES / 2**20:.0f} MiB): ask for fewer (limit=)"
        )
    shared = finite_range(decoded.tiles)
    head = {
        "source": decoded.source,
        "shape": decoded.shape,
        "total": decoded.total,
        "kept": decoded.kept,
        "rgb": decoded.rgb,
        "sample": decoded.sample,
        "tiles": count,
        "tile_shape": [int(n) for n in decoded.tiles.shape[1:]],
        "offset": offset,
        "count": int(page.shape[0]),
        "shared_range": None if shared is None else list(shared),
        "tile_ranges": tile_ranges(page),
        "non_finite": decoded.non_finite,
        "seconds": decoded.seconds,
        "values": {"dtype": str(page.dtype), "shape": list(page.shape), "base64": ""},
    }
    little = page.dtype.newbyteorder("<")
    return head, np.ascontiguousarray(page, dtype=little).tobytes()


class FiltersRoutes(blob_kind.BlobKindRoutes):
    """Routes serving filters and feature-map series: `/filters_steps` and `/filters`."""

    KIND = KIND
    CACHE_CAPACITY = 32

    def decode(self, data: bytes, info: pb.FiltersInfo) -> DecodedFilters:
        return decode_filters_step(data, info)

    def series_facts(self, series: Series) -> dict:
        info = series.info
        return {
            "source": SOURCES.get(info.source, "unknown"),
            "layer": info.layer,
            "scale": SCALES.get(info.scale, "per_tile"),
        }

    def example(self, route: str) -> str:
        if route == "filters":
            return "filters?run=RUN&tag=TAG&step=STEP&offset=0&limit=256"
        return super().example(route)

    def steps_extra(self, series: Series, steps: list[blob_steps.BlobStep]) -> dict:
        """The newest step's tile count and shape (or its error)."""
        extra: dict = {"tiles": 0, "tile_shape": None, "total": 0, "rgb": False, "errors": []}
        if steps:
            newest = self.read(series, steps[-1])
            if isinstance(newest, Damaged):
                extra["errors"] = [[steps[-1].step, newest.error]]
            else:
                extra["tiles"] = newest.count
                extra["tile_shape"] = [int(n) for n in newest.tiles.shape[1:]]
                extra["total"] = newest.total
                extra["rgb"] = newest.rgb
        return extra

    def step_routes(self) -> dict:
        return {"filters": self.page}

    def page(self, series: Series, step: Step, query: Query) -> Base64Json:
        """A page of one step's tiles (`filters`)."""
        offset = responses.int_arg(query, "offset", default=0, minimum=0)
        limit = responses.int_arg(query, "limit", default=DEFAULT_LIMIT, minimum=1)
        head, data = filters_body(step.decoded, offset, limit)
        return Base64Json({"layer": series.info.layer, **head}, data)
