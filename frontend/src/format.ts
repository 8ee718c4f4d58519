// Numbers as the tab writes them: steps, counts, ticks, times (one ASCII minus sign).

import { formatLocale } from "d3-format";

// An ASCII minus sign everywhere (d3's default locale uses U+2212), so text in the tab
// matches what a person types and what tests compute.
export const locale = formatLocale({
  decimal: ".",
  thousands: ",",
  grouping: [3],
  currency: ["", ""],
  minus: "-",
});

export const exp3 = locale.format(".2e");
const siStep = locale.format("~s");
const intFmt = locale.format(",d");

/** Axis tick for a step: 950, 1.5k, 20k. */
export function formatStepTick(step: number): string {
  return Math.abs(step) < 1000 ? intFmt(step) : siStep(step);
}

export function formatInt(n: number): string {
  return intFmt(n);
}

const general = locale.format("~g");

/** Ticks of the colour legend (log10 values): -3, -2.5. */
export function formatLog10Tick(value: number): string {
  return general(value);
}

/** Ticks of a log axis: 1e-3. */
export function formatPow10(value: number): string {
  const e = Math.round(Math.log10(value));
  if (Math.abs(value / Math.pow(10, e) - 1) < 1e-9) return `1e${e}`;
  return exp3(value);
}

/** "1 channel", "2,048 channels": a count and its noun. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
}

export function formatTime(date: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
}
