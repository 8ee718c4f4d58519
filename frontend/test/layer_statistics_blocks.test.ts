// layer_statistics/blocks.ts: collapsing repeated blocks, summaries, sorting, flags.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  blockPattern,
  collapseBlocks,
  flagsOf,
  groupLabel,
  indexRanges,
  singleRows,
  sortRows,
  summarize,
} from "../src/layer_statistics/blocks";

/** A 12-block transformer's module outputs, in forward order, with their classes. */
function transformer(blocks = 12): { names: string[]; types: string[] } {
  const names = ["embed"];
  const types = ["Embedding"];
  for (let b = 0; b < blocks; b++) {
    for (const [leaf, type] of [
      ["attn.qkv", "Linear"],
      ["attn.proj", "Linear"],
      ["mlp.fc1", "Linear"],
      ["mlp.act", "GELU"],
      ["mlp.fc2", "Linear"],
    ]) {
      names.push(`blocks.${b}.${leaf}`);
      types.push(type);
    }
  }
  names.push("head");
  types.push("Linear");
  return { names, types };
}

test("numbered segments become * (an output key is kept)", () => {
  assert.equal(blockPattern("blocks.11.mlp.fc1"), "blocks.*.mlp.fc1");
  assert.equal(blockPattern("stages.2.layers.10.conv"), "stages.*.layers.*.conv");
  assert.equal(blockPattern("encoder.layer.3.attention:1"), "encoder.layer.*.attention:1");
  assert.equal(blockPattern("head"), "head");
  // A number inside a segment is not a block number.
  assert.equal(blockPattern("conv2d1.bn2"), "conv2d1.bn2");
});

test("index ranges: runs joined, gaps listed", () => {
  assert.equal(indexRanges([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), "0–11");
  assert.equal(indexRanges([5, 0, 1, 2, 3, 7, 8]), "0–3, 5, 7–8");
  assert.equal(indexRanges([4]), "4");
  assert.equal(indexRanges([2, 2, 3]), "2–3");
});

test("a group's label spells each numbered segment's range", () => {
  const names = Array.from({ length: 12 }, (_, b) => `blocks.${b}.mlp.fc1`);
  assert.equal(groupLabel(names), "blocks.0–11.mlp.fc1");
  assert.equal(groupLabel(["s.0.l.1.c", "s.0.l.2.c", "s.1.l.1.c"]), "s.0–1.l.1–2.c");
  assert.equal(groupLabel(["blocks.3.attn:0", "blocks.4.attn:0"]), "blocks.3–4.attn:0");
});

test("a 12-block transformer's 62 outputs collapse to 7 rows, in model order", () => {
  const { names, types } = transformer();
  const rows = collapseBlocks(names, types);
  assert.deepEqual(
    rows.map((r) => r.label),
    [
      "embed",
      "blocks.0–11.attn.qkv",
      "blocks.0–11.attn.proj",
      "blocks.0–11.mlp.fc1",
      "blocks.0–11.mlp.act",
      "blocks.0–11.mlp.fc2",
      "head",
    ],
  );
  // Every output is in exactly one row; a group holds its 12 blocks' indices, ascending.
  const all = rows.flatMap((r) => r.members).sort((a, b) => a - b);
  assert.deepEqual(all, names.map((_, i) => i));
  const fc1 = rows[3];
  assert.equal(fc1.type, "Linear");
  assert.deepEqual(fc1.members, Array.from({ length: 12 }, (_, b) => 1 + 5 * b + 2));
  for (const i of fc1.members) assert.match(names[i], /^blocks\.\d+\.mlp\.fc1$/);
});

test("outputs of one pattern but different classes stay apart (a Sequential's Linear and ReLU)", () => {
  const names = ["net.0", "net.1", "net.2", "net.3", "net.4"];
  const types = ["Linear", "ReLU", "Linear", "ReLU", "Linear"];
  const rows = collapseBlocks(names, types);
  assert.deepEqual(
    rows.map((r) => [r.label, r.type, r.members]),
    [
      ["net.0,2,4", "Linear", [0, 2, 4]], // not "0–4": 1 and 3 are ReLUs
      ["net.1,3", "ReLU", [1, 3]],
    ],
  );
  // A pattern with one member is its own row under its own name.
  const single = collapseBlocks(["blocks.0.fc", "head"], ["Linear", "Linear"]);
  assert.deepEqual(single.map((r) => r.label), ["blocks.0.fc", "head"]);
  assert.deepEqual(singleRows(["a", "b"]).map((r) => r.members), [[0], [1]]);
});

test("summaries of the finite members; non-finite ones shown when nothing else is", () => {
  const values = [3, NaN, 1, 4, 1, 5];
  assert.equal(summarize(values, "median"), 3); // of 1, 1, 3, 4, 5
  assert.equal(summarize([1, 2, 3, 4], "median"), 2.5);
  assert.equal(summarize(values, "min"), 1);
  assert.equal(summarize(values, "max"), 5);
  assert.ok(Number.isNaN(summarize([NaN, NaN], "max")));
  assert.equal(summarize([NaN, Infinity], "max"), Infinity);
});

test("sorting: descending or ascending, NaN last either way, ties in model order", () => {
  const rows = [
    { n: "a", v: 2 },
    { n: "b", v: NaN },
    { n: "c", v: 5 },
    { n: "d", v: 2 },
    { n: "e", v: -1 },
  ];
  assert.deepEqual(sortRows(rows, (r) => r.v, true).map((r) => r.n), ["c", "a", "d", "e", "b"]);
  assert.deepEqual(sortRows(rows, (r) => r.v, false).map((r) => r.n), ["e", "a", "d", "c", "b"]);
  assert.deepEqual(rows.map((r) => r.n), ["a", "b", "c", "d", "e"]); // input left as it was
  // Brute force: every adjacent pair of the finite part is in order.
  const shuffled = Array.from({ length: 200 }, (_, k) => ({ n: String(k), v: ((k * 7919) % 101) / 7 }));
  const sorted = sortRows(shuffled, (r) => r.v, true);
  for (let k = 1; k < sorted.length; k++) assert.ok(sorted[k - 1].v >= sorted[k].v);
});

test("flags: strictly above the threshold; NaN (not a bounded activation) never flags", () => {
  assert.deepEqual(flagsOf(0.25, NaN, 0.1), { dead: true, saturated: false });
  assert.deepEqual(flagsOf(0.1, 0.1, 0.1), { dead: false, saturated: false });
  assert.deepEqual(flagsOf(0, 0.9, 0.1), { dead: false, saturated: true });
});
