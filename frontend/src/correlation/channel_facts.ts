// What a correlation panel says of its channels: where they are in the activation
// ("channels: dim 2 of (N, L, C) = [4, 128, 768]"), how many samples, and their health.
//
// Health: a channel is dead when its activations did not vary over finite samples (zero
// variance). Non-finite activation values (NaN/±Inf) are left out by the writer, so a channel
// whose values were all non-finite has no statistics at all (mean and std unknown, NaN):
// that is not dead, it is unknown, and the panel says how many values were non-finite.

import { plural } from "../format";
import type { CorrelationMatrix } from "./api";

/** Letters for an activation's dims given where its channels are, e.g. "(N, L, C)". */
export function layoutOf(ndim: number, channelDim: number): string {
  if (ndim < 2 || channelDim < 0 || channelDim >= ndim) return "";
  const letters: string[] = [];
  const positions = ndim - 2; // dims other than the batch and the channels
  const names =
    positions === 1 ? ["L"] : positions === 2 ? ["H", "W"] : positions === 3 ? ["D", "H", "W"] : [];
  let next = 0;
  for (let d = 0; d < ndim; d++) {
    if (d === channelDim) letters.push("C");
    else if (d === 0) letters.push("N");
    else letters.push(names[next++] ?? `P${next}`);
  }
  return `(${letters.join(", ")})`;
}

/** "channels: dim 2 of (N, L, C) = [4, 128, 768]", or "" when the shape was not logged. */
export function channelsText(m: Pick<CorrelationMatrix, "activationShape" | "channelDim">): string {
  const shape = m.activationShape;
  if (shape.length === 0) return "";
  const layout = layoutOf(shape.length, m.channelDim);
  return `channels: dim ${m.channelDim} of ${layout ? `${layout} = ` : ""}[${shape.join(", ")}]`;
}

/** One side's channel statistics (correlation_channels' `rows` or `cols`); NaN when unknown. */
export interface ChannelStats {
  channels: number;
  mean: number[];
  std: number[];
  dead: number[];
  /** Activation values that were NaN/±Inf (left out of every statistic). */
  nonFinite: number;
}

/** One side's channels as the panel presents them. */
export interface ChannelHealth {
  /** Channels with zero variance over finite samples. */
  dead: number[];
  /** Channels without statistics (no finite sample: mean or std unknown). */
  unknown: number[];
  nonFinite: number;
}

/**
 * The health of one side's `channels` from the matrix route's `dead` list and, when loaded,
 * the channel statistics. With no samples at all every channel is unknown, never dead.
 */
export function channelHealth(
  channels: number,
  dead: readonly number[],
  samples: number,
  stats: ChannelStats | null,
): ChannelHealth {
  const unknown: number[] = [];
  if (samples <= 0) {
    for (let c = 0; c < channels; c++) unknown.push(c);
  } else if (stats) {
    for (let c = 0; c < channels; c++) {
      if (!Number.isFinite(stats.mean[c]) || !Number.isFinite(stats.std[c])) unknown.push(c);
    }
  }
  const unknownSet = new Set(unknown);
  return {
    dead: dead.filter((c) => !unknownSet.has(c)),
    unknown,
    nonFinite: stats?.nonFinite ?? 0,
  };
}

/** The dead-channel badge: "1 dead channel", "dead: 1 in A, 0 in B", or "" when none. */
export function deadText(rows: ChannelHealth, cols: ChannelHealth | null): string {
  if (cols) {
    if (rows.dead.length + cols.dead.length === 0) return "";
    return `dead: ${rows.dead.length} in A, ${cols.dead.length} in B`;
  }
  return rows.dead.length ? plural(rows.dead.length, "dead channel") : "";
}

/**
 * The non-finite badge: "4,096 non-finite values left out · 16 channels without statistics",
 * or "" when every value was finite.
 */
export function nonFiniteText(rows: ChannelHealth, cols: ChannelHealth | null): string {
  const values = rows.nonFinite + (cols?.nonFinite ?? 0);
  const unknown = rows.unknown.length + (cols?.unknown.length ?? 0);
  if (values === 0 && unknown === 0) return "";
  const parts: string[] = [];
  if (values > 0) parts.push(`${plural(values, "non-finite value")} (NaN/±Inf) left out`);
  if (unknown > 0) {
    parts.push(`${plural(unknown, "channel")} without statistics (no finite sample)`);
  }
  return parts.join(" · ");
}
