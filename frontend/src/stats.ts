// Step axes shared by the kinds: where each logged step sits on a linear axis, which
// steps a pixel column shows, the step nearest a position.

import { bisectLeft, bisectRight, median } from "d3-array";

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
