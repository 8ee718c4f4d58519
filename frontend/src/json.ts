// Reading the plugin's responses: fetch text or JSON (same origin), check a value's shape,
// and read numbers as the routes spell them. Shared by every kind's api module.

/**
 * The last body of each URL with its ETag, so that a reload asks `If-None-Match` and a
 * `304 Not Modified` costs no body. The browser's HTTP cache would do this by itself, but it
 * keeps no large bodies (10 MB of update ratios) in a private window or a small cache; this
 * keeps them, least recently used dropped beyond `REMEMBERED_CHARS` in all.
 */
interface Remembered {
  etag: string;
  text: string;
  /** The parsed JSON, once parsed: a 304 gives the very same object back. */
  json?: unknown;
}

const REMEMBERED_CHARS = 96 * 1024 * 1024;
const remembered = new Map<string, Remembered>();
let rememberedChars = 0;

function remember(url: string, entry: Remembered): void {
  forget(url);
  remembered.set(url, entry);
  rememberedChars += entry.text.length;
  for (const [oldest, old] of remembered) {
    if (rememberedChars <= REMEMBERED_CHARS || oldest === url) break;
    remembered.delete(oldest);
    rememberedChars -= old.text.length;
  }
}

function forget(url: string): void {
  const old = remembered.get(url);
  if (old === undefined) return;
  remembered.delete(url);
  rememberedChars -= old.text.length;
}

let requestsInFlight = 0;
/** How long after being asked `requestsSettled` looks: the views ask for data a frame later. */
const SETTLE_LOOK_MS = 150;
let settledWaiters: Array<() => void> = [];

/**
 * Resolves once no request of this module is in flight (or after `maxWaitMs`): the tab
 * builds its lower sections then, so that the first one's data comes first.
 */
export function requestsSettled(maxWaitMs: number): Promise<void> {
  return new Promise((resolve) => {
    window.setTimeout(() => {
      if (requestsInFlight === 0) return resolve();
      const timer = window.setTimeout(done, maxWaitMs);
      function done(): void {
        window.clearTimeout(timer);
        settledWaiters = settledWaiters.filter((w) => w !== done);
        resolve();
      }
      settledWaiters.push(done);
    }, SETTLE_LOOK_MS);
  });
}

/** GET `url` (revalidating what was remembered); the entry it answered with. */
async function getEntry(url: string): Promise<Remembered> {
  requestsInFlight++;
  try {
    return await getEntryNow(url);
  } finally {
    requestsInFlight--;
    if (requestsInFlight === 0) for (const waiter of [...settledWaiters]) waiter();
  }
}

async function getEntryNow(url: string): Promise<Remembered> {
  const known = remembered.get(url);
  const headers: Record<string, string> = known ? { "If-None-Match": known.etag } : {};
  const response = await fetch(url, { credentials: "same-origin", headers });
  if (response.status === 304 && known) {
    await response.arrayBuffer(); // the empty body: read, so the request ends cleanly
    remembered.delete(url); // most recently used again
    remembered.set(url, known);
    return known;
  }
  const text = await response.text();
  if (!response.ok) {
    forget(url);
    const contentType = response.headers.get("Content-Type") ?? "";
    throw new Error(errorMessage(response.status, response.statusText, contentType, text));
  }
  const etag = response.headers.get("ETag");
  const entry: Remembered = { etag: etag ?? "", text };
  if (etag) remember(url, entry);
  else forget(url);
  return entry;
}

/** The most of an error body shown (the plugin caps what it echoes; this caps the rest). */
const MAX_ERROR_CHARS = 2000;

/**
 * What the tab says of an HTTP error response: the plugin's errors are plain text a person can
 * act on, shown as they are ("HTTP 404: tag 'x' of run 'y' has no step 5..."). A body that is
 * HTML (a proxy's or a server's error page) is never shown as markup or source: the status
 * alone is ("the server answered HTTP 502 Bad Gateway").
 */
export function errorMessage(
  status: number,
  statusText: string,
  contentType: string,
  body: string,
): string {
  const text = body.trim();
  const html = /html|xml/i.test(contentType) || looksLikeHtml(text);
  const answered = `the server answered HTTP ${status}${statusText ? ` ${statusText}` : ""}`;
  if (html || text === "") return answered;
  const shown = text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text;
  return `HTTP ${status}: ${shown}`;
}

/** What the tab shows of a failed request or a decoding error: its message, no "Error:". */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether a body is markup (an error page), by its start: the plugin's text never starts so. */
function looksLikeHtml(text: string): boolean {
  return /^\s*<[!?a-z]/i.test(text);
}

/** What the tab says of a 200 whose body is not JSON: never the markup of an HTML page. */
export function notJsonMessage(url: string, body: string): string {
  const route = url.replace(/^\.\//, "").split("?")[0];
  if (looksLikeHtml(body)) return `${route} answered an HTML page, not JSON`;
  const start = body.trim().slice(0, 200);
  return `${route} did not return JSON${start ? `: ${start}` : " (an empty body)"}`;
}

/** GET `url`; an HTTP error becomes an Error with the plugin's message (plain text). */
export async function getText(url: string): Promise<string> {
  return (await getEntry(url)).text;
}

/**
 * GET `url` and parse it as JSON. When the server says the body has not changed (304), the
 * object parsed the last time comes back (`===`), so a caller can tell and skip its work.
 */
export async function getJson(url: string): Promise<unknown> {
  const entry = await getEntry(url);
  if (entry.json !== undefined) return entry.json;
  try {
    const json = JSON.parse(entry.text) as unknown;
    if (entry.etag) entry.json = json;
    return json;
  } catch {
    throw new Error(notJsonMessage(url, entry.text));
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
