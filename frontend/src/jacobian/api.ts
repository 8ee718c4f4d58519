// The `jacobian` and `jacobian_spectrum` routes: a Jacobian series' summaries over probe
// samples per map and step (σ_max, the smallest stored singular value, the mean squared
// singular value, log|det J|; mean and spread), and one step's singular values per map and
// sample. A map named "" is the whole network (input → output).

import { expectRecord, getJson, isRecord, jsonNumber } from "../json";

/** The display name of the whole network's map ("" in the data). */
export const NETWORK_LABEL = "network";

export function mapLabel(name: string): string {
  return name === "" ? NETWORK_LABEL : name;
}

export interface MeanStd {
  /** [steps][maps]: NaN where the map was not measured at the step. */
  mean: number[][];
  std: number[][];
}

export interface JacobianSeries {
  run: string;
  tag: string;
  output: string;
  steps: number[];
  maps: string[];
  /** map → [input dim, output dim] (per sample). */
  dims: Map<string, [number, number]>;
  /** [steps][maps]: whether the step's values are the map's whole spectrum (null: not measured). */
  full: (boolean | null)[][];
  sigmaMax: MeanStd;
  /** The smallest value stored: σ_min where `full`, else the k-th largest. */
  sigmaMin: MeanStd;
  meanSquared: MeanStd;
  logAbsDet: MeanStd;
  /** [step, map, message] of maps that could not be measured. */
  errors: [number, string, string][];
  warnings: string[];
}

export interface MapSpectrum {
  name: string;
  error: string | null;
  inputDim: number;
  outputDim: number;
  full: boolean;
  /** [samples][values], descending, NaN padding dropped. */
  singularValues: number[][];
  meanSquared: number[];
  logAbsDet: number[];
}

export interface StepSpectra {
  run: string;
  tag: string;
  step: number;
  steps: number[];
  /** The step's error (a damaged event), or null. */
  error: string | null;
  maps: MapSpectrum[];
}

function matrix(value: unknown, what: string): number[][] {
  if (!Array.isArray(value)) throw new Error(`jacobian: ${what} is not a list of rows`);
  return value.map((row) => {
    if (!Array.isArray(row)) throw new Error(`jacobian: a row of ${what} is not a list`);
    return row.map((v) => (v === null ? NaN : jsonNumber(v)));
  });
}

function meanStd(value: unknown, what: string, rows: number, columns: number): MeanStd {
  const record = expectRecord(value, `jacobian ${what}`);
  const out = { mean: matrix(record.mean, `${what}.mean`), std: matrix(record.std, `${what}.std`) };
  for (const m of [out.mean, out.std]) {
    if (m.length !== rows || m.some((row) => row.length !== columns)) {
      throw new Error(`jacobian: ${what} is not ${rows} × ${columns}`);
    }
  }
  return out;
}

function strings(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new Error(`jacobian: ${what} is not a list of strings`);
  }
  return value as string[];
}

/** Validate a `jacobian` response into a series. */
export function parseJacobian(raw: unknown): JacobianSeries {
  const body = expectRecord(raw, "jacobian");
  if (!Array.isArray(body.steps) || !body.steps.every((s) => typeof s === "number")) {
    throw new Error("jacobian: steps is not a list of numbers");
  }
  const steps = body.steps as number[];
  const maps = strings(body.maps, "maps");
  const dims = new Map<string, [number, number]>();
  if (isRecord(body.dims)) {
    for (const [name, value] of Object.entries(body.dims)) {
      if (Array.isArray(value) && value.length === 2) dims.set(name, [Number(value[0]), Number(value[1])]);
    }
  }
  const full = Array.isArray(body.full)
    ? body.full.map((row) => (Array.isArray(row) ? row.map((v) => (v === null ? null : Boolean(v))) : []))
    : [];
  const errors: [number, string, string][] = Array.isArray(body.errors)
    ? body.errors
        .filter((e): e is unknown[] => Array.isArray(e) && e.length === 3)
        .map((e) => [Number(e[0]), String(e[1]), String(e[2])])
    : [];
  return {
    run: typeof body.run === "string" ? body.run : "",
    tag: typeof body.tag === "string" ? body.tag : "",
    output: typeof body.output === "string" ? body.output : "",
    steps,
    maps,
    dims,
    full,
    sigmaMax: meanStd(body.sigma_max, "sigma_max", steps.length, maps.length),
    sigmaMin: meanStd(body.sigma_min, "sigma_min", steps.length, maps.length),
    meanSquared: meanStd(body.mean_squared, "mean_squared", steps.length, maps.length),
    logAbsDet: meanStd(body.log_abs_det, "log_abs_det", steps.length, maps.length),
    errors,
    warnings: Array.isArray(body.warnings) ? body.warnings.map(String) : [],
  };
}

