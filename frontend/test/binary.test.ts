// binary.ts: base64 and little-endian float32 / float16 decoding, against bytes written by
// hand from IEEE 754 (closed forms: sign, exponent and fraction of each pattern).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  base64Bytes,
  decodeBase64Float32,
  decodeFloat16,
  decodeFloat32,
} from "../src/binary";

/** base64 of raw bytes (node's Buffer is not typed here: btoa of a binary string). */
function b64(bytes: number[]): string {
  return btoa(String.fromCharCode(...bytes));
}

test("base64Bytes gives the bytes back", () => {
  const bytes = [0, 1, 127, 128, 254, 255, 61, 43];
  assert.deepEqual([...base64Bytes(b64(bytes))], bytes);
  assert.deepEqual([...base64Bytes("")], []);
});

test("float32: little-endian IEEE 754 patterns decode to their values", () => {
  // 1.0 = 0x3f800000, -2.5 = 0xc0200000, 2^-149 = 0x00000001 (smallest subnormal),
  // +Inf = 0x7f800000, -0 = 0x80000000, NaN = 0x7fc00000.
  const words = [0x3f800000, 0xc0200000, 0x00000001, 0x7f800000, 0x80000000, 0x7fc00000];
  const bytes = words.flatMap((w) => [w & 0xff, (w >>> 8) & 0xff, (w >>> 16) & 0xff, w >>> 24]);
  const out = decodeFloat32(Uint8Array.from(bytes), 6, "x");
  assert.equal(out[0], 1);
  assert.equal(out[1], -2.5);
  assert.equal(out[2], 2 ** -149);
  assert.equal(out[3], Infinity);
  assert.ok(Object.is(out[4], -0));
  assert.ok(Number.isNaN(out[5]));
  const viaBase64 = decodeBase64Float32(b64(bytes), 6, "x");
  assert.deepEqual([...viaBase64.slice(0, 4)], [...out.slice(0, 4)]);
});

test("float32 decodes from an unaligned offset into a larger buffer", () => {
  const buffer = new Uint8Array(9);
  buffer.set([0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0], 1); // 1.0, -2.5 at offset 1
  const out = decodeFloat32(buffer.subarray(1), 2, "x");
  assert.deepEqual([...out], [1, -2.5]);
});

test("float32: a wrong byte count is an error naming the array", () => {
  assert.throws(
    () => decodeFloat32(new Uint8Array(7), 2, "maps"),
    /maps: expected 8 bytes of float32, got 7/,
  );
});

test("float16: every class of pattern (normal, subnormal, max, Inf, NaN, signed zero)", () => {
  const cases: Array<[number, number]> = [
    [0x3c00, 1], // exponent 15: 2^0
    [0xc000, -2], // sign, exponent 16
    [0x3555, (1 + 0x155 / 1024) * 2 ** -2], // 0.333251953125
    [0x7bff, 65504], // largest normal: (2 - 2^-10) * 2^15
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  const bytes = cases.flatMap(([h]) => [h & 0xff, h >> 8]);
  const out = decodeFloat16(Uint8Array.from(bytes), cases.length, "x");
  cases.forEach(([, value], k) => assert.equal(out[k], value, `pattern ${k}`));
  const special = decodeFloat16(Uint8Array.from([0x00, 0x7e, 0x00, 0x80]), 2, "x");
  assert.ok(Number.isNaN(special[0]), "0x7e00 is NaN");
  assert.ok(Object.is(special[1], -0), "0x8000 is -0");
});

test("float16: a wrong byte count is an error naming the array", () => {
  assert.throws(
    () => decodeFloat16(new Uint8Array(3), 2, "inputs"),
    /inputs: expected 4 bytes of float16, got 3/,
  );
});

test("a shape that is no count of elements (negative, fractional, NaN) is an error", () => {
  for (const count of [-1, 1.5, NaN, Infinity]) {
    assert.throws(() => decodeFloat32(new Uint8Array(0), count, "maps"), /maps: its shape gives/);
    assert.throws(() => decodeFloat16(new Uint8Array(0), count, "maps"), /maps: its shape gives/);
  }
  assert.equal(decodeFloat32(new Uint8Array(0), 0, "empty").length, 0);
});
