// The layer statistics routes (docs/http_api.md), fetched and validated into typed data:
// `layer_statistics` (one statistic as a layers × steps grid, the shape update ratios and
// layer values answer, so update ratios' grid card draws it), `layer_statistics_step`
// (every statistic of every row at one step) and `layer_statistics_spectrum` (one layer's
// covariance eigenvalues over the steps that have them).

import { decodeBase64Float32 } from "../binary";
import { expectRecord, getJson, isRecord, jsonNumber, numbers } from "../json";
import { parseLayerGrid, type LayerGrid } from "../update_ratios/grid";
import { statisticInfo, statisticQuantity, type Part } from "./statistics";

/** One statistic of a series as a grid (steps × rows), with what the series holds. */
export interface StatisticGrid extends LayerGrid {
  /** The statistic (column) shown, e.g. "std". */
  statistic: string;
  part: Part;
  /** Module class per row ("" when the route gives none), in `names` order. */
  types: string[];
  /** The columns the series holds, both parts, in the route's order. */
  statistics: string[];
}

/** Every statistic of every row of one run's series at one step. */
export interface StepTable {
  run: string;
  tag: string;
  step: number;
  /** Module outputs, in forward order. */
  layers: string[];
  types: string[];
  /** Column names of `activations`. */
  activationStatistics: string[];
  /** layers.length × activationStatistics.length, row-major; NaN: not measured. */
  activations: Float32Array;
  counts: number[];
  channels: number[];
  deadChannels: number[];
  /** Parameters, in model.named_parameters() order. */
  parameters: string[];
  parameterStatistics: string[];
  /**
   * parameters.length × parameterStatistics.length, row-major. A NaN is a measurement (a
   * non-finite norm) except a gradient statistic of a parameter without a gradient.
   */
  parameterValues: Float32Array;
  /**
   * Per parameter: 1 where the step lists it in `without_gradient` (no gradient at this step:
   * frozen, or unused by its loss), so its gradient statistics are not measured.
   */
  withoutGradient: Uint8Array;
  /** Eigenvalues kept per layer (0: no covariance at this step). */
  eigenvalueCounts: number[];
  covarianceSamples: number[];
  warnings: string[];
}

/** One layer's covariance spectrum at one step. */
export interface SpectrumStep {
  step: number;
  /** Eigenvalues, descending (units: squared output units). */
  eigenvalues: Float32Array;
  effectiveDimension: number;
  saturation: number;
  effectiveRank: number;
  samples: number;
  /** Set when this step's spectrum could not be read. */
  error: string | null;
}

/** One run's layer's covariance spectra over the steps that have them. */
export interface LayerSpectrum {
  run: string;
  tag: string;
  layer: string;
  /** delve saturation's explained-variance threshold (e.g. 0.99); NaN when not given. */
  varianceThreshold: number;
  steps: SpectrumStep[];
  warnings: string[];
}

const grids = new WeakMap<object, StatisticGrid>();

export async function fetchStatisticGrid(run: string, tag: string, statistic: string | null): Promise<StatisticGrid> {
  const params = new URLSearchParams({ run, tag, format: "base64" });
  if (statistic !== null) params.set("statistic", statistic);
  return parseStatisticGrid(await getJson(`./layer_statistics?${params.toString()}`));
}

/**
 * Validate a response of `layer_statistics` (either format). A row not in a step (JSON
 * null, a base64 `not_measured` pair) is "not measured". So is a NaN of a module-output
 * statistic: those are statistics of the finite values, NaN only where not measured (the
 * saturated fraction of a module that is not a bounded activation, the covariance metrics
 * at a step without a covariance). A NaN parameter statistic is a measurement (the norm of
 * a NaN gradient) and is shown as non-finite, except where the route lists it in
 * `zero_weight` (‖g‖/‖W‖ of a weight exactly zero: undefined, not a numerical fault, and not
 * counted as non-finite). The same JSON object (a reload answered 304) gives the same result.
 */
export function parseStatisticGrid(raw: unknown): StatisticGrid {
  const r = expectRecord(raw, "layer_statistics");
  const known = grids.get(r);
  if (known) return known;
  const statistic =
    typeof r.statistic === "string" && r.statistic !== "" ? r.statistic : typeof r.quantity === "string" ? r.quantity : "";
  const info = statisticInfo(statistic);
  const part: Part = r.part === "parameters" || r.part === "activations" ? r.part : info.part;
  const base = parseLayerGrid(r, "layer_statistics", () =>
    statisticQuantity(statistic, typeof r.unit === "string" ? r.unit : undefined, String(r.scale ?? "")),
  );
  let nonFinite = 0;
  for (let k = 0; k < base.values.length; k++) {
    const v = base.values[k];
    if (base.missing[k] || base.zeroWeight[k]) continue;
    if (Number.isNaN(v) && part === "activations") base.missing[k] = 1;
    else if (!Number.isFinite(v)) nonFinite++;
  }
  base.nonFinite = nonFinite;
  const names = base.names;
  const types = Array.isArray(r.types) ? r.types.map((t) => (typeof t === "string" ? t : "")) : [];
  const grid: StatisticGrid = {
    ...base,
    statistic,
    part,
    types: names.map((_, j) => types[j] ?? ""),
    statistics: Array.isArray(r.statistics) ? r.statistics.map(String) : [statistic],
  };
  grids.set(r, grid);
  return grid;
}

