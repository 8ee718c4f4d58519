// The arithmetic of drawing saliency maps: image geometry, reducing a map over channels,
// sign modes, percentile clipping, colours, and painting pixels. No DOM beyond ImageData.
//
// Channels: a map [C, H, W] becomes one value per pixel. "absolute" takes max over
// channels of |m_c| (Simonyan et al. 2013); the other modes take the signed sum over
// channels, so that positive and negative evidence of the channels adds up:
// "positive" shows max(sum, 0), "negative" max(-sum, 0), "signed" the sum itself on a
// diverging colour map centred on zero.

import { interpolateInferno, interpolateRdBu } from "d3-scale-chromatic";
import { buildLut } from "../colormap";

export type SignMode = "absolute" | "positive" | "negative" | "signed";
export const SIGN_MODES: readonly SignMode[] = ["absolute", "positive", "negative", "signed"];

/** How an input of shape `inputShape` is drawn: C channels of an H x W image. */
export interface Geometry {
  C: number;
  H: number;
  W: number;
  /** "grey", "rgb", or "mean" (C not 1 or 3: the mean over channels, in grey). */
  color: "grey" | "rgb" | "mean";
}

/** [C, H, W] -> C x H x W; [H, W] -> one channel; [L] -> one row of L. Null if not drawable. */
export function geometry(inputShape: readonly number[]): Geometry | null {
  let C: number, H: number, W: number;
  if (inputShape.length === 3) [C, H, W] = inputShape;
  else if (inputShape.length === 2) [C, H, W] = [1, inputShape[0], inputShape[1]];
  else if (inputShape.length === 1) [C, H, W] = [1, 1, inputShape[0]];
  else return null;
  if (!(C > 0 && H > 0 && W > 0)) return null;
  return { C, H, W, color: C === 1 ? "grey" : C === 3 ? "rgb" : "mean" };
}

/**
 * The map of sample `k` (an index into the array's first axis) reduced over channels:
 * max_c |m_c| for "absolute", sum_c m_c otherwise. Length H*W, row-major.
 */
export function reduceMap(
  values: Float32Array,
  k: number,
  g: Geometry,
  mode: SignMode,
): Float64Array {
  const plane = g.H * g.W;
  const base = k * g.C * plane;
  const out = new Float64Array(plane);
  for (let p = 0; p < plane; p++) {
    let acc = 0;
    if (mode === "absolute") {
      for (let c = 0; c < g.C; c++) acc = Math.max(acc, Math.abs(values[base + c * plane + p]));
      // Math.max ignores nothing: a NaN channel makes the pixel NaN, as it should.
      for (let c = 0; c < g.C; c++) if (Number.isNaN(values[base + c * plane + p])) acc = NaN;
    } else {
      for (let c = 0; c < g.C; c++) acc += values[base + c * plane + p];
    }
    out[p] = acc;
  }
  return out;
}

/** What the colour shows of a reduced value: >= 0 except in "signed" mode. */
export function strength(value: number, mode: SignMode): number {
  if (mode === "positive") return value > 0 ? value : 0;
  if (mode === "negative") return value < 0 ? -value : 0;
  return value;
}

/** numpy.percentile's default (linear interpolation) over the finite values; NaN if none. */
export function percentile(values: ArrayLike<number>, p: number): number {
  const finite: number[] = [];
  for (let k = 0; k < values.length; k++) if (Number.isFinite(values[k])) finite.push(values[k]);
  if (finite.length === 0) return NaN;
  finite.sort((a, b) => a - b);
  const h = ((finite.length - 1) * p) / 100;
  const lo = Math.floor(h);
  const hi = Math.min(finite.length - 1, lo + 1);
  return finite[lo] + (h - lo) * (finite[hi] - finite[lo]);
}

/**
 * The clip value of a row of maps: percentile `p` of |strength| over all their pixels.
 * Colours saturate at it; 1 when every value is zero (so that zero draws as zero).
 */
export function clipValue(reduced: readonly Float64Array[], mode: SignMode, p: number): number {
  let n = 0;
  for (const r of reduced) n += r.length;
  const all = new Float64Array(n);
  let at = 0;
  for (const r of reduced) {
    for (let k = 0; k < r.length; k++) all[at++] = Math.abs(strength(r[k], mode));
  }
  const q = percentile(all, p);
  return q > 0 ? q : 1;
}

const LUT_SIZE = 256;

/** Sequential: 0 -> black, clip -> pale yellow (inferno). */
const sequential = (t: number) => interpolateInferno(t);
/** Diverging: -clip -> blue, 0 -> white, +clip -> red. */
const diverging = (t: number) => interpolateRdBu(1 - t);
let sequentialLut: Uint8Array | null = null;
let divergingLut: Uint8Array | null = null;

