// What the Findings section shows of a report, as plain data: the findings of the selected
// runs, which lines show at first (errors and warnings; info behind a toggle when there are
// many), the counts by severity, what was checked, and the words for where a line leads.

import { formatInt } from "../format";
import { statisticInfo } from "../layer_statistics/statistics";
import { SEVERITIES, type Finding, type FindingsReport, type Severity } from "./api";

/** Up to this many findings show whole, info too, with no toggle. */
export const COMPACT = 8;
/** Errors and warnings shown before a "show N more" toggle. */
export const PRIMARY_SHOWN = 10;

/** The findings of `runs` (the report may hold more: it was asked for every run). */
export function findingsOf(report: FindingsReport, runs: ReadonlySet<string>): Finding[] {
  return report.findings.filter((f) => runs.has(f.run));
}

export function countBySeverity(findings: readonly Finding[]): Record<Severity, number> {
  const counts: Record<Severity, number> = { error: 0, warning: 0, info: 0 };
  for (const f of findings) counts[f.severity]++;
  return counts;
}

/** "1 error · 3 warnings · 12 info"; the severities with none left out ("" when none). */
export function countsText(counts: Record<Severity, number>): string {
  const word = (s: Severity, n: number) => (s === "info" || n === 1 ? s : `${s}s`);
  return SEVERITIES.filter((s) => counts[s] > 0)
    .map((s) => `${formatInt(counts[s])} ${word(s, counts[s])}`)
    .join(" · ");
}

export interface Layout {
  /** The lines to show, in the report's order. */
  lines: Finding[];
  /** Errors and warnings left out until "show more". */
  morePrimary: number;
  /** Info findings; whether they are among `lines`; whether a toggle shows or hides them. */
  info: number;
  infoShown: boolean;
  infoToggle: boolean;
}

/**
 * Which lines show. A few findings (COMPACT) show whole; past that the errors and warnings
 * (the first PRIMARY_SHOWN unless `moreOpen`), and the info findings only when `infoOpen`.
 */
export function layout(findings: readonly Finding[], moreOpen: boolean, infoOpen: boolean): Layout {
  const primary = findings.filter((f) => f.severity !== "info");
  const info = findings.filter((f) => f.severity === "info");
  if (findings.length <= COMPACT) {
    return { lines: [...findings], morePrimary: 0, info: info.length, infoShown: true, infoToggle: false };
  }
  const shownPrimary = moreOpen ? primary : primary.slice(0, PRIMARY_SHOWN);
  return {
    lines: infoOpen ? [...shownPrimary, ...info] : shownPrimary,
    morePrimary: primary.length - shownPrimary.length,
    info: info.length,
    infoShown: infoOpen && info.length > 0,
    infoToggle: info.length > 0,
  };
}

/** What was checked in the selected runs. */
export interface Checked {
  runs: number;
  /** Rules that had something to check, by title, each with the number of runs it checked. */
  rules: Array<{ title: string; runs: number }>;
  /** Rules in force that had nothing to check (none of the series they read), by title. */
  unchecked: Array<{ title: string; reads: string[] }>;
  /** Rules turned off, by title. */
  off: string[];
}

export function checkedIn(report: FindingsReport, runs: readonly string[]): Checked {
  const perRule = new Map<string, number>();
  for (const run of runs) for (const rule of report.checked.get(run) ?? []) perRule.set(rule, (perRule.get(rule) ?? 0) + 1);
  const titles = new Map(report.rules.map((r) => [r.name, r.title]));
  // In the rules' order; a rule the table does not list goes last, by name.
  const order = [...report.rules.map((r) => r.name), ...[...perRule.keys()].filter((n) => !titles.has(n)).sort()];
  return {
    runs: runs.length,
    rules: order.filter((n) => perRule.has(n)).map((n) => ({ title: titles.get(n) ?? n, runs: perRule.get(n) ?? 0 })),
    unchecked: report.rules.filter((r) => !r.off && !perRule.has(r.name)).map((r) => ({ title: r.title, reads: r.reads })),
    off: report.rules.filter((r) => r.off).map((r) => r.title),
  };
}

/** "Non-finite values, Dead units (2 of 3 runs)": the rules checked, in a line. */
export function checkedText(checked: Checked): string {
  return checked.rules
    .map((r) => (r.runs < checked.runs ? `${r.title} (${r.runs} of ${checked.runs} runs)` : r.title))
    .join(", ");
}

/** "whole network" for a finding about no one layer. */
export function layerText(layer: string): string {
  return layer === "" ? "whole network" : layer;
}

/** Where a line leads: "Layer statistics · dead channels · step 290". */
export function whereText(finding: Finding, kindTitle: (kind: string) => string): string {
  const e = finding.evidence;
  const parts = [kindTitle(e.kind)];
  if (e.statistic) parts.push(statisticInfo(e.statistic).label);
  parts.push(`step ${formatInt(e.step)}`);
  return parts.join(" · ");
}

/** "steps 150–190", "step 60". */
export function stepsText(finding: Finding): string {
  return finding.firstStep === finding.lastStep
    ? `step ${formatInt(finding.firstStep)}`
    : `steps ${formatInt(finding.firstStep)}–${formatInt(finding.lastStep)}`;
}
