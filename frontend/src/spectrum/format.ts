// Number formatting of the spectrum views.

import { locale } from "../format";

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
