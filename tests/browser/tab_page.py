"""TensorBoard's page with the deepscope tab open, in Debian's Chromium driven by Playwright.

Also the tab's `tooltip_fields`, `screenshot` (a `Picture` to assert what it shows) and
`canvas_rgb`, shared by the kinds' browser tests.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 30_000
# Shorter than the tab's refresh period (RELOAD_MS = 30 s in frontend/src/app.ts): a view
# that shows new data only at the next refresh fails a wait this long.
BEFORE_THE_NEXT_REFRESH_MS = 15_000
UNIT_BOX = {"x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0}
"""A box whose points are fractions of a target's own (`hover_point`)."""
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


class Tab:
    """TensorBoard's page with the deepscope tab open, and what went wrong in it."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("console", self._on_console)

    def _on_console(self, message):
        text = message.text
        # A CSP violation or an error the tab logs; TensorBoard's own warnings are not ours.
        if message.type == "error" and ("Content Security Policy" in text or "deepscope" in text):
            self.errors.append(f"console: {text}")

    def open(self, base_url: str):
        self.page.goto(f"{base_url}/#deepscope")
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('iframe')]"
            ".some(f => f.src.includes('plugin_entry.html?name=deepscope'))",
            timeout=TIMEOUT_MS,
        )
        frame = None
        for _ in range(300):
            frame = next(
                (f for f in self.page.frames if "plugin_entry.html?name=deepscope" in f.url), None
            )
            if frame is not None:
                break
            self.page.wait_for_timeout(100)
        assert frame is not None, "the deepscope tab's iframe never appeared"
        self.frame = frame
        return frame


def fold_findings(frame) -> None:
    """Fold the tab's Findings section (its first), for tests of the sections below it
    that point the mouse at fixed places or need them near the top of the window."""
    head = frame.locator("[data-testid=section-findings] > summary")
    head.wait_for(state="visible", timeout=TIMEOUT_MS)
    head.click()
    frame.wait_for_function(
        "() => !document.querySelector('[data-testid=section-findings]').open",
        timeout=TIMEOUT_MS,
    )


def hover_point(
    tab, target, x_fraction: float, y_fraction: float, expect: dict[str, str] | None = None
) -> dict[str, str]:
    """Point the mouse at (x_fraction, y_fraction) of `target`'s box; the tooltip's fields.

    The box is read afresh and the move repeated (after leaving the page's corner) while
    the tooltip does not show, or shows other values than `expect` (fields that name the
    point aimed at, e.g. its step and layer): a card that loads or grows between reading
    the box and moving the mouse moves the target from under it, and a still mouse sends
    no more events. Past the deadline the last fields are returned, for the caller's
    asserts to show.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    tooltip = tab.frame.locator("[data-testid=tooltip]")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        target.scroll_into_view_if_needed(timeout=TIMEOUT_MS)
        box = target.bounding_box()
        x = box["x"] + x_fraction * box["width"]
        y = box["y"] + y_fraction * box["height"]
        tab.page.mouse.move(x, y)
        try:
            tooltip.wait_for(state="visible", timeout=3_000)
            fields = tooltip_fields(tab.frame)
            if not expect or all(fields.get(k) == v for k, v in expect.items()):
                return fields
            if time.monotonic() > deadline:
                return fields
        except PlaywrightTimeoutError:
            if time.monotonic() > deadline:
                raise
        tab.page.mouse.move(1, 1)


def tooltip_fields(frame) -> dict[str, str]:
    """The fields of the tab's tooltip once it shows: data-field → text."""
    tooltip = frame.locator("[data-testid=tooltip]")
    tooltip.wait_for(state="visible", timeout=TIMEOUT_MS)
    fields = tooltip.locator("[data-field]")
    return {
        fields.nth(k).get_attribute("data-field"): fields.nth(k).inner_text()
        for k in range(fields.count())
    }


# Decodes a PNG in the page (createImageBitmap: no imaging library needed) and reads it:
# the RGB at each point, and how many pixels are within a tolerance of each colour.
_PICTURE_SCRIPT = """
async ([b64, points, colours]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const data = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const at = points.map(([x, y]) => {
    const k = 4 * (y * bitmap.width + x);
    return [data[k], data[k + 1], data[k + 2]];
  });
  const counts = colours.map(([r, g, b, tol]) => {
    let n = 0;
    for (let k = 0; k < data.length; k += 4) {
      if (Math.abs(data[k] - r) <= tol && Math.abs(data[k + 1] - g) <= tol &&
          Math.abs(data[k + 2] - b) <= tol) n++;
    }
    return n;
  });
  return { size: [bitmap.width, bitmap.height], at, counts };
}
"""


class Picture:
    """A screenshot's pixels, addressed in page coordinates (CSS px; device scale 1).

    `origin` is where the picture's top-left pixel sits on the page, so a locator's
    `bounding_box()` (taken after the screenshot, which scrolls it into view) finds its
    pixels: `picture.rgb(x, y)`. The PNG is decoded by `page` (any page of the browser).
    """

    def __init__(self, page, path: Path, origin: tuple[float, float] = (0.0, 0.0)):
        self.page = page
        self.path = path
        self.origin = origin
        self._b64 = base64.b64encode(path.read_bytes()).decode("ascii")
        self.size: tuple[int, int] = tuple(self._read([], [])["size"])

    def _read(self, points, colours) -> dict:
        return self.page.evaluate(_PICTURE_SCRIPT, [self._b64, points, colours])

    def inside(self, x: float, y: float) -> bool:
        """Whether page point (x, y) is in the picture."""
        px, py = x - self.origin[0], y - self.origin[1]
        return 0 <= px < self.size[0] and 0 <= py < self.size[1]

    def rgbs(self, points: list[tuple[float, float]]) -> list[tuple[int, int, int]]:
        """The colour at each page point (x, y)."""
        pixels = []
        for x, y in points:
            assert self.inside(x, y), f"({x}, {y}) is outside the picture"
            pixels.append([int(x - self.origin[0]), int(y - self.origin[1])])
        return [tuple(rgb) for rgb in self._read(pixels, [])["at"]]

    def rgb(self, x: float, y: float) -> tuple[int, int, int]:
        """The colour at page point (x, y)."""
        return self.rgbs([(x, y)])[0]

    def count(self, rgb: tuple[int, int, int], tolerance: int = 0) -> int:
        """How many pixels are `rgb`, each channel within `tolerance`."""
        return int(self._read([], [[*rgb, tolerance]])["counts"][0])


def css_rgb(color: str) -> tuple[int, int, int]:
    """A CSS colour as the browser reports it ("#rrggbb" or "rgb(r, g, b)") → (r, g, b)."""
    color = color.strip()
    if color.startswith("#") and len(color) == 7:
        return tuple(int(color[k : k + 2], 16) for k in (1, 3, 5))
    inside = color[color.index("(") + 1 : color.index(")")]
    r, g, b = (int(float(part)) for part in inside.split(",")[:3])
    return r, g, b


def screenshot(locator, tmp_path: Path, name: str, min_bytes: int | None = None) -> Picture:
    """A picture of `locator`, for the caller to assert what it shows (`Picture`).

    `min_bytes`, when given, is a floor on the file's size (not blank). With
    DEEPSCOPE_SCREENSHOTS=1 it also becomes the README's picture, docs/images/<name>.
    """
    out = tmp_path / name
    locator.screenshot(path=str(out))
    if min_bytes is not None:
        assert out.stat().st_size > min_bytes
    if os.environ.get("DEEPSCOPE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, IMAGES / name)
    box = locator.bounding_box()
    return Picture(locator.page, out, (box["x"], box["y"]) if box else (0.0, 0.0))


def canvas_rgb(canvas, x: float, y: float) -> tuple[int, int, int]:
    """The colour a <canvas> locator painted at page point (x, y) (its own pixels, dpr 1)."""
    box = canvas.bounding_box()
    r, g, b, _ = canvas.evaluate(
        "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
        [int(x - box["x"]), int(y - box["y"])],
    )
    return r, g, b


# Recorded in every frame from its start: the long tasks (> 50 ms) of its event loop.
LONG_TASKS_SCRIPT = """
window.__dsLongTasks = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__dsLongTasks.push({ start: e.startTime, duration: e.duration, name: e.name });
    }
  }).observe({ type: "longtask", buffered: true });
} catch (e) {}
"""


def record_long_tasks(context) -> None:
    """Make every frame of `context`'s pages record its long tasks (call before opening)."""
    context.add_init_script(LONG_TASKS_SCRIPT)


def long_tasks_ms(frame, own: bool = False) -> list[float]:
    """Durations (ms) of the long tasks `frame` saw, longest first.

    A same-origin frame shares its page's event loop, so it also sees the page's
    (TensorBoard's) tasks; `own=True` keeps those its own scripts ran ("self").
    """
    tasks = frame.evaluate("() => window.__dsLongTasks || []")
    return sorted(
        (float(t["duration"]) for t in tasks if not own or t.get("name") == "self"), reverse=True
    )


class NetworkMeter:
    """Bytes on the wire per response, from Chromium's DevTools protocol.

    `encodedDataLength` of `Network.loadingFinished` counts what came over the
    network (headers and the encoded body); a 304 counts its headers only. The
    tab's iframe is same-origin, so its requests are the page's.
    """

    def __init__(self, page):
        self.responses: list[dict] = []
        self._page = page
        self._pending: dict[str, dict] = {}
        self._in_flight: dict[str, float] = {}  # request id -> when it was sent (s)
        self._last_activity = time.monotonic()
        self._cdp = page.context.new_cdp_session(page)
        self._cdp.on("Network.requestWillBeSent", self._on_request)
        self._cdp.on("Network.responseReceived", self._on_response)
        self._cdp.on("Network.loadingFinished", self._on_finished)
        self._cdp.on("Network.loadingFailed", self._on_failed)
        self._cdp.send("Network.enable")

    def _on_request(self, event) -> None:
        if "/data/plugin/deepscope/" in event["request"]["url"]:
            self._in_flight[event["requestId"]] = time.monotonic()
            self._last_activity = time.monotonic()

    def _on_failed(self, event) -> None:
        entry = self._pending.pop(event["requestId"], None)
        if self._in_flight.pop(event["requestId"], None) is not None:
            self._last_activity = time.monotonic()
        if entry is not None:  # e.g. a 304 whose (empty) body the page never read
            entry["failed"] = event.get("errorText", "")
            self.responses.append(entry)

    def wait_quiet(self, quiet_ms: int = 1000, timeout_ms: int = 60_000) -> None:
        """Wait until none of the plugin's requests is in flight and none began for `quiet_ms`."""
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            self._page.wait_for_timeout(100)  # lets Playwright deliver the events
            idle = time.monotonic() - self._last_activity
            if not self._in_flight and idle * 1000 >= quiet_ms:
                return
        raise TimeoutError(f"the tab's requests never settled: {len(self._in_flight)} in flight")

    def _on_response(self, event) -> None:
        response = event["response"]
        self._pending[event["requestId"]] = {
            "url": response["url"],
            "status": response["status"],
            "from_cache": bool(response.get("fromDiskCache") or response.get("fromMemoryCache")),
            "request_headers": response.get("requestHeaders") or {},
            "bytes": int(response.get("encodedDataLength") or 0),  # so far: the headers
        }

    def _on_finished(self, event) -> None:
        entry = self._pending.pop(event["requestId"], None)
        if self._in_flight.pop(event["requestId"], None) is not None:
            self._last_activity = time.monotonic()
        if entry is not None:
            entry["bytes"] = int(event["encodedDataLength"])
            self.responses.append(entry)

    def mark(self) -> int:
        """A point in the record: `since(mark)` gives what finished after it."""
        return len(self.responses)

    def since(self, mark: int, path: str = "/data/plugin/deepscope/") -> list[dict]:
        """Responses of the plugin's routes finished since `mark`."""
        return [r for r in self.responses[mark:] if path in r["url"]]
