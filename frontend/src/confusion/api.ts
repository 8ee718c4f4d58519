// The `confusion` and `confusion_series` routes: one step's confusion matrix (counts, rows
// true classes, columns predicted ones) with per-class precision, recall, F1 and support, the
// accuracy and averages and the most-confused pairs, all computed by the plugin from the
// counts; and accuracy and macro / weighted F1 over steps. Undefined values ("NaN") are NaN.

import { expectRecord, getJson, jsonNumber } from "../json";

export interface ClassRow {
  name: string;
  support: number;
  predicted: number;
  correct: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface ConfusedPair {
  true: number;
  predicted: number;
  trueName: string;
  predictedName: string;
  count: number;
  fraction: number;
}

export interface ConfusionStepData {
  run: string;
  tag: string;
  step: number;
  steps: number[];
  classNames: string[];
  /** The step's error (a damaged event), or null. */
  error: string | null;
  on: string;
  samples: number;
  /** [true][predicted] counts. */
  counts: number[][];
  accuracy: number;
  macro: { precision: number; recall: number; f1: number };
  weighted: { precision: number; recall: number; f1: number };
  perClass: ClassRow[];
  mostConfused: ConfusedPair[];
}

export interface ConfusionSeries {
  run: string;
  tag: string;
  steps: number[];
  classNames: string[];
  accuracy: number[];
  macroF1: number[];
  weightedF1: number[];
  warnings: string[];
}

function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`confusion: ${what} is not a list`);
  return value;
}

function strings(value: unknown, what: string): string[] {
  return list(value, what).map(String);
}

function averages(value: unknown, what: string): { precision: number; recall: number; f1: number } {
  const raw = expectRecord(value, `confusion ${what}`);
  return { precision: jsonNumber(raw.precision), recall: jsonNumber(raw.recall), f1: jsonNumber(raw.f1) };
}

export function parseStep(value: unknown): ConfusionStepData {
  const raw = expectRecord(value, "confusion");
  const classNames = strings(raw.class_names, "class_names");
  const error = typeof raw.error === "string" ? raw.error : null;
  const base = {
    run: String(raw.run),
    tag: String(raw.tag),
    step: Number(raw.step),
    steps: list(raw.steps, "steps").map(Number),
    classNames,
    error,
  };
  if (error !== null) {
    return {
      ...base, on: "", samples: 0, counts: [], accuracy: NaN,
      macro: { precision: NaN, recall: NaN, f1: NaN },
      weighted: { precision: NaN, recall: NaN, f1: NaN }, perClass: [], mostConfused: [],
    };
  }
  const counts = list(raw.counts, "counts").map((row) => list(row, "counts row").map(Number));
  if (counts.length !== classNames.length || counts.some((row) => row.length !== classNames.length)) {
    throw new Error(`confusion: counts are not ${classNames.length} × ${classNames.length}`);
  }
  return {
    ...base,
    on: String(raw.on ?? ""),
    samples: Number(raw.samples),
    counts,
    accuracy: jsonNumber(raw.accuracy),
    macro: averages(raw.macro, "macro"),
    weighted: averages(raw.weighted, "weighted"),
    perClass: list(raw.per_class, "per_class").map((item) => {
      const r = expectRecord(item, "confusion per_class");
      return {
        name: String(r.name),
        support: Number(r.support),
        predicted: Number(r.predicted),
        correct: Number(r.correct),
        precision: jsonNumber(r.precision),
        recall: jsonNumber(r.recall),
        f1: jsonNumber(r.f1),
      };
    }),
    mostConfused: list(raw.most_confused, "most_confused").map((item) => {
      const r = expectRecord(item, "confusion most_confused");
      return {
        true: Number(r.true),
        predicted: Number(r.predicted),
        trueName: String(r.true_name),
        predictedName: String(r.predicted_name),
        count: Number(r.count),
        fraction: jsonNumber(r.fraction),
      };
    }),
  };
}

export function parseSeries(value: unknown): ConfusionSeries {
  const raw = expectRecord(value, "confusion_series");
  return {
    run: String(raw.run),
    tag: String(raw.tag),
    steps: list(raw.steps, "steps").map(Number),
    classNames: strings(raw.class_names, "class_names"),
    accuracy: list(raw.accuracy, "accuracy").map(jsonNumber),
    macroF1: list(raw.macro_f1, "macro_f1").map(jsonNumber),
    weightedF1: list(raw.weighted_f1, "weighted_f1").map(jsonNumber),
    warnings: strings(raw.warnings ?? [], "warnings"),
  };
}

export async function fetchSeries(run: string, tag: string): Promise<ConfusionSeries> {
  const params = new URLSearchParams({ run, tag });
  return parseSeries(await getJson(`./confusion_series?${params.toString()}`));
}

export async function fetchStep(run: string, tag: string, step: number): Promise<ConfusionStepData> {
  const params = new URLSearchParams({ run, tag, step: String(step), top: "10" });
  return parseStep(await getJson(`./confusion?${params.toString()}`));
}

/** counts normalised by row (true class: the diagonal is recall), column (predicted: the
 *  diagonal is precision), or not at all; NaN in an empty row or column. */
export type Normalization = "counts" | "true" | "predicted";

export function normalized(counts: number[][], by: Normalization): number[][] {
  if (by === "counts") return counts.map((row) => row.slice());
  const size = counts.length;
  const rowSums = counts.map((row) => row.reduce((a, b) => a + b, 0));
  const colSums = Array.from({ length: size }, (_, j) => counts.reduce((a, row) => a + row[j], 0));
  return counts.map((row, i) =>
    row.map((v, j) => {
      const total = by === "true" ? rowSums[i] : colSums[j];
      return total > 0 ? v / total : NaN;
    }),
  );
}
