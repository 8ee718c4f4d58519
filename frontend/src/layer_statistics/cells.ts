// How the layer statistics table writes its cells, headers and units (pure: node-tested).

import { ZERO_WEIGHT_TEXT } from "../update_ratios/format";
import { summarize, type Summary } from "./blocks";
import { statisticInfo } from "./statistics";
import { formatNumber } from "./xychart";

/**
 * What a cell holds: a number ("value"), a measured non-finite number (a NaN or ±Inf norm:
 * numerical trouble), or no number, for one of three reasons: not measured (an activation
 * statistic's NaN), no gradient (a parameter the step lists in `without_gradient`: its
 * gradient statistics were not measured), or a zero weight (‖g‖/‖W‖ with ‖W‖ exactly 0:
 * undefined, as update ratios' "‖W‖ = 0", not a numerical fault).
 */
export type CellState = "value" | "non-finite" | "not-measured" | "no-gradient" | "zero-weight";

/** What the table writes for a parameter without a gradient at the step. */
export const NO_GRADIENT_TEXT = "no gradient";

/** The parameter statistics a parameter without a gradient has none of. */
export const GRADIENT_STATISTICS: readonly string[] = ["grad_norm", "grad_to_weight"];

/**
 * A cell's state from what the step says of its row: `value` (the statistic), whether the
 * row is a parameter without a gradient, and its weight norm (NaN when not logged).
 * Activations: NaN is "not measured". Parameters: a gradient statistic of a parameter without
 * a gradient is "no gradient"; ‖g‖/‖W‖ of a weight norm exactly 0 is "zero weight" (whatever
 * its Inf or NaN); any other NaN or ±Inf is a measured non-finite value.
 */
export function cellState(
  column: string,
  value: number,
  parameter: boolean,
  withoutGradient = false,
  weightNorm = NaN,
): CellState {
  if (parameter) {
    if (withoutGradient && GRADIENT_STATISTICS.includes(column)) return "no-gradient";
    if (column === "grad_to_weight" && weightNorm === 0) return "zero-weight";
    return Number.isFinite(value) ? "value" : "non-finite";
  }
  if (Number.isNaN(value)) return "not-measured";
  return Number.isFinite(value) ? "value" : "non-finite";
}

/**
 * A collapsed row's cell from its members' states and values: the summary (`how`) of the
 * members with a number (finite first: `summarize`), else, when none has one, "no gradient"
 * if every member had none, else "zero weight", else "not measured". `excluded` counts the
 * members left out for having no gradient or a zero weight.
 */
export function summarizeCell(
  states: readonly CellState[],
  values: readonly number[],
  how: Summary,
): { state: CellState; value: number; excluded: number } {
  const measured: number[] = [];
  let noGradient = 0;
  let zeroWeight = 0;
  states.forEach((state, k) => {
    if (state === "value" || state === "non-finite") measured.push(values[k]);
    else if (state === "no-gradient") noGradient++;
    else if (state === "zero-weight") zeroWeight++;
  });
  const excluded = noGradient + zeroWeight;
  if (measured.length > 0) {
    const value = summarize(measured, how);
    return { state: Number.isFinite(value) ? "value" : "non-finite", value, excluded };
  }
  if (noGradient > 0 && zeroWeight === 0 && noGradient === states.length) return { state: "no-gradient", value: NaN, excluded };
  if (zeroWeight > 0) return { state: "zero-weight", value: NaN, excluded };
  return { state: "not-measured", value: NaN, excluded };
}

/** A cell's text by its state: "no gradient", "‖W‖ = 0: ratio undefined", "–", else `formatCell` ("NaN" for a measured NaN). */
export function cellText(column: string, state: CellState, value: number): string {
  if (state === "no-gradient") return NO_GRADIENT_TEXT;
  if (state === "zero-weight") return ZERO_WEIGHT_TEXT;
  if (state === "not-measured") return "–";
  if (Number.isNaN(value)) return "NaN";
  return formatCell(column, value);
}

/**
 * How a table cell writes a value: "–" where not measured (NaN); fractions as a percentage
 * with one decimal (two below 0.1%, "<0.01%" for a tiny non-zero one, so it never reads as
 * none); other numbers with 3 significant digits.
 */
export function formatCell(name: string, value: number): string {
  if (Number.isNaN(value)) return "–";
  const unit = statisticInfo(name).unit;
  if (unit.startsWith("fraction") && Number.isFinite(value)) {
    const pct = value * 100;
    if (pct === 0) return "0%";
    if (pct > 0 && pct < 0.01) return "<0.01%";
    return `${pct < 0.1 ? pct.toFixed(2) : pct.toFixed(1)}%`;
  }
  return formatNumber(value);
}

/** A table header: the statistic's short name, "%" after a fraction's (units: `unitsNote`). */
export function columnTitle(name: string): string {
  const s = statisticInfo(name);
  return s.unit.startsWith("fraction") ? `${s.short} %` : s.short;
}

/** The line under the table saying each column's unit: "mean, std in output units; …". */
export function unitsNote(columns: readonly string[]): string {
  const byUnit = new Map<string, string[]>();
  for (const c of columns) {
    const s = statisticInfo(c);
    const unit = s.unit.startsWith("fraction") ? `% of ${s.unit.slice("fraction of ".length) || "values"}` : s.unit;
    if (!unit) continue;
    const list = byUnit.get(unit) ?? [];
    list.push(s.short);
    byUnit.set(unit, list);
  }
  return [...byUnit].map(([unit, names]) => `${names.join(", ")}: ${unit}`).join(" · ");
}

