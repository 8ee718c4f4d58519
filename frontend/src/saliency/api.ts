// The saliency routes (docs/http_api.md): the steps of a series, and one step's maps.
// Arrays arrive as little-endian float16 (or float32) bytes in base64 (decoded by ../binary).

import { base64Bytes, decodeFloat16, decodeFloat32 } from "../binary";
import { expectRecord, getJson, isRecord, jsonNumber, numbers } from "../json";

export interface SaliencySteps {
  run: string;
  tag: string;
  method: string;
  /** One input's shape, e.g. [C, H, W]. */
  inputShape: number[];
  steps: number[];
  wallTimes: number[];
  numSamples: number;
  labels: number[] | null;
  /** "tokens" for a token series (ids [N, L], one map value per token); "" otherwise. */
  inputKind: string;
  /** For tokens: how a token's embedding attribution became one value. */
  tokenReduction: string;
}

/** An array of the route: values row-major, shape [n, ...inputShape]. */
export interface NdArray {
  shape: number[];
  values: Float32Array;
}

export interface SaliencyMaps {
  run: string;
  tag: string;
  step: number;
  method: string;
  inputShape: number[];
  numSamples: number;
  /** Which probe samples these are (indices into the probe). */
  samples: number[];
  labels: number[] | null;
  predictions: number[] | null;
  /** Integrated gradients: Σmap − (f(x) − f(baseline)) per sample (NaN for non-finite). */
  completenessError: number[] | null;
  /** Non-finite map values as the writer counted them (all samples). */
  nonFinite: number;
  /** Non-finite values among each sent sample's maps (and baseline maps). */
  nonFinitePerSample: number[];
  /** The inputs; null for a token series (see tokenIds). */
  inputs: NdArray | null;
  maps: NdArray;
  inputKind: string;
  tokenReduction: string;
  /** Token series: [samples][L] token ids, and their texts when logged. */
  tokenIds: number[][] | null;
  tokenTexts: string[][] | null;
  /** [1 or n, ...]: the baseline input (baseline-subtracted methods), or null. */
  baseline: NdArray | null;
  baselineMaps: NdArray | null;
  /**
   * Why this step cannot be shown (a damaged or unreadable step: the route's "error"), or
   * null. A step with an error has no arrays (inputs null, maps empty).
   */
  error: string | null;
}

function numbersOrNull(value: unknown): number[] | null {
  return Array.isArray(value) ? value.map(jsonNumber) : null;
}

export async function fetchSaliencySteps(run: string, tag: string): Promise<SaliencySteps> {
  const params = new URLSearchParams({ run, tag });
  const raw = expectRecord(
    await getJson(`./saliency_steps?${params.toString()}`),
    "saliency_steps",
  );
  return {
    run: String(raw.run ?? run),
    tag: String(raw.tag ?? tag),
    method: String(raw.method ?? ""),
    inputShape: numbers(raw.input_shape),
    steps: numbers(raw.steps),
    wallTimes: numbers(raw.wall_times),
    numSamples: Number(raw.num_samples ?? 0),
    labels: Array.isArray(raw.labels) ? raw.labels.map(Number) : null,
    inputKind: String(raw.input_kind ?? ""),
    tokenReduction: String(raw.token_reduction ?? ""),
  };
}

export async function fetchSaliencyMaps(
  run: string,
  tag: string,
  step: number,
  samples: string,
): Promise<SaliencyMaps> {
  const params = new URLSearchParams({ run, tag, step: String(step) });
  if (samples !== "") params.set("samples", samples); // "": the route's first samples
  return parseSaliencyMaps(await getJson(`./saliency?${params.toString()}`));
}

export function parseSaliencyMaps(value: unknown): SaliencyMaps {
  const raw = expectRecord(value, "saliency");
  const inputKind = String(raw.input_kind ?? "");
  if (typeof raw.error === "string" && raw.error !== "") return stepWithError(raw, inputKind);
  const inputs = parseArray(raw.inputs, "inputs");
  const maps = parseArray(raw.maps, "maps");
  const tokenIds = nestedOrNull(raw.token_ids, (v) => Number(v));
  if (!maps || (inputKind === "tokens" ? !tokenIds : !inputs)) {
    throw new Error("saliency: the step holds no inputs or maps");
  }
  return {
    ...stepFacts(raw, inputKind),
    labels: Array.isArray(raw.labels) ? raw.labels.map(Number) : null,
    predictions: Array.isArray(raw.predictions) ? raw.predictions.map(Number) : null,
    completenessError: numbersOrNull(raw.completeness_error),
    nonFinite: Number(raw.non_finite ?? 0),
    nonFinitePerSample: numbers(raw.non_finite_per_sample),
    inputs,
    maps,
    tokenIds,
    tokenTexts: nestedOrNull(raw.token_texts, (v) => String(v)),
    baseline: parseArray(raw.baseline, "baseline"),
    baselineMaps: parseArray(raw.baseline_maps, "baseline_maps"),
    error: null,
  };
}

/** What a step's answer says of the step and its series, good or damaged. */
function stepFacts(raw: Record<string, unknown>, inputKind: string) {
  return {
    run: String(raw.run ?? ""),
    tag: String(raw.tag ?? ""),
    step: Number(raw.step),
    method: String(raw.method ?? ""),
    inputShape: numbers(raw.input_shape),
    numSamples: Number(raw.num_samples ?? 0),
    samples: numbers(raw.samples),
    inputKind,
    tokenReduction: String(raw.token_reduction ?? ""),
  };
}

/** A step the route could not read: what it says of it, and no arrays. */
function stepWithError(raw: Record<string, unknown>, inputKind: string): SaliencyMaps {
  return {
    ...stepFacts(raw, inputKind),
    labels: null,
    predictions: null,
    completenessError: null,
    nonFinite: 0,
    nonFinitePerSample: [],
    inputs: null,
    maps: { shape: [0], values: new Float32Array(0) },
    tokenIds: null,
    tokenTexts: null,
    baseline: null,
    baselineMaps: null,
    error: String(raw.error),
  };
}

/** A JSON list of lists, each item converted; null when absent. */
function nestedOrNull<T>(value: unknown, item: (v: unknown) => T): T[][] | null {
  if (!Array.isArray(value)) return null;
  return value.map((row) => (Array.isArray(row) ? row.map(item) : []));
}

function parseArray(value: unknown, name: string): NdArray | null {
  if (value === null || value === undefined) return null;
  if (!isRecord(value) || typeof value.base64 !== "string" || !Array.isArray(value.shape)) {
    throw new Error(`saliency: ${name} is not a {dtype, shape, base64} array`);
  }
  const shape = value.shape.map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = base64Bytes(value.base64);
  let values: Float32Array;
  if (value.dtype === "float16") values = decodeFloat16(bytes, count, `saliency: ${name}`);
  else if (value.dtype === "float32") values = decodeFloat32(bytes, count, `saliency: ${name}`);
  else throw new Error(`saliency: ${name} has unsupported dtype ${String(value.dtype)}`);
  return { shape, values };
}
