// The filters routes (docs/http_api.md): a filters or feature-maps series' steps, and a page
// of one step's tiles with each tile's finite range and the step's shared range. Values
// arrive as little-endian float16 (or float32) bytes in base64 (decoded by ../binary).

import { base64Bytes, decodeFloat16, decodeFloat32 } from "../binary";
import { expectRecord, getJson, jsonNumber } from "../json";

export type FiltersSource = "weights" | "feature_maps";
export type FiltersScale = "per_tile" | "shared";

export interface FiltersSeries {
  run: string;
  tag: string;
  source: FiltersSource;
  layer: string;
  scale: FiltersScale;
  steps: number[];
  /** The newest step's stored tiles (0 when it is damaged). */
  tiles: number;
  errors: [number, string][];
}

export interface FiltersPage {
  run: string;
  tag: string;
  step: number;
  /** The step's error (a damaged step), or null. */
  error: string | null;
  source: FiltersSource;
  layer: string;
  /** The stored array: weights [K, I, kH, kW], feature maps [K, H, W]. */
  shape: number[];
  total: number;
  kept: number;
  rgb: boolean;
  sample: number;
  tiles: number;
  /** [h, w], or [3, h, w] for RGB tiles. */
  tileShape: number[];
  offset: number;
  count: number;
  sharedRange: [number, number] | null;
  tileRanges: ([number, number] | null)[];
  nonFinite: number;
  /** The page's values, tile after tile, row-major. */
  values: Float32Array;
}

function source(value: unknown): FiltersSource {
  return value === "feature_maps" ? "feature_maps" : "weights";
}

function range(value: unknown): [number, number] | null {
  if (!Array.isArray(value) || value.length !== 2) return null;
  return [jsonNumber(value[0]), jsonNumber(value[1])];
}

export function parseSeries(value: unknown): FiltersSeries {
  const raw = expectRecord(value, "filters_steps");
  const steps = Array.isArray(raw.steps) ? raw.steps.map(Number) : [];
  const errors = Array.isArray(raw.errors)
    ? raw.errors.map((e) => [Number((e as unknown[])[0]), String((e as unknown[])[1])] as [number, string])
    : [];
  return {
    run: String(raw.run),
    tag: String(raw.tag),
    source: source(raw.source),
    layer: String(raw.layer ?? ""),
    scale: raw.scale === "shared" ? "shared" : "per_tile",
    steps,
    tiles: Number(raw.tiles ?? 0),
    errors,
  };
}

export function parsePage(value: unknown): FiltersPage {
  const raw = expectRecord(value, "filters");
  const error = typeof raw.error === "string" ? raw.error : null;
  const shape = Array.isArray(raw.shape) ? raw.shape.map(Number) : [];
  const tileShape = Array.isArray(raw.tile_shape) ? raw.tile_shape.map(Number) : [];
  const count = Number(raw.count ?? 0);
  let values: Float32Array = new Float32Array(0);
  if (error === null) {
    const slot = expectRecord(raw.values, "filters values");
    const size = count * tileShape.reduce((a, b) => a * b, 1);
    const bytes = base64Bytes(String(slot.base64));
    if (slot.dtype === "float16") values = decodeFloat16(bytes, size, "filters: values");
    else if (slot.dtype === "float32") values = decodeFloat32(bytes, size, "filters: values");
    else throw new Error(`filters: values of dtype ${String(slot.dtype)}`);
  }
  return {
    run: String(raw.run),
    tag: String(raw.tag),
    step: Number(raw.step),
    error,
    source: source(raw.source),
    layer: String(raw.layer ?? ""),
    shape,
    total: Number(raw.total ?? 0),
    kept: Number(raw.kept ?? 0),
    rgb: raw.rgb === true,
    sample: Number(raw.sample ?? 0),
    tiles: Number(raw.tiles ?? 0),
    tileShape,
    offset: Number(raw.offset ?? 0),
    count,
    sharedRange: range(raw.shared_range),
    tileRanges: Array.isArray(raw.tile_ranges) ? raw.tile_ranges.map(range) : [],
    nonFinite: Number(raw.non_finite ?? 0),
    values,
  };
}

export async function fetchSeries(run: string, tag: string): Promise<FiltersSeries> {
  const params = new URLSearchParams({ run, tag });
  return parseSeries(await getJson(`./filters_steps?${params.toString()}`));
}

export async function fetchPage(
  run: string,
  tag: string,
  step: number,
  offset: number,
  limit: number,
): Promise<FiltersPage> {
  const params = new URLSearchParams({
    run,
    tag,
    step: String(step),
    offset: String(offset),
    limit: String(limit),
  });
  return parsePage(await getJson(`./filters?${params.toString()}`));
}
