// The spectrum routes (docs/http_api.md): fetch and validate into typed data.

import { decodeBase64Float32 } from "../binary";
import { expectRecord, getJson, isRecord, jsonNumber, numbers } from "../json";
import {
  OPERATOR_METRICS,
  parseCoverage,
  parseLayerOperator,
  parseOperator,
  type Coverage,
  type LayerOperator,
  type OperatorSpectrum,
} from "./operator";

export interface SpectrumInfo {
  weightShape: number[];
  layerKind: string;
  matrixRule: string;
  /** [groups, rows, cols] */
  matrixShape: number[];
}

/** One layer's metrics over its kept steps (spectrum_metrics). */
export interface LayerMetrics {
  tag: string;
  info: SpectrumInfo;
  steps: number[];
  /** metric name -> one value per step (NaN/±Infinity kept). */
  metrics: Record<string, Float64Array>;
  /** step -> error message, for steps that could not be measured. */
  errors: Map<number, string>;
  /** step -> number of non-finite singular values. */
  nonFinite: Map<number, number>;
  /** step -> the earlier step whose spectrum it repeats (the weight did not change). */
  unchanged: Map<number, number>;
  /** Per step: how much of the spectrum was computed. */
  coverage: Coverage[];
  /** A conv layer's operator over its steps (its numbers are also in `metrics`, as
   * operator_norm, operator_stable_rank, operator_frobenius_norm); null for other layers. */
  operator: LayerOperator | null;
}

export interface RunMetrics {
  run: string;
  metricNames: string[];
  layers: Map<string, LayerMetrics>;
}

/** One step's spectrum (spectrum). */
export interface StepSpectrum {
  run: string;
  tag: string;
  step: number;
  info: SpectrumInfo;
  metrics: Record<string, number>;
  error: string | null;
  nonFinite: number;
  /** The step whose spectrum this is (the weight has not changed since), or null. */
  unchangedSince: number | null;
  /** All groups' singular values, merged, descending (NaN last). */
  values: Float32Array;
  groups: number;
  coverage: Coverage;
  /** Singular values per group held ([groups, k'] with k' < k for partial coverage). */
  perGroup: number;
  /** A conv layer's operator spectrum at this step, or null. */
  operator: OperatorSpectrum | null;
}

/** The spectra of (a sample of) a series' steps (spectrum_evolution). */
export interface Evolution {
  run: string;
  tag: string;
  steps: number[];
  totalSteps: number;
  totalValues: number;
  /** Indices (0 = largest) of the singular values kept, one per column of `values`. */
  index: number[];
  /** steps.length x index.length, row-major. */
  values: Float32Array;
  errors: Map<number, string>;
}

function parseInfo(raw: unknown): SpectrumInfo {
  const r = isRecord(raw) ? raw : {};
  return {
    weightShape: numbers(r.weight_shape),
    layerKind: typeof r.layer_kind === "string" ? r.layer_kind : "",
    matrixRule: typeof r.matrix_rule === "string" ? r.matrix_rule : "",
    matrixShape: numbers(r.matrix_shape),
  };
}

/** A metric as a number: flags (condition_number_is_bound) as 1 or 0. */
function metricNumber(value: unknown): number {
  if (typeof value === "boolean") return value ? 1 : 0;
  return jsonNumber(value);
}

function stepPairs(raw: unknown): Map<number, number> {
  const out = new Map<number, number>();
  if (!Array.isArray(raw)) return out;
  for (const pair of raw) {
    if (Array.isArray(pair)) out.set(Number(pair[0]), Number(pair[1]));
  }
  return out;
}

function stepMessages(raw: unknown): Map<number, string> {
  const out = new Map<number, string>();
  if (!Array.isArray(raw)) return out;
  for (const pair of raw) {
    if (Array.isArray(pair)) out.set(Number(pair[0]), String(pair[1]));
  }
  return out;
}

function decodeFloat32(slot: unknown, what: string): { values: Float32Array; shape: number[] } {
  if (!isRecord(slot) || typeof slot.base64 !== "string") throw new Error(`${what}: no values`);
  if (slot.dtype !== "float32") throw new Error(`${what}: unsupported dtype ${String(slot.dtype)}`);
  const shape = numbers(slot.shape);
  const count = shape.reduce((a, b) => a * b, 1);
  return { values: decodeBase64Float32(slot.base64, count, what), shape };
}

/** Descending, NaN last: a grouped layer's spectrum is the union of its groups'. */
export function mergeDescending(values: Float32Array): Float32Array {
  const out = Float32Array.from(values);
  out.sort((a, b) => {
    const an = Number.isNaN(a);
    const bn = Number.isNaN(b);
    if (an || bn) return an === bn ? 0 : an ? 1 : -1;
    return b - a;
  });
  return out;
}

/**
 * What was decoded from each parsed response: after a 304 `getJson` gives the very same
 * object back, and so do the fetchers below (`===`), so that a view can skip redrawing.
 */
