// json.ts: what the tab says of an error response (plain text as it is, never HTML), and
// how the routes' JSON numbers read.

import assert from "node:assert/strict";
import { test } from "node:test";
import { errorMessage, jsonNumber, notJsonMessage, numbers } from "../src/json";

test("a plain-text error is shown as the plugin wrote it, with its status", () => {
  const text = "tag 'loss' of run 'a' has no step 5; nearest kept steps: 0, 10";
  assert.equal(errorMessage(404, "NOT FOUND", "text/plain; charset=utf-8", `${text}\n`), `HTTP 404: ${text}`);
  assert.equal(errorMessage(400, "BAD REQUEST", "", "bad"), "HTTP 400: bad");
});

test("an HTML error page is never shown: the status says what happened", () => {
  const page =
    '<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>';
  for (const [type, body] of [
    ["text/html; charset=utf-8", page],
    ["text/plain", page], // markup even when labelled text
    ["", "<html><body>Bad gateway</body></html>"],
    ["application/xhtml+xml", "nothing"],
  ]) {
    const message = errorMessage(502, "Bad Gateway", type, body);
    assert.equal(message, "the server answered HTTP 502 Bad Gateway");
    assert.doesNotMatch(message, /</);
  }
});

test("an empty error body names the status (and its text when there is one)", () => {
  assert.equal(errorMessage(503, "Service Unavailable", "text/plain", "  "), "the server answered HTTP 503 Service Unavailable");
  assert.equal(errorMessage(422, "", "text/plain", ""), "the server answered HTTP 422");
});

test("a long error body is cut at 2000 characters", () => {
  const message = errorMessage(422, "", "text/plain", "x".repeat(5000));
  assert.equal(message, `HTTP 422: ${"x".repeat(2000)}…`);
});

test("a 200 that is not JSON: the route and the start of the body, never markup", () => {
  assert.equal(
    notJsonMessage("./saliency?run=a&tag=b", "<!DOCTYPE html><p>login</p>"),
    "saliency answered an HTML page, not JSON",
  );
  assert.equal(notJsonMessage("./tags", "oops"), "tags did not return JSON: oops");
  assert.equal(notJsonMessage("./tags", ""), "tags did not return JSON (an empty body)");
});

test("JSON numbers: numbers, and NaN / ±Infinity spelled out", () => {
  assert.equal(jsonNumber(1.5), 1.5);
  assert.equal(jsonNumber("Infinity"), Infinity);
  assert.equal(jsonNumber("-Infinity"), -Infinity);
  assert.ok(Number.isNaN(jsonNumber("NaN")));
  assert.ok(Number.isNaN(jsonNumber(null)));
  assert.deepEqual(numbers([1, "2", 3]), [1, 2, 3]);
  assert.deepEqual(numbers("not a list"), []);
});
