// filters/render.ts: tile indices in (out, in) order, the per-tile and shared scales
// (symmetric around 0 when signed), the pixels of grayscale and RGB tiles against
// hand-computed values, and non-finite values drawn magenta. RdBu's published ends are
// #67001f (red, +) and #053061 (blue, -); its middle is #f7f7f7.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { FiltersPage } from "../src/filters/api";
import {
  cellSize,
  pixelValues,
  scaleFraction,
  tileIndex,
  tileLabel,
  tilePixels,
  tileScale,
  valueRgb,
} from "../src/filters/render";

function page(over: Partial<FiltersPage>): FiltersPage {
  return {
    run: "r",
    tag: "t",
    step: 0,
    error: null,
    source: "weights",
    layer: "conv",
    shape: [2, 2, 1, 2],
    total: 2,
    kept: 2,
    rgb: false,
    sample: 0,
    tiles: 4,
    tileShape: [1, 2],
    offset: 0,
    count: 4,
    sharedRange: [-4, 2],
    tileRanges: [[-1, 1], [0, 2], [-4, -2], null],
    nonFinite: 0,
    values: new Float32Array([-1, 1, 0, 2, -4, -2, NaN, NaN]),
    ...over,
  };
}

test("tile indices follow the weight's (out, in) order", () => {
  const p = page({});
  assert.deepEqual(tileIndex(p, 0), { out: 0, in: 0 });
  assert.deepEqual(tileIndex(p, 3), { out: 1, in: 1 });
  assert.equal(tileLabel(tileIndex(p, 2)), "out 1, in 0");
  assert.deepEqual(tileIndex(page({ rgb: true }), 5), { out: 5 });
  assert.deepEqual(tileIndex(page({ source: "feature_maps" }), 7), { channel: 7 });
  assert.equal(tileLabel({ channel: 7 }), "channel 7");
});

test("scales: per tile, shared, symmetric when signed", () => {
  const p = page({});
  assert.deepEqual(tileScale(p, 0, "per_tile"), { lo: -1, hi: 1, signed: true });
  assert.deepEqual(tileScale(p, 1, "per_tile"), { lo: 0, hi: 2, signed: false });
  assert.deepEqual(tileScale(p, 2, "per_tile"), { lo: -4, hi: -2, signed: false });
  assert.deepEqual(tileScale(p, 1, "shared"), { lo: -4, hi: 4, signed: true });
  assert.deepEqual(tileScale(p, 3, "per_tile"), { lo: 0, hi: 1, signed: false });
  assert.equal(scaleFraction(1, { lo: 0, hi: 2, signed: false }), 0.5);
  assert.equal(scaleFraction(5, { lo: 0, hi: 2, signed: false }), 1);
  assert.equal(scaleFraction(3, { lo: 3, hi: 3, signed: false }), 0.5);
});

test("grayscale and diverging colours", () => {
  assert.deepEqual(valueRgb(0, { lo: 0, hi: 2, signed: false }), [0, 0, 0]);
  assert.deepEqual(valueRgb(2, { lo: 0, hi: 2, signed: false }), [255, 255, 255]);
  assert.deepEqual(valueRgb(1, { lo: -1, hi: 1, signed: true }), [0x67, 0x00, 0x1f]);
  assert.deepEqual(valueRgb(-1, { lo: -1, hi: 1, signed: true }), [0x05, 0x30, 0x61]);
  assert.deepEqual(valueRgb(NaN, { lo: -1, hi: 1, signed: true }), [255, 0, 255]);
});

test("tile pixels", () => {
  const p = page({});
  assert.deepEqual([...tilePixels(p, 1, "per_tile")], [0, 0, 0, 255, 255, 255, 255, 255]);
  assert.deepEqual([...tilePixels(p, 3, "per_tile")], [255, 0, 255, 255, 255, 0, 255, 255]);
  const rgb = page({
    rgb: true,
    shape: [1, 3, 1, 1],
    tileShape: [3, 1, 1],
    count: 1,
    tiles: 1,
    tileRanges: [[-2, 1]],
    sharedRange: [-2, 1],
    values: new Float32Array([-2, 0, 1]),
  });
  // Symmetric [-2, 2]: -2 → 0, 0 → 128 (127.5 rounded), 1 → 191 (191.25 rounded).
  assert.deepEqual([...tilePixels(rgb, 0, "per_tile")], [0, 128, 191, 255]);
  assert.deepEqual(pixelValues(rgb, 0, 0, 0), [-2, 0, 1]);
  assert.deepEqual(pixelValues(p, 2, 0, 1), [-2]);
});

test("cell sizes: whole-pixel zoom for small tiles, shrunk large ones", () => {
  assert.deepEqual(cellSize(3, 3, 40), [39, 39]);
  assert.deepEqual(cellSize(7, 7, 40), [35, 35]);
  assert.deepEqual(cellSize(1, 5, 40), [8, 40]);
  assert.deepEqual(cellSize(192, 96, 96), [96, 48]);
});
