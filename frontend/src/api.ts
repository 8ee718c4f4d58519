// The plugin's HTTP routes (docs/http_api.md). URLs are relative: the tab runs in an
// iframe whose <base href="plugin/deepscope/"> points at the plugin's routes.

import { decodeBase64Float32 } from "./binary";
import { getJson, isRecord, jsonNumber } from "./json";

export interface TagInfo {
  kind: string;
  version?: number;
  names?: string[];
  /** Set instead of the data when the tag cannot be read (e.g. a newer schema). */
  error?: string;
  /**
   * The kind's constant facts as the tags route sends them, e.g. a spectrum's
   * weight_shape and layer_kind, or a saliency series' method and input_shape.
   */
  details?: Record<string, unknown>;
}

/** run -> tag -> info, in the route's order. Maps, so a run or tag may be named anything
 * (`__proto__`, `constructor`, `hasOwnProperty`). */
export type TagMap = Map<string, Map<string, TagInfo>>;

/** Own entries of a parsed JSON object, `__proto__` included (JSON.parse makes it an own key). */
function ownEntries(value: Record<string, unknown>): Array<[string, unknown]> {
  return Object.keys(value).map((key) => [key, value[key]]);
}

/** The `tags` route as Maps. */
export async function fetchTagMap(): Promise<TagMap> {
  return parseTags(await getJson("./tags"));
}

/** Validate a response of `tags` into run -> tag -> info Maps. */
export function parseTags(raw: unknown): TagMap {
  if (!isRecord(raw)) throw new Error("./tags: expected an object of runs");
  const index: TagMap = new Map();
  for (const [run, tags] of ownEntries(raw)) {
    if (!isRecord(tags)) continue;
    const byTag = new Map<string, TagInfo>();
    for (const [tag, info] of ownEntries(tags)) {
      if (!isRecord(info)) {
        byTag.set(tag, { kind: "unknown", error: "malformed tag entry" });
        continue;
      }
      const entry: TagInfo = { kind: typeof info.kind === "string" ? info.kind : "unknown" };
      if (typeof info.version === "number") entry.version = info.version;
      if (Array.isArray(info.names)) entry.names = info.names.map(String);
      if (info.error !== undefined && info.error !== null) entry.error = String(info.error);
      const details: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      let hasDetails = false;
      for (const [key, value] of ownEntries(info)) {
        if (!["kind", "version", "names", "error"].includes(key)) {
          details[key] = value;
          hasDetails = true;
        }
      }
      if (hasDetails) entry.details = details;
      byTag.set(tag, entry);
    }
    index.set(run, byTag);
  }
  return index;
}

export interface UpdateRatios {
  run: string;
  tag: string;
  steps: number[];
  wallTimes: number[];
  names: string[];
  /** steps.length x names.length, row-major: value(i, j) = values[i * names.length + j]. */
  values: Float32Array;
  /** 1 where parameter j got no update at step i (its value is NaN and means nothing). */
  noUpdate: Uint8Array;
  /**
   * 1 where parameter j's weight was exactly zero before step i (a fresh bias at step 0):
   * ‖ΔW‖/‖W‖ is undefined there, not a numerical fault. All 0 when the route omits it.
   */
  zeroWeight: Uint8Array;
  /** Non-finite values the route counted (zero-weight cells are not among them). */
  nonFinite: number;
  warnings: string[];
}

export async function fetchUpdateRatios(run: string, tag: string): Promise<UpdateRatios> {
  const params = new URLSearchParams({ run, tag, format: "base64" });
  return parseUpdateRatios(await getJson(`./update_ratios?${params.toString()}`));
}

/** Parsed responses by the JSON object they came from (an unchanged reload gives the same one). */
const parsedRatios = new WeakMap<object, UpdateRatios>();

/**
 * Validate a response of `update_ratios` (either format) into typed arrays. The same JSON
 * object (a reload answered 304 Not Modified) gives the same result, so nothing redraws.
 */
export function parseUpdateRatios(raw: unknown): UpdateRatios {
  if (!isRecord(raw)) throw new Error("update_ratios: expected an object");
  const known = parsedRatios.get(raw);
  if (known) return known;
  const parsed = parseUpdateRatiosObject(raw);
  parsedRatios.set(raw, parsed);
  return parsed;
}

function parseUpdateRatiosObject(raw: Record<string, unknown>): UpdateRatios {
  const steps = Array.isArray(raw.steps) ? raw.steps.map(Number) : [];
  const names = Array.isArray(raw.names) ? raw.names.map(String) : [];
  const wallTimes = Array.isArray(raw.wall_times) ? raw.wall_times.map(Number) : [];
  const S = steps.length;
  const P = names.length;
  const noUpdate = new Uint8Array(S * P);
  let values: Float32Array;
  const v = raw.values;
  if (isRecord(v) && typeof v.base64 === "string") {
    if (v.dtype !== undefined && v.dtype !== "float32") {
      throw new Error(`update_ratios: unsupported dtype ${String(v.dtype)}`);
    }
    if (Array.isArray(v.shape) && (Number(v.shape[0]) !== S || Number(v.shape[1] ?? P) !== P)) {
      throw new Error(
        `update_ratios: shape [${v.shape.join(", ")}] does not match ${S} steps x ${P} names`,
      );
    }
    values = decodeBase64Float32(v.base64, S * P, "values");
  } else if (Array.isArray(v)) {
    if (v.length !== S) throw new Error(`update_ratios: ${v.length} rows for ${S} steps`);
    values = new Float32Array(S * P);
    v.forEach((row: unknown, i: number) => {
      if (!Array.isArray(row) || row.length !== P) {
        throw new Error(`update_ratios: row ${i} does not have ${P} values`);
      }
      row.forEach((x: unknown, j: number) => {
        if (x === null) {
          noUpdate[i * P + j] = 1;
          values[i * P + j] = NaN;
        } else {
          values[i * P + j] = jsonNumber(x);
        }
      });
    });
  } else {
    throw new Error("update_ratios: no values");
  }
  markPairs(raw.no_update, noUpdate, S, P);
  const zeroWeight = new Uint8Array(S * P);
  markPairs(raw.zero_weight, zeroWeight, S, P);
  // The JSON format writes null for both: a zero weight is not "no update".
  for (let k = 0; k < zeroWeight.length; k++) if (zeroWeight[k]) noUpdate[k] = 0;
  return {
    run: String(raw.run ?? ""),
    tag: String(raw.tag ?? ""),
    steps,
    wallTimes,
    names,
    values,
    noUpdate,
    zeroWeight,
    nonFinite: typeof raw.non_finite === "number" ? raw.non_finite : 0,
    warnings: Array.isArray(raw.warnings) ? raw.warnings.map(String) : [],
  };
}

/** Set mask[i * P + j] for each [step index i, parameter index j] pair in range. */
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