export async function fetchStepTable(run: string, tag: string, step: number): Promise<StepTable> {
  const params = new URLSearchParams({ run, tag, step: String(step), format: "base64" });
  return parseStepTable(await getJson(`./layer_statistics_step?${params.toString()}`));
}

/**
 * A rows × columns float matrix of a route: JSON rows (numbers, or "NaN"/"Infinity" strings)
 * or `{base64, dtype: "float32", shape}`. `what` names it in errors.
 */
export function readMatrix(value: unknown, rows: number, cols: number, what: string): Float32Array {
  if (value === undefined || value === null) {
    if (rows * cols === 0) return new Float32Array(0);
    throw new Error(`${what}: missing`);
  }
  if (isRecord(value) && typeof value.base64 === "string") {
    if (value.dtype !== undefined && value.dtype !== "float32") {
      throw new Error(`${what}: unsupported dtype ${String(value.dtype)}`);
    }
    if (Array.isArray(value.shape)) {
      const shape = value.shape.map(Number);
      const count = shape.reduce((a, b) => a * b, 1);
      if (count !== rows * cols) {
        throw new Error(`${what}: shape [${shape.join(", ")}] does not match ${rows} rows × ${cols} columns`);
      }
    }
    return decodeBase64Float32(value.base64, rows * cols, what);
  }
  if (!Array.isArray(value)) throw new Error(`${what}: expected rows of numbers`);
  const flat = value.length > 0 && !Array.isArray(value[0]);
  if (flat) {
    if (value.length !== rows * cols) throw new Error(`${what}: ${value.length} values for ${rows} × ${cols}`);
    return Float32Array.from(value, jsonNumber);
  }
  if (value.length !== rows) throw new Error(`${what}: ${value.length} rows for ${rows}`);
  const out = new Float32Array(rows * cols);
  value.forEach((row: unknown, i: number) => {
    if (!Array.isArray(row) || row.length !== cols) throw new Error(`${what}: row ${i} does not have ${cols} values`);
    row.forEach((x: unknown, j: number) => (out[i * cols + j] = jsonNumber(x)));
  });
  return out;
}

/** A list of whole numbers of a route, one per row (zeros when absent). */
function counts(value: unknown, n: number, what: string): number[] {
  if (value === undefined || value === null) return new Array<number>(n).fill(0);
  const list = isRecord(value) && Array.isArray(value.values) ? value.values : value;
  const out = numbers(list);
  if (out.length !== n) throw new Error(`${what}: ${out.length} values for ${n} rows`);
  return out;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.map(String) : [];
}

/** The parameters `without_gradient` names (names, or indices into `parameters`) as a mask. */
function withoutGradientMask(value: unknown, parameters: readonly string[]): Uint8Array {
  const mask = new Uint8Array(parameters.length);
  if (!Array.isArray(value)) return mask;
  const index = new Map(parameters.map((name, i) => [name, i]));
  for (const entry of value) {
    const i = typeof entry === "number" ? entry : index.get(String(entry));
    if (i !== undefined && Number.isInteger(i) && i >= 0 && i < parameters.length) mask[i] = 1;
  }
  return mask;
}

/** Validate a response of `layer_statistics_step`. */
export function parseStepTable(raw: unknown): StepTable {
  const r = expectRecord(raw, "layer_statistics_step");
  if (typeof r.error === "string" && r.error !== "") throw new Error(r.error);
  const layers = strings(r.layers);
  const activationStatistics = strings(r.activation_statistics);
  const parameters = strings(r.parameters);
  const parameterStatistics = strings(r.parameter_statistics);
  const L = layers.length;
  const types = strings(r.types ?? r.layer_types);
  return {
    run: String(r.run ?? ""),
    tag: String(r.tag ?? ""),
    step: Number(r.step),
    layers,
    types: layers.map((_, i) => types[i] ?? ""),
    activationStatistics,
    activations: readMatrix(r.activations, L, activationStatistics.length, "activations"),
    counts: counts(r.counts, L, "counts"),
    channels: counts(r.channels, L, "channels"),
    deadChannels: counts(r.dead_channels, L, "dead_channels"),
    parameters,
    parameterStatistics,
    parameterValues: readMatrix(r.parameter_values, parameters.length, parameterStatistics.length, "parameter_values"),
    withoutGradient: withoutGradientMask(r.without_gradient, parameters),
    eigenvalueCounts: counts(r.eigenvalue_counts, L, "eigenvalue_counts"),
    covarianceSamples: counts(r.covariance_samples, L, "covariance_samples"),
    warnings: strings(r.warnings),
  };
}