const decodedMetrics = new WeakMap<object, RunMetrics>();
const decodedEvolutions = new WeakMap<object, Evolution>();

/**
 * Every metric over steps of `run`'s layers `tags`. The same object as the last time when
 * the server answered 304 (nothing changed).
 */
export async function fetchRunMetrics(run: string, tags: readonly string[]): Promise<RunMetrics> {
  const params = new URLSearchParams({ run });
  for (const tag of tags) params.append("tag", tag);
  const raw = await getJson(`./spectrum_metrics?${params.toString()}`);
  if (!isRecord(raw) || !isRecord(raw.layers)) throw new Error("spectrum_metrics: no layers");
  const known = decodedMetrics.get(raw);
  if (known !== undefined) return known;
  const layers = new Map<string, LayerMetrics>();
  for (const [tag, value] of Object.entries(raw.layers)) {
    if (!isRecord(value)) continue;
    const steps = numbers(value.steps);
    const metrics: Record<string, Float64Array> = {};
    if (isRecord(value.metrics)) {
      for (const [name, list] of Object.entries(value.metrics)) {
        metrics[name] = Float64Array.from(Array.isArray(list) ? list : [], metricNumber);
      }
    }
    const nonFinite = new Map<number, number>();
    for (const [step, count] of stepMessages(value.non_finite)) nonFinite.set(step, Number(count));
    const operator = parseLayerOperator(value.operator);
    if (operator) {
      for (const [name, as] of Object.entries(OPERATOR_METRICS)) {
        const series = operator.metrics[name];
        if (series && series.length === steps.length) metrics[as] = series;
      }
    }
    layers.set(tag, {
      tag,
      info: parseInfo(value.info),
      steps,
      metrics,
      errors: stepMessages(value.errors),
      nonFinite,
      unchanged: stepPairs(value.unchanged),
      coverage: Array.isArray(value.coverage) ? value.coverage.map(parseCoverage) : steps.map(() => "full"),
      operator,
    });
  }
  const decoded: RunMetrics = {
    run,
    metricNames: Array.isArray(raw.metric_names) ? raw.metric_names.map(String) : [],
    layers,
  };
  decodedMetrics.set(raw, decoded);
  return decoded;
}

export async function fetchSpectrum(run: string, tag: string, step: number): Promise<StepSpectrum> {
  const params = new URLSearchParams({ run, tag, step: String(step) });
  const raw = expectRecord(await getJson(`./spectrum?${params.toString()}`), "spectrum");
  const error = typeof raw.error === "string" && raw.error ? raw.error : null;
  // A step that could not be read (damaged data) may come with its error and no values.
  const { values, shape } =
    error !== null && !isRecord(raw.singular_values)
      ? { values: new Float32Array(0), shape: [0] }
      : decodeFloat32(raw.singular_values, "spectrum");
  const metrics: Record<string, number> = {};
  if (isRecord(raw.metrics)) {
    for (const [name, v] of Object.entries(raw.metrics)) metrics[name] = metricNumber(v);
  }
  return {
    run,
    tag,
    step: Number(raw.step),
    info: parseInfo(raw.info),
    metrics,
    error,
    nonFinite: typeof raw.non_finite === "number" ? raw.non_finite : 0,
    unchangedSince: typeof raw.unchanged_since_step === "number" ? raw.unchanged_since_step : null,
    values: mergeDescending(values),
    groups: shape.length === 2 ? shape[0] : 1,
    coverage: parseCoverage(raw.coverage),
    perGroup: shape.length === 2 ? shape[1] : values.length,
    operator: parseOperator(raw.operator),
  };
}

export async function fetchEvolution(
  run: string,
  tag: string,
  maxSteps: number,
  maxValues: number,
): Promise<Evolution> {
  const params = new URLSearchParams({
    run,
    tag,
    max_steps: String(maxSteps),
    max_values: String(maxValues),
  });
  const raw = expectRecord(
    await getJson(`./spectrum_evolution?${params.toString()}`),
    "spectrum_evolution",
  );
  const known = decodedEvolutions.get(raw);
  if (known !== undefined) return known; // a 304: the same object as the last time
  const steps = numbers(raw.steps);
  const index = numbers(raw.index);
  const { values, shape } = decodeFloat32(raw.values, "spectrum_evolution");
  if (shape[0] !== steps.length || (shape[1] ?? 0) !== index.length) {
    throw new Error(`spectrum_evolution: shape [${shape.join(", ")}] does not match its axes`);
  }
  const decoded: Evolution = {
    run,
    tag,
    steps,
    totalSteps: Number(raw.total_steps ?? steps.length),
    totalValues: Number(raw.total_values ?? index.length),
    index,
    values,
    errors: stepMessages(raw.errors),
  };
  decodedEvolutions.set(raw, decoded);
  return decoded;
}
