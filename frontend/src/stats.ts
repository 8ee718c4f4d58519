import { bisectLeft, bisectRight, median } from "d3-array";
import type { UpdateRatios } from "./api";

/** The rule of thumb the tab draws a band around. */
export const TARGET_RATIO = 1e-3;
export const BAND: readonly [number, number] = [3e-4, 3e-3];

const extents = new WeakMap<UpdateRatios, [number, number] | null>();

/** [min, max] of log10 over the finite, positive values, or null when there are none. */
export function log10Extent(d: UpdateRatios): [number, number] | null {
  if (extents.has(d)) return extents.get(d) ?? null;
  const extent = computeLog10Extent(d);
  extents.set(d, extent);
  return extent;
}

function computeLog10Extent(d: UpdateRatios): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  const { values, noUpdate } = d;
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    if (noUpdate[k] || !(v > 0) || v === Infinity) continue;
    const l = Math.log10(v);
    if (l < lo) lo = l;
    if (l > hi) hi = l;
  }
  return lo <= hi ? [lo, hi] : null;
}

/** Median over the steps of parameter `j`'s finite, positive values (undefined if none). */
export function paramMedian(d: UpdateRatios, j: number): number | undefined {
  const P = d.names.length;
  const xs: number[] = [];
  for (let i = 0; i < d.steps.length; i++) {
    const k = i * P + j;
    const v = d.values[k];
    if (!d.noUpdate[k] && v > 0 && v < Infinity) xs.push(v);
  }
  return median(xs);
}

/** The parameter whose median ratio is farthest (in decades) from the rule of thumb. */
export function farthestFromTarget(d: UpdateRatios): string | undefined {
  let best: string | undefined;
  let bestDist = -1;
  d.names.forEach((name, j) => {
    const m = paramMedian(d, j);
    if (m === undefined) return;
    const dist = Math.abs(Math.log10(m) - Math.log10(TARGET_RATIO));
    if (dist > bestDist) {
      bestDist = dist;
      best = name;
    }
  });
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

/** Index of the logged step whose column contains step value `s`. */
export function stepIndexAt(steps: readonly number[], s: number): number {
  return Math.min(steps.length - 1, Math.max(0, bisectRight(steps, s) - 1));
}

/**
 * Indices [i0, i1] of the steps a canvas pixel spanning step values [a, b) shows: those
 * whose column starts inside it, or else the one whose column contains its centre. So each
 * step lands in exactly one pixel when steps outnumber pixels, and each pixel shows one step
 * when pixels outnumber steps.
 */
export function stepRange(steps: readonly number[], a: number, b: number): [number, number] {
  const i0 = bisectLeft(steps, a);
  const i1 = bisectLeft(steps, b) - 1;
  if (i1 >= i0) return [i0, i1];
  const i = stepIndexAt(steps, (a + b) / 2);
  return [i, i];
}

/** Index of the logged step nearest to step value `s`. */
export function nearestStepIndex(steps: readonly number[], s: number): number {
  const i = bisectLeft(steps, s);
  if (i <= 0) return 0;
  if (i >= steps.length) return steps.length - 1;
  return s - steps[i - 1] <= steps[i] - s ? i - 1 : i;
}
