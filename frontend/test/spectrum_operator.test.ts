// spectrum/operator.ts and the table's operator columns: parsing the routes' operator
// fields, the operator spectrum as rank-plot points, the labels and coverage notes.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { LayerMetrics } from "../src/spectrum/api";
import {
  coverageNote,
  normRatio,
  operatorLabel,
  operatorRankPoints,
  parseCoverage,
  parseLayerOperator,
  parseOperator,
} from "../src/spectrum/operator";
import { COLUMNS, columnDenominator, shownValue } from "../src/spectrum/table";

const FULL = {
  input_size: [8, 8],
  stride: [1, 1],
  padding_rule: "circular",
  operator_norm: 4,
  norm_only: false,
  count: 101,
  frobenius_norm: 20,
  stable_rank: 25,
  grid_size: [8, 8],
  seconds: 0.01,
  error: null,
  top_values: [4, 3, 2],
  quantiles: [0.5, 1, 4],
  quantile_levels: [0, 0.5, 1],
};

test("an operator spectrum parses, non-finite numbers spelled out", () => {
  const op = parseOperator({ ...FULL, stable_rank: "NaN" })!;
  assert.deepEqual(op.inputSize, [8, 8]);
  assert.equal(op.operatorNorm, 4);
  assert.equal(op.normOnly, false);
  assert.equal(op.count, 101);
  assert.ok(Number.isNaN(op.stableRank));
  assert.deepEqual([...op.topValues], [4, 3, 2]);
  assert.equal(op.error, null);
  assert.equal(parseOperator(null), null);
  assert.equal(parseOperator({ ...FULL, error: "non-finite weight" })!.error, "non-finite weight");
});

test("rank points: the top values at ranks 1..k, quantiles beyond at 1 + (1 - q)(n - 1)", () => {
  const points = operatorRankPoints(parseOperator(FULL)!);
  // q = 1 is rank 1 and q = 0.5 rank 51, q = 0 rank 101; rank 1 is a top value already.
  assert.deepEqual(points, [
    { rank: 1, value: 4 },
    { rank: 2, value: 3 },
    { rank: 3, value: 2 },
    { rank: 51, value: 1 },
    { rank: 101, value: 0.5 },
  ]);
  const normOnly = parseOperator({ ...FULL, norm_only: true, top_values: [], quantiles: [], quantile_levels: [] })!;
  assert.deepEqual(operatorRankPoints(normOnly), []);
});

test("labels say what is computed, and coverage notes say what is missing", () => {
  assert.equal(operatorLabel(parseOperator(FULL)!), "operator (circular padding, 8×8 input)");
  assert.equal(coverageNote("full", 10, 10), null);
  assert.match(coverageNote("top_k", 32, 768)!, /^top 32 of 768 singular values only/);
  assert.match(coverageNote("norm_only", 1, 768)!, /^norm only/);
  assert.equal(parseCoverage("top_k"), "top_k");
  assert.equal(parseCoverage("something else"), "full");
  assert.equal(normRatio(3, 2), 1.5);
  assert.ok(Number.isNaN(normRatio(NaN, 2)) && Number.isNaN(normRatio(3, 0)));
});

function layer(withOperator: boolean): LayerMetrics {
  const operator = withOperator
    ? parseLayerOperator({
        facts: { input_size: [8, 8], stride: [1, 1], padding_rule: "circular", grid_size: [8, 8], count: 64 },
        metrics: { operator_norm: [2, "NaN"], stable_rank: [16, "NaN"], frobenius_norm: [8, "NaN"] },
        norm_only: [true, null],
        errors: [[5, "non-finite weight"]],
      })
    : null;
  const metrics: Record<string, Float64Array> = {
    spectral_norm: Float64Array.from([1, 1.5]),
    stable_rank: Float64Array.from([2, 2]),
  };
  if (operator) {
    metrics.operator_norm = operator.metrics.operator_norm;
    metrics.operator_stable_rank = operator.metrics.stable_rank;
  }
  return {
    tag: "conv",
    info: { weightShape: [8, 1, 3, 3], layerKind: "Conv2d", matrixRule: "", matrixShape: [1, 8, 9] },
    steps: [0, 5],
    metrics,
    errors: new Map(),
    nonFinite: new Map(),
    unchanged: new Map(),
    coverage: ["full", "full"],
    operator,
  };
}

test("a layer's operator parses with its facts, per-step norm-only flags and errors", () => {
  const op = layer(true).operator!;
  assert.deepEqual(op.inputSize, [8, 8]);
  assert.equal(op.count, 64);
  assert.deepEqual(op.normOnly, [true, null]);
  assert.equal(op.errors.get(5), "non-finite weight");
  assert.ok(Number.isNaN(op.metrics.operator_norm[1]));
});

test("operator columns: the norm as is, the stable rank as a fraction of the operator's n", () => {
  const norm = COLUMNS.find((c) => c.name === "operator_norm")!;
  const stable = COLUMNS.find((c) => c.name === "operator_stable_rank")!;
  const im2col = COLUMNS.find((c) => c.name === "stable_rank")!;
  const conv = layer(true);
  assert.equal(shownValue(conv, norm, 0).value, 2);
  assert.equal(columnDenominator(conv, stable), 64);
  assert.equal(shownValue(conv, stable, 0).value, 16 / 64);
  assert.equal(shownValue(conv, im2col, 0).value, 2 / 8); // k = min(8, 9)
  assert.ok(Number.isNaN(shownValue(conv, norm, 5).value)); // no operator at step 5
  const linear = layer(false);
  assert.ok(Number.isNaN(shownValue(linear, norm, 0).value));
  assert.ok(Number.isNaN(columnDenominator(linear, stable)));
  // σ_max (im2col) and σ_max (operator) stand side by side.
  const names = COLUMNS.map((c) => c.name);
  assert.equal(names.indexOf("operator_norm"), names.indexOf("spectral_norm") + 1);
});
