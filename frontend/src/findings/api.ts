// The `findings` route (docs/http_api.md): every rule over the runs asked for, the findings
// most severe first, which rules had something to check in each run, and the rules' table.

import { getJson, isRecord, jsonNumber } from "../json";

export type Severity = "error" | "warning" | "info";

/** From the most to the least severe. */
export const SEVERITIES: readonly Severity[] = ["error", "warning", "info"];

/** Where a finding's numbers are shown: a kind's view of (run, tag) at a step. */
export interface Evidence {
  kind: string;
  tag: string;
  step: number;
  /** The row of a tensor series (an update-ratio parameter, a layer-statistics row). */
  name?: string;
  /** Layer statistics: the statistic whose chart shows it, and its part. */
  statistic?: string;
  part?: string;
}

export interface Finding {
  rule: string;
  severity: Severity;
  run: string;
  /** "" for the whole network. */
  layer: string;
  /** A sentence with the numbers and the step range. */
  message: string;
  /** What to try. */
  advice: string;
  firstStep: number;
  lastStep: number;
  evidence: Evidence;
  numbers: Map<string, number>;
}

export interface Rule {
  name: string;
  title: string;
  severity: Severity;
  off: boolean;
  /** The kinds it reads. */
  reads: string[];
  source: string;
}

export interface FindingsReport {
  /** The runs checked. */
  runs: string[];
  /** Most severe first, then the earliest (as the route sorts them). */
  findings: Finding[];
  /** run -> the rules that had data to check in it. */
  checked: Map<string, string[]>;
  rules: Rule[];
  /** Series that could not be read, rules that failed: each with its run. */
  warnings: FindingsWarning[];
}

export interface FindingsWarning {
  run: string;
  message: string;
}

/**
 * The findings of `runs` (null: every run with deepscope data). The same JSON object (a
 * reload answered 304 Not Modified) gives the very same report back.
 */
export async function fetchFindings(runs: readonly string[] | null): Promise<FindingsReport> {
  const params = new URLSearchParams();
  for (const run of runs ?? []) params.append("run", run);
  const query = params.toString();
  return parseFindings(await getJson(query ? `./findings?${query}` : "./findings"));
}

const parsed = new WeakMap<object, FindingsReport>();

function severity(value: unknown): Severity {
  return value === "error" || value === "warning" ? value : "info";
}

function text(value: unknown): string {
  return typeof value === "string" ? value : value === undefined || value === null ? "" : String(value);
}

function parseWarning(value: unknown): FindingsWarning {
  const raw = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  return { run: text(raw.run), message: text(raw.message) };
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(text) : [];
}

function step(value: unknown): number {
  const n = jsonNumber(value);
  return Number.isFinite(n) ? n : 0;
}

function parseEvidence(raw: unknown): Evidence {
  const e = isRecord(raw) ? raw : {};
  const evidence: Evidence = { kind: text(e.kind), tag: text(e.tag), step: step(e.step) };
  for (const key of ["name", "statistic", "part"] as const) {
    if (typeof e[key] === "string") evidence[key] = e[key] as string;
  }
  return evidence;
}

function parseFinding(raw: unknown): Finding | null {
  if (!isRecord(raw) || typeof raw.run !== "string") return null;
  const numbers = new Map<string, number>();
  if (isRecord(raw.numbers)) {
    for (const key of Object.keys(raw.numbers)) numbers.set(key, jsonNumber(raw.numbers[key]));
  }
  return {
    rule: text(raw.rule),
    severity: severity(raw.severity),
    run: raw.run,
    layer: text(raw.layer),
    message: text(raw.message),
    advice: text(raw.advice),
    firstStep: step(raw.first_step),
    lastStep: step(raw.last_step),
    evidence: parseEvidence(raw.evidence),
    numbers,
  };
}

function parseRule(raw: unknown): Rule | null {
  if (!isRecord(raw) || typeof raw.name !== "string") return null;
  return {
    name: raw.name,
    title: typeof raw.title === "string" && raw.title !== "" ? raw.title : raw.name,
    severity: severity(raw.severity),
    off: raw.off === true,
    reads: strings(raw.reads),
    source: text(raw.source),
  };
}

/** Validate a response of `findings`; malformed entries are left out. */
export function parseFindings(raw: unknown): FindingsReport {
  if (!isRecord(raw)) throw new Error("./findings: expected an object");
  const known = parsed.get(raw);
  if (known) return known;
  const checked = new Map<string, string[]>();
  if (isRecord(raw.checked)) {
    for (const run of Object.keys(raw.checked)) checked.set(run, strings(raw.checked[run]));
  }
  const report: FindingsReport = {
    runs: strings(raw.runs),
    findings: (Array.isArray(raw.findings) ? raw.findings : [])
      .map(parseFinding)
      .filter((f): f is Finding => f !== null),
    checked,
    rules: (Array.isArray(raw.rules) ? raw.rules : []).map(parseRule).filter((r): r is Rule => r !== null),
    warnings: (Array.isArray(raw.warnings) ? raw.warnings : []).map(parseWarning),
  };
  parsed.set(raw, report);
  return report;
}
