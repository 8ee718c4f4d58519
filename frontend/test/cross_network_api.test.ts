// cka/api.ts and correlation/api.ts's regression: the routes' answers validated into typed
// values ("NaN" and null as NaN), and matrices that do not fit their layers refused.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseCkaSeries } from "../src/cka/api";
import { parseRegression } from "../src/correlation/api";

test("a cka_series body becomes step matrices with NaN spelled out", () => {
  const s = parseCkaSeries(
    {
      row_name: "seed0",
      col_name: "seed1",
      layers_a: ["conv1", "fc"],
      layers_b: ["conv1"],
      steps: [0, 5],
      samples: [64, 64],
      matrices: [[[0.5], ["NaN"]], [[1.0], [0.25]]],
      warnings: [],
    },
    "r",
    "cka",
  );
  assert.deepEqual(s.layersA, ["conv1", "fc"]);
  assert.equal(s.matrices[1][1][0], 0.25);
  assert.ok(Number.isNaN(s.matrices[0][1][0]));
  assert.equal(s.rowName, "seed0");
});

test("a cka matrix of the wrong shape is an error", () => {
  assert.throws(
    () =>
      parseCkaSeries(
        { layers_a: ["a"], layers_b: ["b"], steps: [0], matrices: [[[0.5, 0.5]]] },
        "r",
        "t",
      ),
    /1 x 1 cells/,
  );
  assert.throws(
    () => parseCkaSeries({ layers_a: ["a"], layers_b: ["b"], steps: [0, 1], matrices: [] }, "r", "t"),
    /0 matrices for 2 steps/,
  );
});

test("a regression body: nulls are NaN, a step without a fit is not available", () => {
  const r = parseRegression(
    {
      step: 3,
      available: true,
      regression: true,
      cka: 0.4,
      predictors: 6,
      keep: 0.9,
      mean_least_squares_error: 0.2,
      mean_l1_error: 0.3,
      mean_l1_channels: 2.5,
      least_squares_error: [0.1, null],
      l1_error: [0.2, null],
      l1_channels: [3, 0],
      l1_alpha: [0.01, null],
    },
    "r",
    "compare/conv2",
  );
  assert.equal(r.step, 3);
  assert.equal(r.l1Channels[0], 3);
  assert.ok(Number.isNaN(r.leastSquaresError[1]));
  const none = parseRegression({ step: 1, available: false, cka: null }, "r", "t");
  assert.equal(none.available, false);
  assert.ok(Number.isNaN(none.cka));
  assert.deepEqual(none.leastSquaresError, []);
});
