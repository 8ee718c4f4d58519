// spectrum/api.ts: a grouped layer's spectrum is its groups' values merged, descending,
// NaN last.

import assert from "node:assert/strict";
import { test } from "node:test";
import { mergeDescending } from "../src/spectrum/api";

test("merged descending with NaN last; infinities in order", () => {
  const out = mergeDescending(Float32Array.from([1, NaN, 3, -Infinity, Infinity, 2, NaN]));
  assert.deepEqual([...out.slice(0, 5)], [Infinity, 3, 2, 1, -Infinity]);
  assert.ok(Number.isNaN(out[5]) && Number.isNaN(out[6]));
});

test("the input is left as it was", () => {
  const values = Float32Array.from([1, 2]);
  mergeDescending(values);
  assert.deepEqual([...values], [1, 2]);
});
