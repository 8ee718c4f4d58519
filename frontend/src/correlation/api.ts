// The correlation routes (docs/http_api.md, "correlation/*"): steps, a matrix window in a
// channel order (block means on the server for the overview), matchings.

import { decodeBase64Float32 } from "../binary";
import { expectRecord, getJson, isRecord, jsonNumber, numbers } from "../json";
import type { ChannelStats } from "./channel_facts";

export type ChannelOrder = "original" | "clustered" | "matched";
/** How the overview reduces a block of cells: its mean, or its signed value of largest |ρ|. */
export type BlockReduction = "mean" | "max_abs";

export interface CorrelationSteps {
  run: string;
  tag: string;
  cross: boolean;
  rowName: string;
  colName: string;
  steps: number[];
}

/** A window of positions in the ordered matrix, half-open. */
export interface MatrixWindow {
  rowStart: number;
  rowEnd: number;
  colStart: number;
  colEnd: number;
}

export interface CorrelationMatrix {
  run: string;
  tag: string;
  step: number;
  samples: number;
  /** The dim of activationShape that held the channels. */
  channelDim: number;
  /** The shape of one activation batch as logged, e.g. [N, L, C]; empty when not recorded. */
  activationShape: number[];
  /** No more samples than channels: the matrix has rank at most samples - 1. */
  rankDeficient: boolean;
  cross: boolean;
  rowName: string;
  colName: string;
  /** [R, C] of the whole matrix. */
  shape: [number, number];
  order: ChannelOrder;
  /** Position p shows channel rowOrder[p] (original numbering). */
  rowOrder: number[];
  colOrder: number[];
  window: MatrixWindow;
  /**
   * "mean": each cell is the mean over a block of positions; "max_abs": the block's signed
   * value of largest |ρ|; "none": one cell per pair.
   */
  reduction: string;
  /** Cell (i, j) covers positions rowEdges[i]..rowEdges[i+1]-1 × colEdges[j]..colEdges[j+1]-1. */
  rowEdges: number[];
  colEdges: number[];
  rowDead: number[];
  colDead: number[];
  redundantFraction: number | null;
  /** rows x cols cells, row-major. */
  values: Float32Array;
  rows: number;
  cols: number;
}

export interface MatchingCurve {
  sorted: number[];
  mean: number | null;
}

export interface CorrelationMatching {
  run: string;
  tag: string;
  step: number;
  semi: MatchingCurve;
  bipartite: MatchingCurve;
}

const nullableNumber = (v: unknown): number | null => (typeof v === "number" ? v : null);

/** A step the routes could not read (damaged data): the route's `error` for it. */
export class StepError extends Error {
  constructor(
    readonly step: number,
    readonly reason: string,
  ) {
    super(`step ${step} cannot be shown: ${reason}`);
  }
}

/** GET a correlation route: an object, or an error (a StepError for a step's own error). */
async function getObject(url: string): Promise<Record<string, unknown>> {
  const raw = expectRecord(await getJson(url), url);
  if (typeof raw.error === "string" && raw.error !== "") {
    throw new StepError(Number(raw.step), raw.error);
  }
  return raw;
}

export async function fetchSteps(run: string, tag: string): Promise<CorrelationSteps> {
  const raw = await getObject(`./correlation_steps?${new URLSearchParams({ run, tag })}`);
  return {
    run,
    tag,
    cross: raw.cross === true,
    rowName: String(raw.row_name ?? ""),
    colName: String(raw.col_name ?? ""),
    steps: numbers(raw.steps),
  };
}

export async function fetchMatrix(
  run: string,
  tag: string,
  step: number,
  order: ChannelOrder,
  size: number,
  window: MatrixWindow | null,
  reduce: BlockReduction = "mean",
): Promise<CorrelationMatrix> {
  const params = new URLSearchParams({
    run,
    tag,
    step: String(step),
    order,
    size: String(size),
    reduce,
  });
  if (window) {
    params.set("row_start", String(window.rowStart));
    params.set("row_end", String(window.rowEnd));
    params.set("col_start", String(window.colStart));
    params.set("col_end", String(window.colEnd));
  }
  const raw = await getObject(`./correlation_matrix?${params}`);
  const v = raw.values as { shape?: unknown; base64?: unknown } | undefined;
  const shape = numbers(v?.shape);
  if (!v || typeof v.base64 !== "string" || shape.length !== 2) {
    throw new Error("correlation_matrix: no values");
  }
  const w = (raw.window ?? {}) as Record<string, unknown>;
  const full = numbers(raw.shape);
  return {
    run,
    tag,
    step: Number(raw.step),
    samples: Number(raw.samples ?? 0),
    channelDim: Number(raw.channel_dim ?? 0),
    activationShape: numbers(raw.activation_shape),
    rankDeficient: raw.rank_deficient === true,
    cross: raw.cross === true,
    rowName: String(raw.row_name ?? ""),
    colName: String(raw.col_name ?? ""),
    shape: [full[0] ?? 0, full[1] ?? 0],
    order: String(raw.order) as ChannelOrder,
    rowOrder: numbers(raw.row_order),
    colOrder: numbers(raw.col_order),
    window: {
      rowStart: Number(w.row_start),
      rowEnd: Number(w.row_end),
      colStart: Number(w.col_start),
      colEnd: Number(w.col_end),
    },
    reduction: String(raw.reduction ?? "none"),
    rowEdges: numbers(raw.row_edges),
    colEdges: numbers(raw.col_edges),
    rowDead: numbers(raw.row_dead),
    colDead: numbers(raw.col_dead),
    redundantFraction: nullableNumber(raw.redundant_fraction),
    values: decodeBase64Float32(v.base64, shape[0] * shape[1], "matrix"),
    rows: shape[0],
    cols: shape[1],
  };
}