/** Validate a `jacobian_spectrum` response into one step's spectra. */
export function parseStepSpectra(raw: unknown): StepSpectra {
  const body = expectRecord(raw, "jacobian_spectrum");
  const steps = Array.isArray(body.steps) ? body.steps.map(Number) : [];
  const error = typeof body.error === "string" && body.error !== "" ? body.error : null;
  const maps: MapSpectrum[] = [];
  for (const entry of Array.isArray(body.maps) ? body.maps : []) {
    const m = expectRecord(entry, "jacobian_spectrum map");
    const name = typeof m.name === "string" ? m.name : "";
    const mapError = typeof m.error === "string" && m.error !== "" ? m.error : null;
    const values = mapError === null ? matrix(m.singular_values, "singular_values") : [];
    maps.push({
      name,
      error: mapError,
      inputDim: Number(m.input_dim ?? NaN),
      outputDim: Number(m.output_dim ?? NaN),
      full: m.full === true,
      singularValues: values.map((row) => row.filter((v) => !Number.isNaN(v))),
      meanSquared: Array.isArray(m.mean_squared) ? m.mean_squared.map(jsonNumber) : [],
      logAbsDet: Array.isArray(m.log_abs_det) ? m.log_abs_det.map(jsonNumber) : [],
    });
  }
  return {
    run: typeof body.run === "string" ? body.run : "",
    tag: typeof body.tag === "string" ? body.tag : "",
    step: Number(body.step),
    steps,
    error,
    maps,
  };
}

export async function fetchJacobian(run: string, tag: string): Promise<JacobianSeries> {
  const params = new URLSearchParams({ run, tag });
  return parseJacobian(await getJson(`./jacobian?${params.toString()}`));
}

export async function fetchStepSpectra(run: string, tag: string, step: number): Promise<StepSpectra> {
  const params = new URLSearchParams({ run, tag, step: String(step) });
  return parseStepSpectra(await getJson(`./jacobian_spectrum?${params.toString()}`));
}

/**
 * How far a map is from isometry at each step, in decades: max(|log10 σ_max|, |log10 σ_min|)
 * of the means (NaN where not measured). 0 is perfect isometry (every σ = 1).
 */
export function isometryGap(series: JacobianSeries, column: number): number[] {
  return series.steps.map((_, i) => {
    const hi = series.sigmaMax.mean[i][column];
    const lo = series.sigmaMin.mean[i][column];
    if (!(hi > 0) || !(lo > 0)) return NaN;
    return Math.max(Math.abs(Math.log10(hi)), Math.abs(Math.log10(lo)));
  });
}

/** The per-sample mean of a step's singular values by rank (NaN where no sample has one). */
export function meanByRank(values: readonly (readonly number[])[]): number[] {
  const width = Math.max(0, ...values.map((row) => row.length));
  const out: number[] = [];
  for (let r = 0; r < width; r++) {
    let sum = 0;
    let count = 0;
    for (const row of values) {
      if (r < row.length && Number.isFinite(row[r])) {
        sum += row[r];
        count++;
      }
    }
    out.push(count ? sum / count : NaN);
  }
  return out;
}
