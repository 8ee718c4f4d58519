// saliency/api.ts parses a step's maps (float16 and float32 arrays in base64), and a step
// whose data is damaged as that step's error, with no arrays; ./paging's sample ranges.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSaliencyMaps } from "../src/saliency/api";
import { legendEnds } from "../src/saliency/legend";
import { PAGE, samplesRange } from "../src/saliency/paging";

const b64 = (bytes: number[]) => btoa(String.fromCharCode(...bytes));

test("a step's arrays decode to their values and shapes", () => {
  // float16 1, -2 (0x3c00, 0xc000); float32 0.5 (0x3f000000).
  const maps = parseSaliencyMaps({
    run: "r",
    tag: "saliency/gradient",
    step: 7,
    method: "gradient",
    input_shape: [1, 1, 2],
    samples: [3],
    labels: [1],
    predictions: [2],
    non_finite: 0,
    non_finite_per_sample: [0],
    inputs: { dtype: "float32", shape: [1, 1, 1, 1], base64: b64([0, 0, 0, 0x3f]) },
    maps: { dtype: "float16", shape: [1, 1, 1, 2], base64: b64([0x00, 0x3c, 0x00, 0xc0]) },
  });
  assert.equal(maps.error, null);
  assert.equal(maps.step, 7);
  assert.deepEqual([...maps.maps.values], [1, -2]);
  assert.deepEqual(maps.maps.shape, [1, 1, 1, 2]);
  assert.deepEqual([...(maps.inputs?.values ?? [])], [0.5]);
  assert.deepEqual(maps.labels, [1]);
  assert.deepEqual(maps.predictions, [2]);
});

test("a step's error comes back as that step's error, without arrays", () => {
  const maps = parseSaliencyMaps({
    run: "r",
    tag: "t",
    step: 40,
    error: "unreadable SaliencyStep (a damaged record?)",
  });
  assert.equal(maps.step, 40);
  assert.equal(maps.error, "unreadable SaliencyStep (a damaged record?)");
  assert.equal(maps.inputs, null);
  assert.equal(maps.maps.values.length, 0);
});

test("arrays whose bytes do not match their shape, or unknown dtypes, are errors", () => {
  const base = { step: 1, input_shape: [2], samples: [0], inputs: null, token_ids: null };
  assert.throws(
    () => parseSaliencyMaps({ ...base, maps: { dtype: "float16", shape: [1, 2], base64: b64([0, 0]) } }),
    /saliency: maps: expected 4 bytes of float16, got 2/,
  );
  assert.throws(
    () => parseSaliencyMaps({ ...base, maps: { dtype: "int8", shape: [1], base64: b64([0]) } }),
    /unsupported dtype int8/,
  );
  assert.throws(() => parseSaliencyMaps([1, 2]), /saliency: expected an object/);
});

test("pages of samples: the route's inclusive range, clipped to the probe", () => {
  assert.equal(PAGE, 8);
  assert.equal(samplesRange(0, 20), "0-7");
  assert.equal(samplesRange(16, 20), "16-19");
  assert.equal(samplesRange(0, 3), "0-2");
  assert.equal(samplesRange(0, 0), "0-0");
});

test("legend ends name the clip percentile of each sign mode", () => {
  assert.deepEqual(legendEnds("absolute", 99), ["0", "p99 of |map|"]);
  assert.deepEqual(legendEnds("signed", 100), ["−max of |map|", "+max"]);
  assert.deepEqual(legendEnds("negative", 95), ["0", "p95 of −(negative part)"]);
});
