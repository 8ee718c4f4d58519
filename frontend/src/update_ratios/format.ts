// A grid's values as the card writes them (tooltips, the chart's hover).

import { exp3, locale } from "../format";
import type { Quantity } from "./grid";

/** What the tab says where the weight was exactly zero before the step. */
export const ZERO_WEIGHT_TEXT = "‖W‖ = 0: ratio undefined";

const linear = locale.format(".4~g");

/**
 * A value as the tab shows it: `1.23e-3` (log scale) or `0.1234` (linear), `0`, `NaN`,
 * `Infinity`, `-Infinity`; the quantity's missing text (update ratios: `no update`) where
 * the row has no value at that step, or ZERO_WEIGHT_TEXT where the weight was exactly zero
 * before the step.
 */
export function formatValue(q: Quantity, value: number, missing: boolean, zeroWeight = false): string {
  if (missing) return q.missingText;
  if (zeroWeight) return ZERO_WEIGHT_TEXT;
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  if (value === 0) return "0";
  return q.scale === "log" ? exp3(value) : linear(value);
}
