"""TensorBoard's page with the deepscope tab open, in Debian's Chromium driven by Playwright.

Also the tab's `tooltip_fields` and `screenshot`, shared by the kinds' browser tests.
"""

from __future__ import annotations

import os
import shutil
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


def tooltip_fields(frame) -> dict[str, str]:
    """The fields of the tab's tooltip once it shows: data-field → text."""
    tooltip = frame.locator("[data-testid=tooltip]")
    tooltip.wait_for(state="visible", timeout=TIMEOUT_MS)
    fields = tooltip.locator("[data-field]")
    return {
        fields.nth(k).get_attribute("data-field"): fields.nth(k).inner_text()
        for k in range(fields.count())
    }


def screenshot(locator, tmp_path: Path, name: str, min_bytes: int) -> Path:
    """A picture of `locator`, at least `min_bytes` (not blank).

    With DEEPSCOPE_SCREENSHOTS=1 it also becomes the README's picture, docs/images/<name>.
    """
    out = tmp_path / name
    locator.screenshot(path=str(out))
    assert out.stat().st_size > min_bytes
    if os.environ.get("DEEPSCOPE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, IMAGES / name)
    return out
