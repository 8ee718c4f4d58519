// How the layer statistics table writes its cells, headers and units (pure: node-tested).

import { statisticInfo } from "./statistics";
import { formatNumber } from "./xychart";

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

