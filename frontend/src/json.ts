// Reading the plugin's responses: fetch text or JSON (same origin), check a value's shape,
// and read numbers as the routes spell them. Shared by every kind's api module.

/** GET `url`; an HTTP error becomes an Error with the plugin's message (plain text). */
export async function getText(url: string): Promise<string> {
  const response = await fetch(url, { credentials: "same-origin" });
  const text = await response.text();
  if (!response.ok) {
    const body = text.trim() || response.statusText || "no message";
    // The plugin's errors are plain text a person can act on: show them as they are.
    throw new Error(`HTTP ${response.status}: ${body}`);
  }
  return text;
}

/** GET `url` and parse it as JSON. */
export async function getJson(url: string): Promise<unknown> {
  const text = await getText(url);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`${url} did not return JSON: ${text.slice(0, 200)}`);
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `value` as an object, or an error naming `what` (a route) when it is not one. */
export function expectRecord(value: unknown, what: string): Record<string, unknown> {
  if (!isRecord(value)) throw new Error(`${what}: expected an object`);
  return value;
}

/** A JSON number of the routes: numbers, or "NaN" / "Infinity" / "-Infinity" spelled out. */
export function jsonNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return NaN;
}

/** A JSON list as numbers ([] when it is not a list). */
export function numbers(value: unknown): number[] {
  return Array.isArray(value) ? value.map(Number) : [];
}