/** Row `i`'s value of column `name` in a step table's activations (NaN when absent). */
export function activationValue(table: StepTable, i: number, name: string): number {
  const j = table.activationStatistics.indexOf(name);
  if (j < 0) return NaN;
  return table.activations[i * table.activationStatistics.length + j];
}

/** Parameter `i`'s value of column `name` (NaN when absent). */
export function parameterValue(table: StepTable, i: number, name: string): number {
  const j = table.parameterStatistics.indexOf(name);
  if (j < 0) return NaN;
  return table.parameterValues[i * table.parameterStatistics.length + j];
}

export async function fetchLayerSpectrum(run: string, tag: string, layer: string): Promise<LayerSpectrum> {
  const params = new URLSearchParams({ run, tag, layer, format: "base64" });
  return parseLayerSpectrum(await getJson(`./layer_statistics_spectrum?${params.toString()}`));
}

/** A route's per-step list of numbers, one per step ("NaN" strings read as NaN). */
function perStep(value: unknown, n: number, what: string): number[] {
  if (value === undefined || value === null) return new Array<number>(n).fill(NaN);
  if (!Array.isArray(value) || value.length !== n) throw new Error(`${what}: expected ${n} values, one per step`);
  return value.map(jsonNumber);
}

/**
 * Validate a response of `layer_statistics_spectrum`: parallel lists, one entry per step
 * (steps, eigenvalues, channels, samples, effective_dimension, saturation, effective_rank).
 * `eigenvalues` is a list per step (JSON) or `{base64, dtype, shape: [S, Cmax]}`, each row
 * padded with NaN after its `channels[i]` values.
 */
export function parseLayerSpectrum(raw: unknown): LayerSpectrum {
  const r = expectRecord(raw, "layer_statistics_spectrum");
  const stepList = numbers(r.steps);
  const S = stepList.length;
  const channels = Array.isArray(r.channels) ? perStep(r.channels, S, "channels") : null;
  const eigen = r.eigenvalues;
  const rows: Float32Array[] = [];
  if (isRecord(eigen) && typeof eigen.base64 === "string") {
    const shape = Array.isArray(eigen.shape) ? eigen.shape.map(Number) : [];
    if (shape.length !== 2 || shape[0] !== S) {
      throw new Error(`eigenvalues: shape [${shape.join(", ")}] does not match ${S} steps`);
    }
    const flat = readMatrix(eigen, S, shape[1], "eigenvalues");
    for (let i = 0; i < S; i++) {
      const row = flat.subarray(i * shape[1], (i + 1) * shape[1]);
      let n = channels ? channels[i] : row.length;
      if (!Number.isInteger(n) || n < 0 || n > row.length) n = row.length;
      rows.push(Float32Array.from(row.subarray(0, n)));
    }
  } else if (Array.isArray(eigen)) {
    if (eigen.length !== S) throw new Error(`eigenvalues: ${eigen.length} lists for ${S} steps`);
    eigen.forEach((list: unknown, i: number) => {
      if (!Array.isArray(list)) throw new Error(`eigenvalues at step ${stepList[i]}: expected a list`);
      rows.push(Float32Array.from(list, jsonNumber));
    });
  } else if (S > 0) {
    throw new Error("eigenvalues: missing");
  }
  const dims = perStep(r.effective_dimension, S, "effective_dimension");
  const saturation = perStep(r.saturation, S, "saturation");
  const ranks = perStep(r.effective_rank, S, "effective_rank");
  const samples = perStep(r.samples, S, "samples");
  const steps: SpectrumStep[] = stepList.map((step, i) => ({
    step,
    eigenvalues: rows[i],
    effectiveDimension: dims[i],
    saturation: saturation[i],
    effectiveRank: ranks[i],
    samples: samples[i],
    error: null,
  }));
  return {
    run: String(r.run ?? ""),
    tag: String(r.tag ?? ""),
    layer: String(r.layer ?? ""),
    varianceThreshold: r.variance_threshold === undefined ? NaN : jsonNumber(r.variance_threshold),
    steps,
    warnings: strings(r.warnings),
  };
}
