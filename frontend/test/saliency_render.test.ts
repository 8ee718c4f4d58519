// saliency/render.ts: geometry, channel reduction per sign mode, numpy-style percentiles,
// clip values, colours of the two colour maps, source scaling and the overlay blend. The
// references are closed forms and hand-computed values; the colour ends are d3's published
// scheme endpoints (inferno #000004 → #fcffa4, RdBu #67001f … #053061).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  clipValue,
  formatValue,
  geometry,
  imageRgb,
  mapColor,
  mapRgb,
  overlayRgb,
  percentile,
  reduceMap,
  strength,
  valueRange,
  type Geometry,
} from "../src/saliency/render";

/** float32 rounding of x (what a Float32Array stores), for exact expectations. */
const f32 = (x: number) => Math.fround(x);

function close(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} is not within ${tolerance} of ${expected}`,
  );
}

test("geometry of [C, H, W], [H, W] and [L]; undrawable shapes are null", () => {
  assert.deepEqual(geometry([3, 4, 5]), { C: 3, H: 4, W: 5, color: "rgb" });
  assert.deepEqual(geometry([1, 2, 2]), { C: 1, H: 2, W: 2, color: "grey" });
  assert.deepEqual(geometry([2, 2, 2]), { C: 2, H: 2, W: 2, color: "mean" });
  assert.deepEqual(geometry([7, 9]), { C: 1, H: 7, W: 9, color: "grey" });
  assert.deepEqual(geometry([12]), { C: 1, H: 1, W: 12, color: "grey" });
  assert.equal(geometry([]), null);
  assert.equal(geometry([1, 2, 3, 4]), null);
  assert.equal(geometry([0, 4, 4]), null);
});

// Two samples of 2 channels x 1 x 2 pixels: sample 1's channel 0 = [3, -4], channel 1 = [-5, 1].
const g2: Geometry = { C: 2, H: 1, W: 2, color: "mean" };
const twoSamples = Float32Array.from([9, 9, 9, 9, 3, -4, -5, 1]);

test("absolute mode: max over channels of |m_c|; the other modes: the signed sum", () => {
  assert.deepEqual([...reduceMap(twoSamples, 1, g2, "absolute")], [5, 4]);
  for (const mode of ["signed", "positive", "negative"] as const) {
    assert.deepEqual([...reduceMap(twoSamples, 1, g2, mode)], [3 - 5, -4 + 1]);
  }
});

test("a NaN channel makes its pixel NaN in every mode", () => {
  const values = Float32Array.from([NaN, 1, 2, 3]); // channel 0 = [NaN, 1], channel 1 = [2, 3]
  const abs = reduceMap(values, 0, g2, "absolute");
  assert.ok(Number.isNaN(abs[0]));
  assert.equal(abs[1], 3);
  assert.ok(Number.isNaN(reduceMap(values, 0, g2, "signed")[0]));
});

test("strength: positive part, negative part, or the value", () => {
  assert.equal(strength(-2, "positive"), 0);
  assert.equal(strength(2, "positive"), 2);
  assert.equal(strength(-2, "negative"), 2);
  assert.equal(strength(2, "negative"), 0);
  assert.equal(strength(-2, "signed"), -2);
  assert.equal(strength(-2, "absolute"), -2); // absolute maps are already |·|
});

test("percentile is numpy's linear interpolation over the finite values", () => {
  // numpy.percentile([1, 2, 3, 4], p) = 1 + 3p/100.
  for (const p of [0, 25, 50, 95, 99, 99.9, 100]) {
    close(percentile([4, 1, 3, 2], p), 1 + (3 * p) / 100, 1e-12, `p${p}`);
  }
  assert.equal(percentile([5, NaN, Infinity, -Infinity], 50), 5);
  assert.ok(Number.isNaN(percentile([NaN], 50)));
  assert.ok(Number.isNaN(percentile([], 50)));
});

test("clipValue: the percentile of |strength| over every map of the row; 1 when all zero", () => {
  const a = Float64Array.from([-4, 1]);
  const b = Float64Array.from([2, -3]);
  // |values| = 1, 2, 3, 4: p50 = 2.5, max = 4.
  close(clipValue([a, b], "signed", 50), 2.5, 1e-12, "signed p50");
  assert.equal(clipValue([a, b], "signed", 100), 4);
  // positive parts: 0, 1, 2, 0 -> sorted 0, 0, 1, 2: p100 = 2, p50 = 0.5.
  assert.equal(clipValue([a, b], "positive", 100), 2);
  close(clipValue([a, b], "positive", 50), 0.5, 1e-12, "positive p50");
  // negative parts: 4, 0, 0, 3 -> p100 = 4.
  assert.equal(clipValue([a, b], "negative", 100), 4);
  assert.equal(clipValue([Float64Array.from([0, 0])], "absolute", 99), 1);
  assert.equal(clipValue([], "absolute", 99), 1);
});

const INFERNO_0 = [0x00, 0x00, 0x04];
const INFERNO_1 = [0xfc, 0xff, 0xa4];
const RDBU_RED = [0x67, 0x00, 0x1f];
const RDBU_BLUE = [0x05, 0x30, 0x61];

test("sequential colours: 0 is inferno's black, the clip value and beyond its pale yellow", () => {
  assert.deepEqual(mapColor(0, 2, "absolute"), [...INFERNO_0, 0]);
  assert.deepEqual(mapColor(2, 2, "absolute"), [...INFERNO_1, 1]);
  assert.deepEqual(mapColor(7, 2, "absolute"), [...INFERNO_1, 1]); // saturated
  assert.deepEqual(mapColor(-7, 2, "positive"), [...INFERNO_0, 0]); // no positive part
  assert.deepEqual(mapColor(-2, 2, "negative"), [...INFERNO_1, 1]);
  const [, , , half] = mapColor(1, 2, "absolute");
  close(half, 0.5, 1e-12, "opacity at half the clip");
});

test("diverging colours: -clip blue, +clip red, 0 near white, opacity |v|/clip", () => {
  assert.deepEqual(mapColor(-3, 3, "signed"), [...RDBU_BLUE, 1]);
  assert.deepEqual(mapColor(3, 3, "signed"), [...RDBU_RED, 1]);
  assert.deepEqual(mapColor(-30, 3, "signed"), [...RDBU_BLUE, 1]);
  const [r, g, b, a] = mapColor(0, 3, "signed");
  assert.equal(a, 0);
  // d3's RdBu is a basis spline through 11 colours: at its middle knot it is
  // (#fddbc7 + 4 #f7f7f7 + #d1e5f0) / 6 = (241.7, 239.3, 237.8); the LUT's entry 128 of 255
  // lies 0.002 from the middle, a level or two away.
  close(r, (0xfd + 4 * 0xf7 + 0xd1) / 6, 3, "red at zero");
  close(g, (0xdb + 4 * 0xf7 + 0xe5) / 6, 3, "green at zero");
  close(b, (0xc7 + 4 * 0xf7 + 0xf0) / 6, 3, "blue at zero");
});

test("mapRgb packs mapColor per pixel, with each pixel's opacity", () => {
  const heat = mapRgb(Float64Array.from([0, 2, 1]), 2, "absolute");
  assert.deepEqual([...heat.rgb.slice(0, 6)], [...INFERNO_0, ...INFERNO_1]);
  assert.deepEqual([...heat.rgb.slice(6)], mapColor(1, 2, "absolute").slice(0, 3));
  assert.deepEqual([...heat.alpha], [0, 1, 0.5]);
});

test("valueRange ignores non-finite values; [0, 1] without any finite one", () => {
  const g: Geometry = { C: 1, H: 1, W: 3, color: "grey" };
  const values = Float32Array.from([5, 5, 5, -1, NaN, 2]);
  assert.deepEqual(valueRange(values, 1, g), [-1, 2]);
  assert.deepEqual(valueRange(Float32Array.from([NaN, Infinity, NaN]), 0, g), [0, 1]);
});

test("imageRgb: grey, RGB, and the channel mean, scaled linearly from the range", () => {
  const grey: Geometry = { C: 1, H: 1, W: 3, color: "grey" };
  const img = imageRgb(Float32Array.from([-1, 0, 1]), 0, grey, [-1, 1]);
  // 255 * (v + 1) / 2 = 0, 127.5 -> 128 (Uint8ClampedArray rounds half to even: 128), 255.
  assert.deepEqual([...img], [0, 0, 0, 128, 128, 128, 255, 255, 255]);
  const rgb: Geometry = { C: 3, H: 1, W: 1, color: "rgb" };
  assert.deepEqual([...imageRgb(Float32Array.from([0, 0.5, 1]), 0, rgb, [0, 1])], [0, 128, 255]);
  const mean: Geometry = { C: 2, H: 1, W: 1, color: "mean" };
  // mean of 0.2 and 0.6 = 0.4 -> 102.
  const m = imageRgb(Float32Array.from([0.2, 0.6]), 0, mean, [0, 1]);
  close(m[0], 255 * (f32(0.2) + f32(0.6)) / 2, 0.5, "mean grey");
  assert.deepEqual([...imageRgb(Float32Array.from([NaN]), 0, { ...grey, W: 1 }, [0, 1])], [0, 0, 0]);
});

test("overlay: the source's luminance blended with the map's colour at 0.85 x opacity", () => {
  const source = Uint8ClampedArray.from([200, 100, 50, 10, 20, 30]);
  const heat = { rgb: Uint8ClampedArray.from([255, 0, 0, 0, 0, 255]), alpha: Float32Array.from([0, 1]) };
  const out = overlayRgb(source, heat);
  const grey0 = 0.299 * 200 + 0.587 * 100 + 0.114 * 50; // 124.2 -> 124
  assert.deepEqual([...out.slice(0, 3)], Array(3).fill(Math.round(grey0)));
  const grey1 = 0.299 * 10 + 0.587 * 20 + 0.114 * 30;
  const blend = (c: number) => Math.round(0.15 * grey1 + 0.85 * c);
  assert.deepEqual([...out.slice(3)], [blend(0), blend(0), blend(255)]);
});

test("formatValue: three decimals of mantissa, and the non-finite names", () => {
  assert.equal(formatValue(0.001234), "1.234e-3");
  assert.equal(formatValue(-12345), "-1.235e4");
  assert.equal(formatValue(0), "0");
  assert.equal(formatValue(NaN), "NaN");
  assert.equal(formatValue(Infinity), "Infinity");
  assert.equal(formatValue(-Infinity), "-Infinity");
});
