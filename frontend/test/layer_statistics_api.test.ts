// layer_statistics/api.ts and depth.ts: the routes' answers (docs/http_api.md, "Layer
// statistics") into typed data, and the through-depth profile at a step.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  activationValue,
  parameterValue,
  parseLayerSpectrum,
  parseStatisticGrid,
  parseStepTable,
} from "../src/layer_statistics/api";
import { depthProfile, fadedStepIndices, stepIndexFor } from "../src/layer_statistics/depth";
import { defaultStatistic, statisticInfo } from "../src/layer_statistics/statistics";

/** base64 of little-endian float32 `values`, written value by value through a DataView. */
function b64(values: number[]): string {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, k) => view.setFloat32(k * 4, v, true));
  return btoa(String.fromCharCode(...new Uint8Array(view.buffer)));
}

const GRID_JSON = {
  run: "r",
  tag: "layer_statistics/activations",
  part: "activations",
  statistic: "saturated_fraction",
  quantity: "saturated_fraction",
  unit: "fraction",
  scale: "linear",
  statistics: ["mean", "std", "saturated_fraction", "dead_fraction"],
  steps: [0, 10],
  wall_times: [1, 2],
  names: ["fc1", "tanh", "fc2"],
  types: ["Linear", "Tanh", "Linear"],
  non_finite: 1,
  warnings: [],
  values: [
    ["NaN", 0.25, "NaN"],
    [null, "Infinity", "NaN"],
  ],
};

test("layer_statistics JSON: null and a module output's NaN are not measured; ±Infinity is non-finite", () => {
  const g = parseStatisticGrid(structuredClone(GRID_JSON));
  assert.equal(g.statistic, "saturated_fraction");
  assert.equal(g.part, "activations");
  assert.deepEqual(g.types, ["Linear", "Tanh", "Linear"]);
  assert.deepEqual(g.statistics, GRID_JSON.statistics);
  assert.equal(g.quantity.unit, "fraction");
  assert.equal(g.quantity.scale, "linear");
  assert.deepEqual([...g.missing], [1, 0, 1, 1, 0, 1]);
  assert.equal(g.values[1], 0.25);
  assert.equal(g.values[4], Infinity);
  assert.equal(g.nonFinite, 1);
});

test("layer_statistics base64: not_measured pairs; a parameter's NaN norm is a measurement (non-finite)", () => {
  const raw = {
    ...GRID_JSON,
    tag: "layer_statistics/parameters",
    part: "parameters",
    statistic: "grad_norm",
    quantity: "grad_norm",
    unit: "",
    scale: "log",
    statistics: ["grad_norm", "weight_norm", "grad_to_weight"],
    names: ["fc1.weight", "fc1.bias"],
    types: ["", ""],
    values: { dtype: "float32", shape: [2, 2], base64: b64([0.5, NaN, NaN, 2e-3]) },
    not_measured: [[1, 0]],
  };
  const g = parseStatisticGrid(raw);
  assert.equal(g.part, "parameters");
  assert.equal(g.quantity.scale, "log");
  assert.equal(g.quantity.unit, "L2 norm"); // the route gave none: the tab's own
  assert.deepEqual([...g.missing], [0, 0, 1, 0]);
  assert.ok(Number.isNaN(g.values[1]));
  assert.equal(g.nonFinite, 1); // fc1.bias at step 0: a NaN gradient norm
  assert.ok(Math.abs(g.values[3] - 2e-3) <= 2e-3 * 2 ** -23);
  // The same object again: the very same result (a 304 redraws nothing).
  assert.equal(parseStatisticGrid(raw), g);
});

test("layer_statistics: a shape that does not match the names is an error", () => {
  const raw = { ...GRID_JSON, values: { dtype: "float32", shape: [2, 4], base64: b64(new Array(8).fill(0)) } };
  assert.throws(() => parseStatisticGrid(raw), /shape \[2, 4\] does not match 2 steps x 3 names/);
});