/** The colour scale's interpolator for the legend: t in [0, 1] from low to high end. */
export function legendColor(mode: SignMode, t: number): string {
  return mode === "signed" ? diverging(t) : sequential(t);
}

/** RGB of a map value after clipping: [r, g, b] 0..255, and the overlay's opacity 0..1. */
export function mapColor(
  value: number,
  clip: number,
  mode: SignMode,
): [number, number, number, number] {
  const s = strength(value, mode);
  if (mode === "signed") {
    divergingLut ??= buildLut(diverging, LUT_SIZE);
    const t = Math.max(-1, Math.min(1, s / clip));
    const k = Math.round(((t + 1) / 2) * (LUT_SIZE - 1)) * 3;
    return [divergingLut[k], divergingLut[k + 1], divergingLut[k + 2], Math.abs(t)];
  }
  sequentialLut ??= buildLut(sequential, LUT_SIZE);
  const t = Math.max(0, Math.min(1, s / clip));
  const k = Math.round(t * (LUT_SIZE - 1)) * 3;
  return [sequentialLut[k], sequentialLut[k + 1], sequentialLut[k + 2], t];
}

/** Min and max over the finite values of sample `k` (all channels); [0, 1] if none. */
export function valueRange(values: Float32Array, k: number, g: Geometry): [number, number] {
  const size = g.C * g.H * g.W;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = k * size; i < (k + 1) * size; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return Number.isFinite(lo) && Number.isFinite(hi) ? [lo, hi] : [0, 1];
}

/**
 * The image of sample `k` as RGB in 0..255, H*W*3: grey for one channel, RGB for three,
 * the channel mean in grey otherwise; values scaled linearly from `range` to 0..255.
 */
export function imageRgb(
  values: Float32Array,
  k: number,
  g: Geometry,
  range: [number, number],
): Uint8ClampedArray {
  const plane = g.H * g.W;
  const base = k * g.C * plane;
  const [lo, hi] = range;
  const span = hi > lo ? hi - lo : 1;
  const level = (v: number) => (Number.isFinite(v) ? (255 * (v - lo)) / span : 0);
  const out = new Uint8ClampedArray(plane * 3);
  for (let p = 0; p < plane; p++) {
    if (g.color === "rgb") {
      for (let c = 0; c < 3; c++) out[3 * p + c] = level(values[base + c * plane + p]);
    } else {
      let sum = 0;
      for (let c = 0; c < g.C; c++) sum += values[base + c * plane + p];
      const v = level(sum / g.C);
      out[3 * p] = v;
      out[3 * p + 1] = v;
      out[3 * p + 2] = v;
    }
  }
  return out;
}

/** Heat colours of a reduced map, H*W*3, and each pixel's opacity for the overlay. */
export interface Heat {
  rgb: Uint8ClampedArray;
  alpha: Float32Array;
}

export function mapRgb(reduced: Float64Array, clip: number, mode: SignMode): Heat {
  const rgb = new Uint8ClampedArray(reduced.length * 3);
  const alpha = new Float32Array(reduced.length);
  for (let p = 0; p < reduced.length; p++) {
    const [r, g, b, a] = mapColor(reduced[p], clip, mode);
    rgb[3 * p] = r;
    rgb[3 * p + 1] = g;
    rgb[3 * p + 2] = b;
    alpha[p] = a;
  }
  return { rgb, alpha };
}

/** The map over the source: the source in grey, the map's colour on top with its opacity. */
export function overlayRgb(source: Uint8ClampedArray, heat: Heat): Uint8ClampedArray {
  const out = new Uint8ClampedArray(source.length);
  for (let p = 0; p < heat.alpha.length; p++) {
    const grey = 0.299 * source[3 * p] + 0.587 * source[3 * p + 1] + 0.114 * source[3 * p + 2];
    const a = 0.85 * heat.alpha[p];
    for (let c = 0; c < 3; c++) out[3 * p + c] = (1 - a) * grey + a * heat.rgb[3 * p + c];
  }
  return out;
}

/** Paint H x W RGB pixels onto `canvas`, each as a `scale` x `scale` block (no smoothing). */
export function paint(
  canvas: HTMLCanvasElement,
  rgb: Uint8ClampedArray,
  g: Geometry,
  scale: number,
): void {
  const w = g.W * scale;
  const h = g.H * scale;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const img = ctx.createImageData(w, h);
  const px = img.data;
  for (let y = 0; y < h; y++) {
    const row = Math.floor(y / scale) * g.W;
    for (let x = 0; x < w; x++) {
      const p = row + Math.floor(x / scale);
      const o = 4 * (y * w + x);
      px[o] = rgb[3 * p];
      px[o + 1] = rgb[3 * p + 1];
      px[o + 2] = rgb[3 * p + 2];
      px[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** A map value as the tab shows it: 1.234e-3, 0, NaN, Infinity. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  if (value === 0) return "0";
  return value.toExponential(3).replace("e+", "e");
}
