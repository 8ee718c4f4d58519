// Reading 200 layers (a transformer): rows whose module paths differ only in their block
// numbers (blocks.0.mlp.fc1 … blocks.11.mlp.fc1) and whose modules are of one class collapse
// into one row, "blocks.0–11.mlp.fc1"; rows are filtered by module path and sorted by a
// statistic. Pure functions: the table and the charts call them.

/** A row of the table: one layer (or parameter), or repeated blocks collapsed into one. */
export interface CollapsedRow {
  /** Unique: the name itself for a single row, "group:" + pattern + class for a group. */
  key: string;
  /** What the table shows: the name, or the pattern with its block numbers ("blocks.0–11.mlp.fc1"). */
  label: string;
  /** The module class the rows share ("" when unknown). */
  type: string;
  /** Indices (model order) of the rows it holds, ascending. */
  members: number[];
}

const INDEX = /^\d+$/;

/** The name's module path and its output key: "blocks.0.attn:1" → ["blocks.0.attn", ":1"]. */
function splitKey(name: string): [string, string] {
  const colon = name.indexOf(":");
  return colon < 0 ? [name, ""] : [name.slice(0, colon), name.slice(colon)];
}

/** The name with every numbered path segment replaced by "*": "blocks.*.mlp.fc1". */
export function blockPattern(name: string): string {
  const [path, key] = splitKey(name);
  return path
    .split(".")
    .map((s) => (INDEX.test(s) ? "*" : s))
    .join(".") + key;
}

/** "0–11" for 0, 1, …, 11; "0–3, 5, 7–8" when some are missing. */
export function indexRanges(values: readonly number[]): string {
  const sorted = [...new Set(values)].sort((a, b) => a - b);
  const parts: string[] = [];
  let k = 0;
  while (k < sorted.length) {
    let end = k;
    while (end + 1 < sorted.length && sorted[end + 1] === sorted[end] + 1) end++;
    parts.push(end === k ? String(sorted[k]) : `${sorted[k]}–${sorted[end]}`);
    k = end + 1;
  }
  return parts.join(", ");
}

/**
 * The label of a group of names sharing `pattern`: each "*" becomes the range of numbers the
 * members have there ("blocks.0–11.mlp.fc1"), or the single number when all share it.
 */
export function groupLabel(names: readonly string[]): string {
  const split = names.map((n) => {
    const [path, key] = splitKey(n);
    return { segments: path.split("."), key };
  });
  const first = split[0];
  const segments = first.segments.map((seg, i) => {
    if (!INDEX.test(seg)) return seg;
    const values = split.map((s) => Number(s.segments[i]));
    return indexRanges(values).replace(/, /g, ",");
  });
  return segments.join(".") + first.key;
}

/**
 * Rows in model order, repeated blocks collapsed: names with the same pattern (numbered
 * segments as "*") and the same module class form one row when there are at least two and
 * they differ in a number; every other name is its own row. A group sits where its first
 * member is. `types[i]` is name i's module class ("" when unknown).
 */
export function collapseBlocks(names: readonly string[], types: readonly string[] = []): CollapsedRow[] {
  const byKey = new Map<string, number[]>();
  const order: string[] = [];
  names.forEach((name, i) => {
    const pattern = blockPattern(name);
    const key = pattern === name ? `name:${name}` : `group:${pattern}\u0000${types[i] ?? ""}`;
    const list = byKey.get(key);
    if (list) list.push(i);
    else {
      byKey.set(key, [i]);
      order.push(key);
    }
  });
  const rows: CollapsedRow[] = [];
  for (const key of order) {
    const members = byKey.get(key) ?? [];
    const type = types[members[0]] ?? "";
    if (members.length < 2 || key.startsWith("name:")) {
      for (const i of members) rows.push({ key: names[i], label: names[i], type: types[i] ?? "", members: [i] });
      continue;
    }
    rows.push({ key, label: groupLabel(members.map((i) => names[i])), type, members });
  }
  return rows;
}

/** Every name as its own row, in model order (nothing collapsed). */
export function singleRows(names: readonly string[], types: readonly string[] = []): CollapsedRow[] {
  return names.map((name, i) => ({ key: name, label: name, type: types[i] ?? "", members: [i] }));
}

/** How a collapsed row's members make one number. */
export type Summary = "median" | "min" | "max";

/** The members' summary of their finite values (NaN when none is finite). */
export function summarize(values: readonly number[], how: Summary): number {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) {
    // Non-finite values are worth showing: a NaN or ±Inf member is not "not measured".
    const bad = values.find((v) => !Number.isNaN(v));
    return bad ?? NaN;
  }
  if (how === "min") return finite[0];
  if (how === "max") return finite[finite.length - 1];
  const mid = finite.length >> 1;
  return finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2;
}

/**
 * Row indices sorted by `value(row)`, descending or ascending; rows without a number (NaN)
 * last in either direction; ties keep their order (model order).
 */
export function sortRows<T>(rows: readonly T[], value: (row: T) => number, descending: boolean): T[] {
  const keyed = rows.map((row, k) => ({ row, k, v: value(row) }));
  keyed.sort((a, b) => {
    const an = Number.isNaN(a.v);
    const bn = Number.isNaN(b.v);
    if (an || bn) return an === bn ? a.k - b.k : an ? 1 : -1;
    if (a.v === b.v) return a.k - b.k;
    return descending ? (a.v < b.v ? 1 : -1) : a.v < b.v ? -1 : 1;
  });
  return keyed.map((e) => e.row);
}

/** Which of a row's flags are raised: dead channels or saturated units above `threshold`. */
export interface Flags {
  dead: boolean;
  saturated: boolean;
}

/** A row is flagged dead when its dead-channel fraction, saturated when its saturated fraction, exceeds the threshold. */
export function flagsOf(deadFraction: number, saturatedFraction: number, threshold: number): Flags {
  return { dead: deadFraction > threshold, saturated: saturatedFraction > threshold };
}
