// The saliency grid's pure pieces: panel scale, column heads, the pixel under the pointer
// and its tooltip rows, token colours and labels, and the non-finite summary.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { SaliencyMaps } from "../src/saliency/api";
import { PANEL_PX, imageColumns, panelScale } from "../src/saliency/grid";
import { pixelAt, pixelRows, type PanelData } from "../src/saliency/hover";
import { nonFiniteSummary } from "../src/saliency/notes";
import type { Geometry } from "../src/saliency/render";
import { signedReduction, tokenColor, tokenLabel } from "../src/saliency/tokens";
import { errorText } from "../src/json";

function maps(over: Partial<SaliencyMaps>): SaliencyMaps {
  return {
    run: "r",
    tag: "t",
    step: 5,
    method: "gradient",
    inputShape: [2, 2, 3],
    numSamples: 4,
    samples: [0, 1],
    labels: null,
    predictions: null,
    completenessError: null,
    nonFinite: 0,
    nonFinitePerSample: [0, 0],
    inputs: null,
    maps: { shape: [0], values: new Float32Array(0) },
    inputKind: "",
    tokenReduction: "",
    tokenIds: null,
    tokenTexts: null,
    baseline: null,
    baselineMaps: null,
    error: null,
    ...over,
  };
}

test("panels: an integer device scale near PANEL_PX, CSS scale at most 1.5 x PANEL_PX", () => {
  const g = (H: number, W: number): Geometry => ({ C: 1, H, W, color: "grey" });
  assert.deepEqual(panelScale(g(8, 8)), { scale: 14, cssScale: 14 }); // 112 / 8
  assert.deepEqual(panelScale(g(28, 28)), { scale: 4, cssScale: 4 });
  // 224 px: one device px per pixel (never below 1), shown at 168 CSS px (1.5 x PANEL_PX).
  assert.deepEqual(panelScale(g(224, 224)), { scale: 1, cssScale: 0.75 });
  const long = panelScale(g(1, 512)); // a sequence: one device px, CSS 0.328 px per value
  assert.equal(long.scale, 1);
  assert.ok(Math.abs(long.cssScale - (1.5 * PANEL_PX) / 512) < 1e-12);
});

test("columns: source, map and overlay; the baseline's pair; both steps when comparing", () => {
  const A = maps({ step: 30 });
  const B = maps({ step: 0 });
  assert.deepEqual(imageColumns(A, null, false), ["sample", "source", "map", "overlay"]);
  assert.deepEqual(imageColumns(A, null, true), [
    "sample",
    "source",
    "baseline",
    "baseline map",
    "map (delta)",
    "overlay",
  ]);
  assert.deepEqual(imageColumns(A, B, false), [
    "sample",
    "source",
    "map · step 30",
    "overlay · step 30",
    "map · step 0",
    "overlay · step 0",
  ]);
});

test("the pixel under the pointer, and none outside the panel", () => {
  const g: Geometry = { C: 1, H: 4, W: 8, color: "grey" };
  const rect = { left: 100, top: 50, width: 80, height: 40 }; // 10 CSS px per pixel
  assert.deepEqual(pixelAt(rect, 100, 50, g), [0, 0]);
  assert.deepEqual(pixelAt(rect, 179.9, 89.9, g), [7, 3]);
  assert.deepEqual(pixelAt(rect, 135, 72, g), [3, 2]);
  assert.equal(pixelAt(rect, 99, 60, g), null);
  assert.equal(pixelAt(rect, 180, 60, g), null);
});

test("tooltip rows: the map value at the pixel and the input's channels there", () => {
  const g: Geometry = { C: 2, H: 2, W: 3, color: "mean" };
  // Two samples of [2, 2, 3]; the second's channel c, pixel p holds 100 c + p.
  const input = Float32Array.from({ length: 24 }, (_, k) => (k < 12 ? 0 : 100 * Math.floor((k - 12) / 6) + ((k - 12) % 6)));
  const reduced = Float64Array.from([0, 0.5, 0, 0, 0, 0.25]);
  const data: PanelData = {
    kind: "map",
    maps: maps({ samples: [7, 9] }),
    row: 1,
    reduced,
    input: { shape: [2, 2, 2, 3], values: input },
    inputRow: 1,
  };
  const rows = pixelRows(data, 2, 1, g, "absolute", { run: "r", color: "#f00", mode: () => "absolute" });
  const field = (name: string) => rows.find((r) => r.field === name)?.value;
  assert.equal(field("sample"), "9");
  assert.equal(field("pixel"), "2, 1");
  assert.equal(field("value"), "2.500e-1"); // reduced[1 * 3 + 2]
  assert.equal(field("input"), "5.000e0, 1.050e2"); // channels 0 and 1 at pixel 5
  assert.equal(rows.find((r) => r.field === "value")?.label, "map (max |·| over channels)");
  const source = pixelRows({ ...data, kind: "source", reduced: null }, 0, 0, g, "signed", {
    run: "r",
    color: "#f00",
    mode: () => "signed",
  });
  assert.equal(source.find((r) => r.field === "value"), undefined);
});

test("tokens: signed unless an L2 norm; labels keep whitespace; colours from the maps", () => {
  assert.equal(signedReduction("sum over the embedding dim"), true);
  assert.equal(signedReduction("L2 norm over the embedding dim"), false);
  assert.equal(tokenLabel(" cat", 5), " cat");
  assert.equal(tokenLabel("", 5), "∅");
  assert.equal(tokenLabel(undefined, 5), "#5");
  assert.deepEqual(tokenColor(NaN, 1, "signed"), ["rgb(255, 235, 238)", false]);
  assert.deepEqual(tokenColor(1, 1, "signed"), ["rgb(103, 0, 31)", true]); // RdBu's red end
  assert.deepEqual(tokenColor(-1, 1, "signed"), ["rgb(5, 48, 97)", true]); // its blue end
  // Sequential maps fade from white: zero is white, the clip inferno's pale yellow end.
  assert.deepEqual(tokenColor(0, 1, "absolute"), ["rgb(255, 255, 255)", false]);
  assert.deepEqual(tokenColor(1, 1, "absolute"), ["rgb(252, 255, 164)", false]);
});

test("the non-finite summary counts the samples shown and the whole step", () => {
  assert.equal(nonFiniteSummary(maps({})), null);
  assert.equal(
    nonFiniteSummary(maps({ nonFinite: 9, nonFinitePerSample: [0, 3], samples: [0, 1] })),
    "step 5: 3 non-finite map values (NaN/±Inf) in 1 of the 2 samples shown " +
      "(9 in the whole step); those maps are not drawn.",
  );
});

test("errorText: an Error's message, anything else as text", () => {
  assert.equal(errorText(new Error("HTTP 400: bad")), "HTTP 400: bad");
  assert.equal(errorText("plain"), "plain");
});
