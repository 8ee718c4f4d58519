// Pure pieces of the filters tab: what a tile is (its indices in the layer), its colour
// scale (per tile or shared; diverging blue-white-red for signed values, black-to-white
// otherwise) and its pixels. Tested in frontend/test/filters_render.test.ts.

import { interpolateRdBu } from "d3-scale-chromatic";
import { buildLut } from "../colormap";
import type { FiltersPage, FiltersScale } from "./api";

const LUT_SIZE = 256;
let divergingLut: Uint8Array | null = null;
/** Non-finite values (NaN, ±Inf) are drawn magenta, whatever the scale. */
export const NON_FINITE_RGB: readonly [number, number, number] = [255, 0, 255];

/** A tile's place in the layer: (out, in) for grayscale weights, out for RGB, channel for maps. */
export interface TileIndex {
  out?: number;
  in?: number;
  channel?: number;
}

/** The indices of tile `t` (0-based in the step) of a page's series. */
export function tileIndex(page: Pick<FiltersPage, "source" | "rgb" | "shape">, t: number): TileIndex {
  if (page.source === "feature_maps") return { channel: t };
  if (page.rgb) return { out: t };
  const inputs = page.shape[1];
  return { out: Math.floor(t / inputs), in: t % inputs };
}

/** The index in words, for the tooltip and the tiles' labels. */
export function tileLabel(index: TileIndex): string {
  if (index.channel !== undefined) return `channel ${index.channel}`;
  if (index.in !== undefined) return `out ${index.out}, in ${index.in}`;
  return `out ${index.out} (RGB)`;
}

/** A colour scale: diverging around 0 when the range is signed (lo < 0 < hi). */
export interface TileScale {
  lo: number;
  hi: number;
  signed: boolean;
}

/** The scale of page tile `k` (per-tile range, or the step's shared range). */
export function tileScale(page: FiltersPage, k: number, scale: FiltersScale): TileScale {
  const range = scale === "shared" ? page.sharedRange : page.tileRanges[k];
  if (range === null || range === undefined) return { lo: 0, hi: 1, signed: false };
  const [lo, hi] = range;
  if (lo < 0 && hi > 0) {
    const m = Math.max(-lo, hi);
    return { lo: -m, hi: m, signed: true };
  }
  return { lo, hi, signed: false };
}

/** Where `value` falls in the scale, t in [0, 1] (a constant tile: 0.5). */
export function scaleFraction(value: number, scale: TileScale): number {
  const span = scale.hi - scale.lo;
  if (!(span > 0)) return 0.5;
  return Math.max(0, Math.min(1, (value - scale.lo) / span));
}

/** The RGB of one value of a grayscale tile: RdBu (negative blue, positive red) or gray. */
export function valueRgb(value: number, scale: TileScale): [number, number, number] {
  if (!Number.isFinite(value)) return [...NON_FINITE_RGB];
  const t = scaleFraction(value, scale);
  if (scale.signed) {
    divergingLut ??= buildLut((u) => interpolateRdBu(1 - u), LUT_SIZE);
    const k = Math.round(t * (LUT_SIZE - 1)) * 3;
    return [divergingLut[k], divergingLut[k + 1], divergingLut[k + 2]];
  }
  const g = Math.round(255 * t);
  return [g, g, g];
}

/**
 * The RGBA pixels (h × w × 4) of page tile `k`. Grayscale tiles map each value through
 * `valueRgb`; an RGB tile's three input channels are its red, green and blue, each
 * `scaleFraction` of the tile's scale (0 is mid-grey for signed weights).
 */
export function tilePixels(page: FiltersPage, k: number, scale: FiltersScale): Uint8ClampedArray<ArrayBuffer> {
  const s = tileScale(page, k, scale);
  const [h, w] = page.rgb ? page.tileShape.slice(1) : page.tileShape;
  const size = h * w;
  const pixels = new Uint8ClampedArray(size * 4);
  const per = page.rgb ? 3 * size : size;
  const base = k * per;
  for (let p = 0; p < size; p++) {
    let rgb: [number, number, number];
    if (page.rgb) {
      const r = page.values[base + p];
      const g = page.values[base + size + p];
      const b = page.values[base + 2 * size + p];
      rgb = [r, g, b].every(Number.isFinite)
        ? [r, g, b].map((v) => Math.round(255 * scaleFraction(v, s))) as [number, number, number]
        : [...NON_FINITE_RGB];
    } else {
      rgb = valueRgb(page.values[base + p], s);
    }
    pixels[4 * p] = rgb[0];
    pixels[4 * p + 1] = rgb[1];
    pixels[4 * p + 2] = rgb[2];
    pixels[4 * p + 3] = 255;
  }
  return pixels;
}

/** The values at pixel (y, x) of page tile `k`: one, or three (R, G, B) for an RGB tile. */
export function pixelValues(page: FiltersPage, k: number, y: number, x: number): number[] {
  const [h, w] = page.rgb ? page.tileShape.slice(1) : page.tileShape;
  const size = h * w;
  const p = y * w + x;
  if (page.rgb) return [0, 1, 2].map((c) => page.values[k * 3 * size + c * size + p]);
  return [page.values[k * size + p]];
}

/** The on-screen size of a tile: its longer side about `target` px, whole-pixel zoom when small. */
export function cellSize(h: number, w: number, target: number): [number, number] {
  const side = Math.max(h, w, 1);
  const zoom = side >= target ? target / side : Math.max(1, Math.floor(target / side));
  return [Math.max(1, Math.round(h * zoom)), Math.max(1, Math.round(w * zoom))];
}
