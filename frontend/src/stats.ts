import { bisectLeft, bisectRight, median } from "d3-array";
import type { UpdateRatios } from "./api";

/** The rule of thumb the tab draws a band around. */
export const TARGET_RATIO = 1e-3;
export const BAND: readonly [number, number] = [3e-4, 3e-3];

const extents = new WeakMap<UpdateRatios, [number, number] | null>();
const logs = new WeakMap<UpdateRatios, Float32Array>();

/**
 * log10 of every value of `d` (same layout as d.values), NaN where there is no ratio (no
 * update, ‖W‖ = 0, non-finite) and -Infinity for a zero ratio. Computed once per series.
 */
export function log10Values(d: UpdateRatios): Float32Array {
  let out = logs.get(d);
  if (out) return out;
  out = new Float32Array(d.values.length);
  fillLog10(d, out, 0, out.length);
  logs.set(d, out);
  return out;
}

/**
 * log10Values(d), computed in slices of `chunk` values with `pause()` awaited between
 * them (a new task), so that 2 M values never make one long task. Remembered like log10Values.
 */
export async function log10ValuesInSlices(
  d: UpdateRatios,
  pause: () => Promise<void>,
  chunk = 400_000,
): Promise<Float32Array> {
  const known = logs.get(d);
  if (known) return known;
  const out = new Float32Array(d.values.length);
  for (let k0 = 0; k0 < out.length; k0 += chunk) {
    if (k0 > 0) await pause();
    if (logs.has(d)) return logs.get(d) as Float32Array;
    fillLog10(d, out, k0, Math.min(out.length, k0 + chunk));
  }
  logs.set(d, out);
  return out;
}

function fillLog10(d: UpdateRatios, out: Float32Array, from: number, to: number): void {
  const { values, noUpdate, zeroWeight } = d;
  for (let k = from; k < to; k++) {
    const v = values[k];
    out[k] = noUpdate[k] || zeroWeight[k] || !(v >= 0) || v === Infinity ? NaN : Math.log10(v);
  }
}

/**
 * [min, max] of log10 over the finite, positive values, or null when there are none: the
 * smallest positive and the largest finite value in one pass, and log10 of just those two.
 */
export function log10Extent(d: UpdateRatios): [number, number] | null {
  if (extents.has(d)) return extents.get(d) ?? null;
  let lo = Infinity;
  let hi = -Infinity;
  const { values, noUpdate, zeroWeight } = d;
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    if (!(v > 0) || v === Infinity || noUpdate[k] || zeroWeight[k]) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  // log10 as the cells see it (float32), so the scale ends exactly at the extreme cells.
  const extent: [number, number] | null =
    lo <= hi ? [Math.fround(Math.log10(lo)), Math.fround(Math.log10(hi))] : null;
  extents.set(d, extent);
  return extent;
}

/** How many of a run's latest logged steps decide which parameter the chart opens on. */
export const RECENT_STEPS = 100;

/**
 * How far (in decades) parameter `j` of `d` sits from the rule of thumb lately: the median
 * of log10(ratio) over its last RECENT_STEPS logged steps with a finite, positive ratio,
 * minus log10(1e-3), in absolute value. Undefined when it has no such step.
 */
export function recentDistanceFromTarget(d: UpdateRatios, j: number): number | undefined {
  const P = d.names.length;
  const logs: number[] = [];
  for (let i = d.steps.length - 1; i >= 0 && logs.length < RECENT_STEPS; i--) {
    const k = i * P + j;
    const v = d.values[k];
    if (!d.noUpdate[k] && !d.zeroWeight[k] && v > 0 && v < Infinity) logs.push(Math.log10(v));
  }
  const m = median(logs);
  return m === undefined ? undefined : Math.abs(m - Math.log10(TARGET_RATIO));
}

/**
 * The parameter the eye is drawn to: among `names` (all when omitted), the one whose recent
 * median ratio (see recentDistanceFromTarget) is farthest from 1e-3 in any of the runs.
 */
export function mostExtreme(
  runs: readonly UpdateRatios[],
  names?: ReadonlySet<string>,
): string | undefined {
  let best: string | undefined;
  let bestDist = -1;
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

/**
 * Where each logged step sits on a linear step axis: step i covers [steps[i], steps[i+1]),
 * and the last one a typical gap. Steps need not be evenly spaced (TensorBoard samples).
 */
export function stepDomain(steps: readonly number[]): [number, number] {
  if (steps.length === 0) return [0, 1];
  const first = steps[0];
  const last = steps[steps.length - 1];
  return [first, last + typicalGap(steps)];
}

export function typicalGap(steps: readonly number[]): number {
  if (steps.length < 2) return 1;
  const gaps: number[] = [];
  for (let i = 1; i < steps.length; i++) gaps.push(steps[i] - steps[i - 1]);
  return Math.max(1, median(gaps) ?? 1);
}

/** Index of the logged step whose column contains step value `s` (clamped to the steps). */
export function stepIndexAt(steps: readonly number[], s: number): number {
  return Math.min(steps.length - 1, Math.max(0, bisectRight(steps, s) - 1));
}

/** A gap between logged steps counts as "no data" when wider than this many typical gaps… */
export const GAP_FACTOR = 4;
/** …and wider than this fraction of the run's span (so TensorBoard's sampling leaves no holes). */
export const GAP_SPAN_FRACTION = 0.02;

/**
 * Where a run has data on a step axis: the end of each logged step's column. Step i covers
 * [steps[i], end[i]): up to the next logged step, except after the last step and across a
 * gap wider than GAP_FACTOR typical gaps and GAP_SPAN_FRACTION of the run's span (a run
 * that stopped and resumed), where it covers one typical gap.
 */
export function columnEnds(steps: readonly number[]): Float64Array {
  const n = steps.length;
  const ends = new Float64Array(n);
  if (n === 0) return ends;
  const gap = typicalGap(steps);
  const span = steps[n - 1] - steps[0] + gap;
  const wide = Math.max(GAP_FACTOR * gap, GAP_SPAN_FRACTION * span);
  for (let i = 0; i < n; i++) {
    const next = i + 1 < n ? steps[i + 1] : Infinity;
    ends[i] = next - steps[i] > wide ? steps[i] + gap : next;
  }
  return ends;
}

/**
 * Indices [i0, i1] of the steps a canvas pixel spanning step values [a, b) shows: those
 * whose column starts inside it, or else the one whose column contains its centre. So each
 * step lands in exactly one pixel when steps outnumber pixels, and each pixel shows one step
 * when pixels outnumber steps. [-1, -1] where the run has no data: before its first step,
 * after its last step's column, or inside a wide gap (see columnEnds).
 */
export function stepRange(
  steps: readonly number[],
  ends: Float64Array,
  a: number,
  b: number,
): [number, number] {
  const i0 = bisectLeft(steps, a);
  const i1 = bisectLeft(steps, b) - 1;
  if (i1 >= i0) return [i0, i1];
  const centre = (a + b) / 2;
  const i = bisectRight(steps, centre) - 1;
  if (i < 0 || centre >= ends[i]) return [-1, -1];
  return [i, i];
}

/** Index of the logged step nearest to step value `s`. */
export function nearestStepIndex(steps: readonly number[], s: number): number {
  const i = bisectLeft(steps, s);
  if (i <= 0) return 0;
  if (i >= steps.length) return steps.length - 1;
  return s - steps[i - 1] <= steps[i] - s ? i - 1 : i;
}