test("layer_statistics_step: rows × columns of both parts; a damaged step is its error", () => {
  const raw = {
    run: "r",
    tag: "t",
    step: 100,
    error: null,
    layers: ["conv1", "relu", "fc"],
    types: ["Conv2d", "ReLU", "Linear"],
    activation_statistics: ["mean", "std", "dead_fraction"],
    activations: [
      [0.012, 0.512, 0],
      [0.205, 0.301, 0.0625],
      [-0.03, "NaN", 0],
    ],
    counts: [1605632, 1605632, 320],
    channels: [64, 64, 10],
    dead_channels: [0, 4, 0],
    eigenvalue_counts: [64, 0, 10],
    covariance_samples: [4096, 0, 32],
    parameters: ["conv1.weight", "fc.weight"],
    parameter_statistics: ["grad_norm", "weight_norm"],
    parameter_values: { dtype: "float32", shape: [2, 2], base64: b64([0.0213, 5.12, 0.0151, 3.3]) },
  };
  const t = parseStepTable(raw);
  assert.equal(t.step, 100);
  assert.ok(Math.abs(activationValue(t, 1, "dead_fraction") - 0.0625) < 1e-7);
  assert.ok(Number.isNaN(activationValue(t, 2, "std")));
  assert.ok(Number.isNaN(activationValue(t, 0, "no_such_column")));
  assert.ok(Math.abs(parameterValue(t, 1, "weight_norm") - 3.3) <= 3.3 * 2 ** -23);
  assert.deepEqual(t.deadChannels, [0, 4, 0]);
  assert.deepEqual(t.eigenvalueCounts, [64, 0, 10]);
  assert.throws(() => parseStepTable({ ...raw, error: "activations: 36 bytes for [3, 4]" }), /36 bytes/);
  assert.throws(() => parseStepTable({ ...raw, counts: [1, 2] }), /counts: 2 values for 3 rows/);
  assert.throws(() => parseStepTable({ ...raw, activations: [[1, 2, 3]] }), /1 rows for 3/);
});

test("layer_statistics_spectrum: base64 rows padded with NaN are cut to each step's channels", () => {
  const raw = {
    run: "r",
    tag: "t",
    layer: "fc",
    variance_threshold: 0.99,
    steps: [0, 100],
    eigenvalues: { dtype: "float32", shape: [2, 4], base64: b64([4.5, 2.25, 0.5, NaN, 6.5, 1.75, 0.25, 0]) },
    channels: [3, 4],
    samples: [32, 32],
    effective_dimension: [2.33, 1.54],
    saturation: [0.75, "NaN"],
    effective_rank: [2.71, 1.93],
    warnings: [],
  };
  const s = parseLayerSpectrum(raw);
  assert.deepEqual(s.steps.map((x) => x.step), [0, 100]);
  assert.deepEqual([...s.steps[0].eigenvalues], [4.5, 2.25, 0.5]);
  assert.deepEqual([...s.steps[1].eigenvalues], [6.5, 1.75, 0.25, 0]);
  assert.equal(s.steps[0].saturation, 0.75);
  assert.ok(Number.isNaN(s.steps[1].saturation));
  assert.equal(s.varianceThreshold, 0.99);
  const json = parseLayerSpectrum({ ...raw, eigenvalues: [[3, 1], [2]] });
  assert.deepEqual([...json.steps[1].eigenvalues], [2]);
  assert.throws(() => parseLayerSpectrum({ ...raw, samples: [1] }), /samples: expected 2 values/);
});

test("through depth: each name's value at the step, NaN where absent or not measured", () => {
  const g = parseStatisticGrid({
    ...GRID_JSON,
    statistic: "std",
    quantity: "std",
    values: [
      [1, 2, 3],
      [4, null, 6],
    ],
  });
  const profile = depthProfile(g, ["fc2", "tanh", "missing", "fc1"], 1);
  assert.deepEqual([...profile].map((v) => (Number.isNaN(v) ? "NaN" : v)), [6, "NaN", "NaN", 4]);
  assert.deepEqual([...depthProfile(g, ["fc1"], 5)].map(String), ["NaN"]);
  assert.equal(stepIndexFor(g, 10), 1);
  assert.equal(stepIndexFor(g, 3), 0);
  assert.equal(stepIndexFor(g, null), 1);
});

test("earlier steps drawn faint: up to 5, spread from the first, before the selected one", () => {
  assert.deepEqual(fadedStepIndices(0, 5), []);
  assert.deepEqual(fadedStepIndices(3, 5), [0, 1, 2]);
  assert.deepEqual(fadedStepIndices(40, 5), [0, 10, 20, 29, 39]);
  for (let sel = 1; sel < 60; sel++) {
    const f = fadedStepIndices(sel, 5);
    assert.ok(f.length <= 5 && f.every((i) => i >= 0 && i < sel));
    for (let k = 1; k < f.length; k++) assert.ok(f[k] > f[k - 1]);
  }
});

test("statistics: the card opens on std or the gradient norm; units say what each is", () => {
  assert.equal(defaultStatistic(["mean", "std", "rms"], "activations"), "std");
  assert.equal(defaultStatistic(["grad_norm", "weight_norm"], "parameters"), "grad_norm");
  assert.equal(defaultStatistic(["mean", "grad_norm"], "parameters"), "grad_norm");
  assert.equal(defaultStatistic(["zero_fraction"], null), "zero_fraction");
  assert.equal(defaultStatistic([], null), null);
  assert.equal(statisticInfo("dead_fraction").unit, "fraction of channels");
  assert.equal(statisticInfo("grad_norm").part, "parameters");
  assert.equal(statisticInfo("a_new_column").scale, "linear");
});
