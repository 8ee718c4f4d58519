// A conv layer's operator spectrum (the singular values of the map the layer applies to its
// input, for circular padding; Sedghi et al. 2019) and a step's coverage, as the spectrum
// routes serve them (docs/http_api.md): parsing and the pure pieces the views draw from.

import { isRecord, jsonNumber, numbers } from "../json";

export type Coverage = "full" | "top_k" | "norm_only";

/** One step's operator spectrum (`spectrum` route's `operator`). */
export interface OperatorSpectrum {
  inputSize: number[];
  stride: number[];
  paddingRule: string;
  operatorNorm: number;
  normOnly: boolean;
  /** How many singular values the operator has (0: unknown, the stride does not divide n). */
  count: number;
  frobeniusNorm: number;
  stableRank: number;
  gridSize: number[];
  error: string | null;
  /** The largest singular values, descending. */
  topValues: Float64Array;
  /** The whole spectrum's quantiles at `quantileLevels` (0 = smallest, 1 = largest). */
  quantiles: Float64Array;
  quantileLevels: number[];
}

/** A layer's operator over its steps (`spectrum_metrics`' `operator`). */
export interface LayerOperator {
  inputSize: number[];
  stride: number[];
  paddingRule: string;
  count: number;
  /** name -> one value per step of the layer (NaN: no operator at that step). */
  metrics: Record<string, Float64Array>;
  /** Per step: norm only (true), whole spectrum (false), no operator (null). */
  normOnly: (boolean | null)[];
  errors: Map<number, string>;
}

/** Names of the operator's metrics in a layer's `metrics` (next to the im2col ones). */
export const OPERATOR_METRICS: Record<string, string> = {
  operator_norm: "operator_norm",
  frobenius_norm: "operator_frobenius_norm",
  stable_rank: "operator_stable_rank",
};

export function parseCoverage(raw: unknown): Coverage {
  return raw === "top_k" || raw === "norm_only" ? raw : "full";
}

function floats(raw: unknown): Float64Array {
  return Float64Array.from(Array.isArray(raw) ? raw : [], jsonNumber);
}

export function parseOperator(raw: unknown): OperatorSpectrum | null {
  if (!isRecord(raw)) return null;
  return {
    inputSize: numbers(raw.input_size),
    stride: numbers(raw.stride),
    paddingRule: typeof raw.padding_rule === "string" ? raw.padding_rule : "",
    operatorNorm: jsonNumber(raw.operator_norm),
    normOnly: raw.norm_only === true,
    count: typeof raw.count === "number" ? raw.count : 0,
    frobeniusNorm: jsonNumber(raw.frobenius_norm),
    stableRank: jsonNumber(raw.stable_rank),
    gridSize: numbers(raw.grid_size),
    error: typeof raw.error === "string" && raw.error ? raw.error : null,
    topValues: floats(raw.top_values),
    quantiles: floats(raw.quantiles),
    quantileLevels: numbers(raw.quantile_levels),
  };
}

export function parseLayerOperator(raw: unknown): LayerOperator | null {
  if (!isRecord(raw)) return null;
  const facts = isRecord(raw.facts) ? raw.facts : {};
  const metrics: Record<string, Float64Array> = {};
  if (isRecord(raw.metrics)) {
    for (const [name, list] of Object.entries(raw.metrics)) metrics[name] = floats(list);
  }
  const errors = new Map<number, string>();
  if (Array.isArray(raw.errors)) {
    for (const pair of raw.errors) if (Array.isArray(pair)) errors.set(Number(pair[0]), String(pair[1]));
  }
  return {
    inputSize: numbers(facts.input_size),
    stride: numbers(facts.stride),
    paddingRule: typeof facts.padding_rule === "string" ? facts.padding_rule : "",
    count: typeof facts.count === "number" ? facts.count : 0,
    metrics,
    normOnly: Array.isArray(raw.norm_only) ? raw.norm_only.map((v) => (typeof v === "boolean" ? v : null)) : [],
    errors,
  };
}

/** "8×8": an input size as the tab writes it. */
export function sizeText(size: readonly number[]): string {
  return size.length ? size.join("×") : "?";
}

/** The label of the operator's series: what it is, for which boundary rule and input. */
export function operatorLabel(op: { paddingRule: string; inputSize: number[] }): string {
  return `operator (${op.paddingRule || "circular"} padding, ${sizeText(op.inputSize)} input)`;
}

/** The label of the weight's own spectrum, next to the operator's. */
export const IM2COL_LABEL = "im2col matrix";

/** What the circular operator is and is not, said wherever it is shown. */
export const PADDING_CAVEAT =
  "The operator's singular values are exact for circular padding; for a layer that pads " +
  "with zeros they are an approximation (the zero-padded operator's norm is typically a " +
  "little lower: 6.67 vs 6.99 measured). The im2col matrix's σ_max is not the layer's " +
  "Lipschitz constant: the operator's is between 1 and √(kh·kw) times larger.";

/**
 * The operator spectrum as points of a rank plot (rank 1 = largest): the top values at
 * ranks 1..k, then each quantile q at rank 1 + (1 − q)·(count − 1), beyond k; ascending rank.
 */
export function operatorRankPoints(op: OperatorSpectrum): { rank: number; value: number }[] {
  const points: { rank: number; value: number }[] = [];
  op.topValues.forEach((value, i) => points.push({ rank: i + 1, value }));
  const k = op.topValues.length;
  if (op.count > 1) {
    op.quantileLevels.forEach((q, i) => {
      const rank = 1 + (1 - q) * (op.count - 1);
      if (rank > k) points.push({ rank, value: op.quantiles[i] });
    });
  }
  points.sort((a, b) => a.rank - b.rank);
  return points;
}

/** Words for a step that holds part of its spectrum only (null for a full one). */
export function coverageNote(coverage: Coverage, held: number, total: number): string | null {
  if (coverage === "full") return null;
  const of = Number.isFinite(total) && total > 0 ? ` of ${total}` : "";
  if (coverage === "norm_only") {
    return `norm only: σ_max (power iteration) and the exact Frobenius norm${of ? ` (${total} singular values not computed)` : ""}; the metrics that need the whole spectrum are not computed`;
  }
  return `top ${held}${of} singular values only (randomized SVD); the metrics that need the whole spectrum are not computed`;
}

/** The operator norm over the im2col σ_max: the factor the im2col matrix understates by. */
export function normRatio(operatorNorm: number, im2colNorm: number): number {
  return im2colNorm > 0 && Number.isFinite(operatorNorm) ? operatorNorm / im2colNorm : NaN;
}
