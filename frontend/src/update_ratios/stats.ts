// What the card's heatmaps colour and its chart opens on: each value on the quantity's
// scale (log10 for a log scale), their extent, and the row that stands out most lately.

import { median } from "d3-array";
import type { LayerGrid } from "./grid";

const extents = new WeakMap<LayerGrid, [number, number] | null>();
const scaled = new WeakMap<LayerGrid, Float32Array>();

/**
 * Every value of `d` on its quantity's scale (same layout as d.values): log10(v) on a log
 * scale (-Infinity for a value ≤ 0: below the scale), v itself on a linear one; NaN where
 * there is no value (missing, ‖W‖ = 0, non-finite). Computed once per series.
 */
export function scaledValues(d: LayerGrid): Float32Array {
  let out = scaled.get(d);
  if (out) return out;
  out = new Float32Array(d.values.length);
  fillScaled(d, out, 0, out.length);
  scaled.set(d, out);
  return out;
}

/**
 * scaledValues(d), computed in slices of `chunk` values with `pause()` awaited between
 * them (a new task), so that 2 M values never make one long task. Remembered like scaledValues.
 */
export async function scaledValuesInSlices(
  d: LayerGrid,
  pause: () => Promise<void>,
  chunk = 400_000,
): Promise<Float32Array> {
  const known = scaled.get(d);
  if (known) return known;
  const out = new Float32Array(d.values.length);
  for (let k0 = 0; k0 < out.length; k0 += chunk) {
    if (k0 > 0) await pause();
    if (scaled.has(d)) return scaled.get(d) as Float32Array;
    fillScaled(d, out, k0, Math.min(out.length, k0 + chunk));
  }
  scaled.set(d, out);
  return out;
}

function fillScaled(d: LayerGrid, out: Float32Array, from: number, to: number): void {
  const { values, missing, zeroWeight } = d;
  const log = d.quantity.scale === "log";
  for (let k = from; k < to; k++) {
    const v = values[k];
    if (missing[k] || zeroWeight[k] || !Number.isFinite(v)) out[k] = NaN;
    else if (!log) out[k] = v;
    else out[k] = v > 0 ? Math.log10(v) : -Infinity;
  }
}

/** Whether `v` has a place on scale `log` (a finite value; on a log scale also > 0). */
export function onScale(v: number, log: boolean): boolean {
  return log ? v > 0 && v < Infinity : Number.isFinite(v);
}

/**
 * [min, max] of the values on the quantity's scale (log10 of the finite, positive values on
 * a log scale; the finite values on a linear one), or null when there are none: the two
 * extreme values in one pass, and (log scale) log10 of just those two.
 */
export function scaledExtent(d: LayerGrid): [number, number] | null {
  if (extents.has(d)) return extents.get(d) ?? null;
  let lo = Infinity;
  let hi = -Infinity;
  const { values, missing, zeroWeight } = d;
  const log = d.quantity.scale === "log";
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    if (!onScale(v, log) || missing[k] || zeroWeight[k]) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  // As the cells see them (float32), so the scale ends exactly at the extreme cells.
  let extent: [number, number] | null = null;
  if (lo <= hi) {
    extent = log ? [Math.fround(Math.log10(lo)), Math.fround(Math.log10(hi))] : [lo, hi];
  }
  extents.set(d, extent);
  return extent;
}

/** How many of a run's latest logged steps decide which row the chart opens on. */
export const RECENT_STEPS = 100;

/**
 * How far row `j` of `d` stands out lately: the median of its scaled values (see
 * scaledValues) over its last RECENT_STEPS logged steps with a value on the scale; with a
 * target (update ratios: 1e-3), its distance from the target's scaled value in absolute
 * value (in decades on a log scale), else that median itself. Undefined without such a step.
 */
export function recentDistanceFromTarget(d: LayerGrid, j: number): number | undefined {
  const P = d.names.length;
  const log = d.quantity.scale === "log";
  const recent: number[] = [];
  for (let i = d.steps.length - 1; i >= 0 && recent.length < RECENT_STEPS; i--) {
    const k = i * P + j;
    const v = d.values[k];
    if (!d.missing[k] && !d.zeroWeight[k] && onScale(v, log)) recent.push(log ? Math.log10(v) : v);
  }
  const m = median(recent);
  if (m === undefined) return undefined;
  const target = d.quantity.target;
  if (target === null) return m;
  return Math.abs(m - (log ? Math.log10(target.value) : target.value));
}

/**
 * The row the eye is drawn to: among `names` (all when omitted), the one whose recent
 * median (see recentDistanceFromTarget) is farthest from the target (update ratios: 1e-3),
 * or largest when there is none, in any of the runs.
 */
export function mostExtreme(runs: readonly LayerGrid[], names?: ReadonlySet<string>): string | undefined {
  let best: string | undefined;
  let bestDist = -Infinity;
  for (const d of runs) {
    d.names.forEach((name, j) => {
      if (names && !names.has(name)) return;
      const dist = recentDistanceFromTarget(d, j);
      if (dist !== undefined && dist > bestDist) {
        bestDist = dist;
        best = name;
      }
    });
  }
  return best;
}
