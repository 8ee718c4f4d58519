// A series of one value per row (a parameter, a layer) and logged step: what the
// update-ratio card draws as heatmaps and a line chart. Update ratios parse into one, and so
// do layer values (users' own per-layer quantities), each with the Quantity it shows.

import { decodeBase64Float32 } from "../binary";
import { isRecord, jsonNumber } from "../json";

/** How values map to colour and to the chart's y axis. */
export type ValueScale = "log" | "linear";

/** What a grid's values are, as the card labels and scales them. */
export interface Quantity {
  /** What is measured, e.g. "‖ΔW‖/‖W‖" or a user's "grad norm". */
  label: string;
  /** Its unit ("" for none), shown after the label. */
  unit: string;
  scale: ValueScale;
  /** A rule-of-thumb value the chart draws a band around, and the legend marks; null: none. */
  target: { value: number; band: readonly [number, number]; text: string } | null;
  /** What a cell without a value means, e.g. "no update" (update ratios) or "no value". */
  missingText: string;
}

export interface LayerGrid {
  run: string;
  tag: string;
  steps: number[];
  wallTimes: number[];
  /** The rows: parameter or layer names. */
  names: string[];
  /** steps.length x names.length, row-major: value(i, j) = values[i * names.length + j]. */
  values: Float32Array;
  /**
   * 1 where row j has no value at step i (its value is NaN and means nothing): for update
   * ratios, the parameter got no update; for layer values, nothing was logged for the layer.
   */
  missing: Uint8Array;
  /**
   * 1 where parameter j's weight was exactly zero before step i (a fresh bias at step 0):
   * ‖ΔW‖/‖W‖ is undefined there, not a numerical fault. All 0 when the route omits it.
   */
  zeroWeight: Uint8Array;
  /** Non-finite values the route counted (zero-weight cells are not among them). */
  nonFinite: number;
  warnings: string[];
  quantity: Quantity;
}

/** Parsed responses by the JSON object they came from (an unchanged reload gives the same one). */
const parsed = new WeakMap<object, LayerGrid>();

/**
 * Validate a response of `route` (update_ratios or layer_values, either format: JSON rows
 * with null for a missing value, or base64 float32 with `no_update` (update ratios) or
 * `not_measured` (layer values) [step index, row index] pairs) into typed
 * arrays. The same JSON object (a reload answered 304 Not Modified) gives the same result,
 * so nothing redraws. `quantity` says what the values are.
 */
export function parseLayerGrid(
  raw: unknown,
  route: string,
  quantity: (raw: Record<string, unknown>) => Quantity,
): LayerGrid {
  if (!isRecord(raw)) throw new Error(`${route}: expected an object`);
  const known = parsed.get(raw);
  if (known) return known;
  const grid = parseObject(raw, route, quantity(raw));
  parsed.set(raw, grid);
  return grid;
}

function parseObject(raw: Record<string, unknown>, route: string, quantity: Quantity): LayerGrid {
  const steps = Array.isArray(raw.steps) ? raw.steps.map(Number) : [];
  const names = Array.isArray(raw.names) ? raw.names.map(String) : [];
  const wallTimes = Array.isArray(raw.wall_times) ? raw.wall_times.map(Number) : [];
  const S = steps.length;
  const P = names.length;
  const missing = new Uint8Array(S * P);
  let values: Float32Array;
  const v = raw.values;
  if (isRecord(v) && typeof v.base64 === "string") {
    if (v.dtype !== undefined && v.dtype !== "float32") {
      throw new Error(`${route}: unsupported dtype ${String(v.dtype)}`);
    }
    if (Array.isArray(v.shape) && (Number(v.shape[0]) !== S || Number(v.shape[1] ?? P) !== P)) {
      throw new Error(`${route}: shape [${v.shape.join(", ")}] does not match ${S} steps x ${P} names`);
    }
    values = decodeBase64Float32(v.base64, S * P, "values");
  } else if (Array.isArray(v)) {
    if (v.length !== S) throw new Error(`${route}: ${v.length} rows for ${S} steps`);
    values = new Float32Array(S * P);
    v.forEach((row: unknown, i: number) => {
      if (!Array.isArray(row) || row.length !== P) {
        throw new Error(`${route}: row ${i} does not have ${P} values`);
      }
      row.forEach((x: unknown, j: number) => {
        if (x === null) {
          missing[i * P + j] = 1;
          values[i * P + j] = NaN;
        } else {
          values[i * P + j] = jsonNumber(x);
        }
      });
    });
  } else {
    throw new Error(`${route}: no values`);
  }
  markPairs(raw.no_update, missing, S, P); // update_ratios: parameters without an update
  markPairs(raw.not_measured, missing, S, P); // layer_values: layers not measured
  const zeroWeight = new Uint8Array(S * P);
  markPairs(raw.zero_weight, zeroWeight, S, P);
  // The JSON format writes null for both: a zero weight is not "no update".
  for (let k = 0; k < zeroWeight.length; k++) if (zeroWeight[k]) missing[k] = 0;
  return {
    run: String(raw.run ?? ""),
    tag: String(raw.tag ?? ""),
    steps,
    wallTimes,
    names,
    values,
    missing,
    zeroWeight,
    nonFinite: typeof raw.non_finite === "number" ? raw.non_finite : 0,
    warnings: Array.isArray(raw.warnings) ? raw.warnings.map(String) : [],
    quantity,
  };
}

/** Set mask[i * P + j] for each [step index i, row index j] pair in range. */
function markPairs(pairs: unknown, mask: Uint8Array, S: number, P: number): void {
  if (!Array.isArray(pairs)) return;
  for (const pair of pairs) {
    if (!Array.isArray(pair)) continue;
    const i = Number(pair[0]);
    const j = Number(pair[1]);
    if (Number.isInteger(i) && Number.isInteger(j) && i >= 0 && i < S && j >= 0 && j < P) {
      mask[i * P + j] = 1;
    }
  }
}

/** "label (unit)", or the label alone when there is no unit. */
export function quantityTitle(q: Quantity): string {
  return q.unit ? `${q.label} (${q.unit})` : q.label;
}
