// Number formatting of the spectrum views.

import { formatLocale } from "d3-format";

const locale = formatLocale({
  decimal: ".",
  thousands: ",",
  grouping: [3],
  currency: ["", ""],
  minus: "-",
});
const sig4 = locale.format(".4~r");
const exp3 = locale.format(".3~e");

/** A metric or singular value: 4 significant digits, `∞`, `-∞`, `NaN`. */
export function formatMetric(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "∞";
  if (value === -Infinity) return "-∞";
  if (value !== 0 && (Math.abs(value) >= 1e6 || Math.abs(value) < 1e-3)) return exp3(value);
  return sig4(value);
}

/** Index of the element of ascending `steps` nearest `step` (the earlier one on a tie). */
export function nearestIndex(steps: readonly number[], step: number): number {
  let lo = 0;
  let hi = steps.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(steps[lo - 1] - step) <= Math.abs(steps[lo] - step)) return lo - 1;
  return lo;
}
