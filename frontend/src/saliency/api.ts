// The saliency routes (docs/http_api.md): the steps of a series, and one step's maps.
// Arrays arrive as little-endian float16 (or float32) bytes in base64 and are decoded here.

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
  inputs: NdArray;
  maps: NdArray;
  /** [1 or n, ...]: the baseline input (baseline-subtracted methods), or null. */
  baseline: NdArray | null;
  baselineMaps: NdArray | null;
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url, { credentials: "same-origin" });
  const text = await response.text();
  if (!response.ok) {
    // The plugin's errors are plain text a person can act on: show them as they are.
    throw new Error(`HTTP ${response.status}: ${text.trim() || response.statusText}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`${url} did not return JSON: ${text.slice(0, 200)}`);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? value.map(Number) : [];
}

function numbersOrNull(value: unknown): number[] | null {
  return Array.isArray(value) ? value.map(jsonNumber) : null;
}

function jsonNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return NaN;
}

export async function fetchSaliencySteps(run: string, tag: string): Promise<SaliencySteps> {
  const params = new URLSearchParams({ run, tag });
  const raw = await getJson(`./saliency_steps?${params.toString()}`);
  if (!isRecord(raw)) throw new Error("saliency_steps: expected an object");
  return {
    run: String(raw.run ?? run),
    tag: String(raw.tag ?? tag),
    method: String(raw.method ?? ""),
    inputShape: numbers(raw.input_shape),
    steps: numbers(raw.steps),
    wallTimes: numbers(raw.wall_times),
    numSamples: Number(raw.num_samples ?? 0),
    labels: Array.isArray(raw.labels) ? raw.labels.map(Number) : null,
  };
}

export async function fetchSaliencyMaps(
  run: string,
  tag: string,
  step: number,
  samples: string,
): Promise<SaliencyMaps> {
  const params = new URLSearchParams({ run, tag, step: String(step), samples });
  return parseSaliencyMaps(await getJson(`./saliency?${params.toString()}`));
}

export function parseSaliencyMaps(raw: unknown): SaliencyMaps {
  if (!isRecord(raw)) throw new Error("saliency: expected an object");
  const inputs = parseArray(raw.inputs, "inputs");
  const maps = parseArray(raw.maps, "maps");
  if (!inputs || !maps) throw new Error("saliency: the step holds no inputs or maps");
  return {
    run: String(raw.run ?? ""),
    tag: String(raw.tag ?? ""),
    step: Number(raw.step),
    method: String(raw.method ?? ""),
    inputShape: numbers(raw.input_shape),
    numSamples: Number(raw.num_samples ?? 0),
    samples: numbers(raw.samples),
    labels: Array.isArray(raw.labels) ? raw.labels.map(Number) : null,
    predictions: Array.isArray(raw.predictions) ? raw.predictions.map(Number) : null,
    completenessError: numbersOrNull(raw.completeness_error),
    nonFinite: Number(raw.non_finite ?? 0),
    nonFinitePerSample: numbers(raw.non_finite_per_sample),
    inputs,
    maps,
    baseline: parseArray(raw.baseline, "baseline"),
    baselineMaps: parseArray(raw.baseline_maps, "baseline_maps"),
  };
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
  if (value.dtype === "float16") values = decodeFloat16(bytes, count, name);
  else if (value.dtype === "float32") values = decodeFloat32(bytes, count, name);
  else throw new Error(`saliency: ${name} has unsupported dtype ${String(value.dtype)}`);
  return { shape, values };
}

function base64Bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
  return bytes;
}

function decodeFloat32(bytes: Uint8Array, count: number, name: string): Float32Array {
  if (bytes.length !== count * 4) {
    throw new Error(`saliency: ${name} needs ${count * 4} bytes of float32, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer);
  const out = new Float32Array(count);
  for (let k = 0; k < count; k++) out[k] = view.getFloat32(k * 4, true);
  return out;
}

// float16 bit pattern -> value, for all 65,536 patterns (exact: every float16 is a float32).
let float16Table: Float32Array | null = null;

function float16Values(): Float32Array {
  if (float16Table) return float16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    let value: number;
    if (exponent === 0) value = fraction * 2 ** -24; // subnormal (and zero)
    else if (exponent === 31) value = fraction === 0 ? Infinity : NaN;
    else value = (1 + fraction / 1024) * 2 ** (exponent - 15);
    table[h] = sign * value;
  }
  float16Table = table;
  return table;
}

/** Little-endian float16 bytes -> Float32Array. */
export function decodeFloat16(bytes: Uint8Array, count: number, name = "array"): Float32Array {
  if (bytes.length !== count * 2) {
    throw new Error(`saliency: ${name} needs ${count * 2} bytes of float16, got ${bytes.length}`);
  }
  const table = float16Values();
  const out = new Float32Array(count);
  for (let k = 0; k < count; k++) out[k] = table[bytes[2 * k] | (bytes[2 * k + 1] << 8)];
  return out;
}
