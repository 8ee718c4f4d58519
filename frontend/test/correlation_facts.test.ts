// correlation/channel_facts.ts and the channels route's parsing: dead means zero variance
// over finite samples; channels without any finite sample are unknown, not dead, and the
// panel counts the non-finite values instead.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseChannels } from "../src/correlation/api";
import {
  channelHealth,
  channelsText,
  deadText,
  layoutOf,
  nonFiniteText,
  type ChannelStats,
} from "../src/correlation/channel_facts";

function stats(mean: number[], std: number[], dead: number[], nonFinite: number): ChannelStats {
  return { channels: mean.length, mean, std, dead, nonFinite };
}

test("layout letters and the channels line", () => {
  assert.equal(layoutOf(4, 1), "(N, C, H, W)");
  assert.equal(layoutOf(3, 2), "(N, L, C)");
  assert.equal(layoutOf(2, 1), "(N, C)");
  assert.equal(layoutOf(5, 1), "(N, C, D, H, W)");
  assert.equal(layoutOf(2, 5), "");
  assert.equal(
    channelsText({ activationShape: [24, 16, 6, 6], channelDim: 1 }),
    "channels: dim 1 of (N, C, H, W) = [24, 16, 6, 6]",
  );
  assert.equal(channelsText({ activationShape: [], channelDim: 1 }), "");
});

test("a live layer: dead channels are the zero-variance ones, nothing non-finite", () => {
  const s = stats([1, 0.5, 2], [0.3, 0, 1], [1], 0);
  const health = channelHealth(3, [1], 864, s);
  assert.deepEqual(health, { dead: [1], unknown: [], nonFinite: 0 });
  assert.equal(deadText(health, null), "1 dead channel");
  assert.equal(nonFiniteText(health, null), "");
});

test("all-NaN activations: 0 samples, no channel is dead, the non-finite count is shown", () => {
  // What the writer logged before the fix: every channel in `dead`, mean and std 0.
  const before = stats(Array(16).fill(0), Array(16).fill(0), [...Array(16).keys()], 4096);
  const health = channelHealth(16, before.dead, 0, before);
  assert.deepEqual(health.dead, []);
  assert.equal(health.unknown.length, 16);
  assert.equal(deadText(health, null), "");
  assert.equal(
    nonFiniteText(health, null),
    "4,096 non-finite values (NaN/±Inf) left out · 16 channels without statistics (no finite sample)",
  );
  // After it: no dead channels, NaN mean and std.
  const after = stats(Array(16).fill(NaN), Array(16).fill(NaN), [], 4096);
  assert.deepEqual(channelHealth(16, [], 0, after), health);
  // Before the statistics load: still never "dead" with no samples.
  assert.deepEqual(channelHealth(16, before.dead, 0, null).dead, []);
});

test("some channels all-NaN among live ones: those are unknown, the rest as measured", () => {
  const s = stats([1, NaN, 0.2], [0.5, NaN, 0], [1, 2], 10);
  const health = channelHealth(3, [1, 2], 100, s);
  assert.deepEqual(health, { dead: [2], unknown: [1], nonFinite: 10 });
  assert.equal(
    nonFiniteText(health, null),
    "10 non-finite values (NaN/±Inf) left out · 1 channel without statistics (no finite sample)",
  );
});

test("cross series count A and B", () => {
  const a = channelHealth(2, [0], 50, stats([0, 1], [0, 1], [0], 0));
  const b = channelHealth(2, [], 50, stats([1, 1], [1, 1], [], 1));
  assert.equal(deadText(a, b), "dead: 1 in A, 0 in B");
  assert.equal(nonFiniteText(a, b), "1 non-finite value (NaN/±Inf) left out");
  assert.equal(deadText(b, b), "");
});

test("correlation_channels JSON: null (non-finite) statistics read as NaN", () => {
  const parsed = parseChannels({
    step: 3,
    samples: 0,
    rows: { channels: 2, mean: [null, 1.5], std: [null, "Infinity"], dead: [], non_finite: 7 },
    cols: null,
  });
  assert.equal(parsed.step, 3);
  assert.equal(parsed.rows.nonFinite, 7);
  assert.ok(Number.isNaN(parsed.rows.mean[0]));
  assert.equal(parsed.rows.mean[1], 1.5);
  assert.equal(parsed.rows.std[1], Infinity);
  assert.equal(parsed.cols, null);
});
