// jacobian/api.ts: the routes' answers validated into series and steps; the isometry gap and
// the mean spectrum by rank, against values worked out by hand.

import assert from "node:assert/strict";
import { test } from "node:test";
import { isometryGap, meanByRank, parseJacobian, parseStepSpectra } from "../src/jacobian/api";
import { logRange } from "../src/jacobian/chart";

const SERIES = {
  run: "r",
  tag: "jacobian",
  output: "logits",
  steps: [0, 10],
  maps: ["", "fc1"],
  dims: { "": [8, 3], fc1: [16, 16] },
  full: [[true, false], [true, null]],
  sigma_max: { mean: [[2.0, 10.0], [1.0, null]], std: [[0.5, 1.0], [0.0, null]] },
  sigma_min: { mean: [[0.5, 0.01], [1.0, null]], std: [[0.1, 0.0], [0.0, null]] },
  mean_squared: { mean: [[1.0, "NaN"], [1.0, null]], std: [[0.0, 0.0], [0.0, null]] },
  log_abs_det: { mean: [["NaN", -3.0], ["NaN", null]], std: [["NaN", 0.5], ["NaN", null]] },
  errors: [[10, "fc1", "RuntimeError: boom"]],
  warnings: [],
};

test("a series parses with NaN where not measured and the errors kept", () => {
  const s = parseJacobian(SERIES);
  assert.deepEqual(s.maps, ["", "fc1"]);
  assert.deepEqual(s.dims.get("fc1"), [16, 16]);
  assert.equal(s.sigmaMax.mean[0][1], 10);
  assert.ok(Number.isNaN(s.sigmaMax.mean[1][1]));
  assert.ok(Number.isNaN(s.logAbsDet.mean[0][0]));
  assert.deepEqual(s.full[1], [true, null]);
  assert.deepEqual(s.errors, [[10, "fc1", "RuntimeError: boom"]]);
});

test("a summary of the wrong size is refused", () => {
  const bad = { ...SERIES, sigma_max: { mean: [[1]], std: [[1]] } };
  assert.throws(() => parseJacobian(bad), /sigma_max is not 2 × 2/);
});

test("the isometry gap is the larger of |log10 σ_max| and |log10 σ_min| of the means", () => {
  const s = parseJacobian(SERIES);
  const gap = isometryGap(s, 1);
  assert.ok(Math.abs(gap[0] - 2) < 1e-12); // σ_min 0.01: two decades
  assert.ok(Number.isNaN(gap[1]));
  assert.deepEqual(isometryGap(s, 0).map((v) => Math.round(v * 1e6) / 1e6), [0.30103, 0]);
});

test("a step parses, the NaN padding dropped, a damaged step carrying its error", () => {
  const step = parseStepSpectra({
    run: "r",
    tag: "t",
    step: 10,
    steps: [0, 10],
    error: null,
    maps: [
      {
        name: "",
        error: null,
        input_dim: 8,
        output_dim: 3,
        full: true,
        singular_values: [[3, 2, "NaN"], [4, 1, "NaN"]],
        mean_squared: [1, 2],
        log_abs_det: ["NaN", "NaN"],
      },
      { name: "fc1", error: "boom" },
    ],
  });
  assert.deepEqual(step.maps[0].singularValues, [[3, 2], [4, 1]]);
  assert.equal(step.maps[1].error, "boom");
  const damaged = parseStepSpectra({ step: 20, steps: [20], error: "does not parse", maps: [] });
  assert.equal(damaged.error, "does not parse");
});

test("the mean by rank skips samples without a value there", () => {
  assert.deepEqual(meanByRank([[3, 1], [5]]), [4, 1]);
  assert.deepEqual(meanByRank([]), []);
});

test("the log range holds the values and the isometry band", () => {
  assert.deepEqual(logRange([2, 3, NaN, -1, 0]), [0.8, 3]);
  assert.deepEqual(logRange([]), [0.1, 10]);
});
