// layer_statistics/cache.ts: one request per key and refresh generation, the older answer
// kept until the newer arrives, errors kept as text, the least recently used dropped.

import assert from "node:assert/strict";
import { test } from "node:test";
import { GenerationCache } from "../src/layer_statistics/cache";

const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

test("one request per key and generation; the old answer stays until the new one arrives", async () => {
  let loaded = 0;
  const cache = new GenerationCache<string>(() => loaded++);
  let calls = 0;
  const fetch = (value: string) => () => {
    calls++;
    return Promise.resolve(value);
  };
  assert.equal(cache.get("a", 1, fetch("a1")), undefined);
  assert.equal(cache.get("a", 1, fetch("again")), undefined); // asked already
  assert.equal(calls, 1);
  await settle();
  assert.deepEqual(cache.get("a", 1, fetch("again")), { data: "a1", gen: 1 });
  assert.equal(calls, 1);
  assert.equal(loaded, 1);
  // A refresh: asked again, and the answer of generation 1 shown meanwhile.
  assert.deepEqual(cache.get("a", 2, fetch("a2")), { data: "a1", gen: 1 });
  assert.equal(calls, 2);
  await settle();
  assert.deepEqual(cache.get("a", 2, fetch("x")), { data: "a2", gen: 2 });
});

test("a failed request is its error's text", async () => {
  const cache = new GenerationCache<string>(() => undefined);
  cache.get("a", 1, () => Promise.reject(new Error("HTTP 404: no step 7")));
  await settle();
  await settle();
  assert.deepEqual(cache.get("a", 1, () => Promise.resolve("x")), { error: "HTTP 404: no step 7", gen: 1 });
});

test("beyond its capacity the least recently used answers go", async () => {
  const cache = new GenerationCache<number>(() => undefined, 3);
  for (const k of [1, 2, 3]) cache.get(String(k), 1, () => Promise.resolve(k));
  await settle();
  cache.get("1", 1, () => Promise.resolve(-1)); // 1 used again: 2 is now the oldest
  cache.get("4", 1, () => Promise.resolve(4));
  await settle();
  let asked = 0;
  const probe = (k: string) => cache.get(k, 1, () => (asked++, Promise.resolve(0)));
  assert.equal(probe("2"), undefined); // dropped: asked again
  assert.equal(asked, 1);
  for (const k of ["1", "3", "4"]) assert.notEqual(probe(k), undefined);
  assert.equal(asked, 1);
});
