// layer_statistics/cells.ts and xychart.ts's formatNumber: how the table and the charts
// write numbers, headers and units.

import assert from "node:assert/strict";
import { test } from "node:test";
import { columnTitle, formatCell, unitsNote } from "../src/layer_statistics/cells";
import { drawable, extentOf, formatNumber } from "../src/layer_statistics/xychart";

test("fractions as percentages; a tiny non-zero one never reads as none; NaN is not measured", () => {
  assert.equal(formatCell("dead_fraction", 0.5), "50.0%");
  assert.equal(formatCell("dead_fraction", 0), "0%");
  assert.equal(formatCell("zero_fraction", 0.0004), "0.04%");
  assert.equal(formatCell("zero_fraction", 1e-6), "<0.01%");
  assert.equal(formatCell("saturated_fraction", NaN), "–");
  assert.equal(formatCell("saturation", 0.75), "75.0%");
  assert.equal(formatCell("std", 0.321192), "0.321");
  assert.equal(formatCell("grad_norm", 1.234e-5), "1.23e-5");
  assert.equal(formatCell("max_abs", Infinity), "Infinity");
});

test("numbers: 3 significant digits, exponents when small or large", () => {
  assert.equal(formatNumber(24.94), "24.9");
  assert.equal(formatNumber(-0.0637), "-0.0637");
  assert.equal(formatNumber(123456), "1.23e+5");
  assert.equal(formatNumber(0), "0");
  assert.equal(formatNumber(-Infinity), "-Infinity");
});

test("headers and the units line say what each column is in", () => {
  assert.equal(columnTitle("dead_fraction"), "dead %");
  assert.equal(columnTitle("max_abs"), "max |a|");
  assert.equal(
    unitsNote(["mean", "std", "zero_fraction", "dead_fraction", "effective_dimension"]),
    "mean, std: output units · zero: % of elements · dead: % of channels · eff. dim: channels",
  );
  assert.equal(unitsNote(["grad_norm", "weight_norm", "grad_to_weight"]), "‖g‖, ‖W‖: L2 norm · ‖g‖/‖W‖: ratio");
});

test("what a log axis can draw, and the extent of it", () => {
  assert.ok(drawable(1e-9, true) && !drawable(0, true) && !drawable(-1, true) && !drawable(Infinity, true));
  assert.ok(drawable(0, false) && drawable(-1, false) && !drawable(NaN, false));
  const series = [
    { key: "a", label: "a", color: "#000", x: [0, 1, 2], y: [0, 2, NaN] },
    { key: "b", label: "b", color: "#000", x: [0, 1], y: [-3, Infinity] },
  ];
  assert.deepEqual(extentOf(series, (s) => s.y, false), [-3, 2]);
  assert.deepEqual(extentOf(series, (s) => s.y, true), [2, 2]);
  assert.equal(extentOf([], (s) => s.y, true), null);
});
