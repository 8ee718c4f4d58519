// The plugin's core HTTP routes (docs/http_api.md): the tag list and the kind registry.
// Each kind's data routes are in its own folder. URLs are relative: the tab runs in an
// iframe whose <base href="plugin/deepscope/"> points at the plugin's routes.

import { getJson, isRecord } from "./json";

export interface TagInfo {
  /** The series' kind ("update_ratios", "spectrum", ...; "unknown" when unreadable). */
  kind: string;
  /** Row names (an update-ratio series' parameters) when the tags route lists them. */
  names?: string[];
  /** Set instead of the data when the series' metadata cannot be read (e.g. a newer schema). */
  error?: string;
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
      if (Array.isArray(info.names)) entry.names = info.names.map(String);
      if (info.error !== undefined && info.error !== null) entry.error = String(info.error);
      byTag.set(tag, entry);
    }
    index.set(run, byTag);
  }
  return index;
}

/** A kind the plugin serves, as the `kinds` route lists it (in the tab's section order). */
export interface KindInfo {
  name: string;
  /** Section heading, e.g. "Singular value spectra". */
  title: string;
  /** One line under the heading: what the section answers. */
  subtitle: string;
  /** How TensorBoard stores it, e.g. "DATA_CLASS_TENSOR" (as the route sends it). */
  dataClass: string;
}

/** The `kinds` route: the plugin's kinds in order. */
export async function fetchKinds(): Promise<KindInfo[]> {
  return parseKinds(await getJson("./kinds"));
}

/** Validate a response of `kinds`; entries without a string name are left out. */
export function parseKinds(raw: unknown): KindInfo[] {
  if (!Array.isArray(raw)) throw new Error("./kinds: expected a list of kinds");
  const kinds: KindInfo[] = [];
  const seen = new Set<string>();
  for (const item of raw) {
    if (!isRecord(item) || typeof item.name !== "string" || seen.has(item.name)) continue;
    seen.add(item.name);
    kinds.push({
      name: item.name,
      title: typeof item.title === "string" && item.title !== "" ? item.title : item.name,
      subtitle: typeof item.subtitle === "string" ? item.subtitle : "",
      dataClass: item.data_class === undefined ? "" : String(item.data_class),
    });
  }
  return kinds;
}