export async function fetchMatching(
  run: string,
  tag: string,
  step: number,
): Promise<CorrelationMatching> {
  const params = new URLSearchParams({ run, tag, step: String(step) });
  const raw = await getObject(`./correlation_matching?${params}`);
  const curve = (c: unknown): MatchingCurve => {
    const r = (c ?? {}) as Record<string, unknown>;
    // null marks a non-finite value; it has no place on a curve.
    const sorted = Array.isArray(r.sorted)
      ? r.sorted.filter((x): x is number => typeof x === "number")
      : [];
    return { sorted, mean: nullableNumber(r.mean) };
  };
  return {
    run,
    tag,
    step: Number(raw.step),
    semi: curve(raw.semi),
    bipartite: curve(raw.bipartite),
  };
}

/** The per-channel statistics of one step (correlation_channels): rows, and cols when cross. */
export interface CorrelationChannels {
  step: number;
  samples: number;
  rows: ChannelStats;
  cols: ChannelStats | null;
}

function parseStats(value: unknown): ChannelStats {
  const r = isRecord(value) ? value : {};
  const column = (v: unknown) => (Array.isArray(v) ? v.map(jsonNumber) : []);
  return {
    channels: Number(r.channels ?? 0),
    mean: column(r.mean),
    std: column(r.std),
    dead: numbers(r.dead),
    nonFinite: Number(r.non_finite ?? 0),
  };
}

export function parseChannels(raw: Record<string, unknown>): CorrelationChannels {
  return {
    step: Number(raw.step),
    samples: Number(raw.samples ?? 0),
    rows: parseStats(raw.rows),
    cols: isRecord(raw.cols) ? parseStats(raw.cols) : null,
  };
}

export async function fetchChannels(
  run: string,
  tag: string,
  step: number,
): Promise<CorrelationChannels> {
  const params = new URLSearchParams({ run, tag, step: String(step) });
  return parseChannels(await getObject(`./correlation_channels?${params}`));
}

/**
 * Li et al.'s regression of a cross step (correlation_regression): each row channel of A
 * predicted from all of B's channels. Errors are 1 − R² (NaN: not predicted); `available`
 * is false for a step that holds none (then everything else is NaN / empty).
 */
export interface CorrelationRegression {
  run: string;
  tag: string;
  step: number;
  available: boolean;
  /** false when compare() ran with regression=False: only `cka` is known. */
  regression: boolean;
  cka: number;
  predictors: number;
  keep: number;
  meanLeastSquaresError: number;
  meanL1Error: number;
  meanL1Channels: number;
  leastSquaresError: number[];
  l1Error: number[];
  l1Channels: number[];
  l1Alpha: number[];
}

/** A parsed correlation_regression body (null → NaN). */
export function parseRegression(
  raw: Record<string, unknown>,
  run: string,
  tag: string,
): CorrelationRegression {
  const num = (v: unknown): number => (typeof v === "number" ? v : NaN);
  const column = (v: unknown): number[] => (Array.isArray(v) ? v.map(num) : []);
  return {
    run,
    tag,
    step: Number(raw.step),
    available: raw.available === true,
    regression: raw.regression === true,
    cka: num(raw.cka),
    predictors: num(raw.predictors),
    keep: num(raw.keep),
    meanLeastSquaresError: num(raw.mean_least_squares_error),
    meanL1Error: num(raw.mean_l1_error),
    meanL1Channels: num(raw.mean_l1_channels),
    leastSquaresError: column(raw.least_squares_error),
    l1Error: column(raw.l1_error),
    l1Channels: column(raw.l1_channels),
    l1Alpha: column(raw.l1_alpha),
  };
}

export async function fetchRegression(
  run: string,
  tag: string,
  step: number,
): Promise<CorrelationRegression> {
  const params = new URLSearchParams({ run, tag, step: String(step) });
  return parseRegression(await getObject(`./correlation_regression?${params}`), run, tag);
}
