"""Pixels of a screenshot, for tests that assert what a picture shows (not its byte size).

`screenshot_rgb(page, png, points)` decodes a screenshot's PNG bytes in the browser
(createImageBitmap: no imaging library is a dependency, no URL for a content security
policy to refuse) and reads the RGB at each (x, y) point, in the screenshot's pixels.
`point_in(box, origin, fx, fy)` is the point at fraction (fx, fy) of an element's
bounding box within a screenshot taken of the element whose box is `origin`.
"""

from __future__ import annotations

import base64

_READ = """
async ([b64, points]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  return points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
}
"""


def screenshot_rgb(page, png: bytes, points: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """The RGB of `png` (a screenshot) at each (x, y) of `points`."""
    encoded = base64.b64encode(png).decode("ascii")
    values = page.evaluate(_READ, [encoded, [[int(x), int(y)] for x, y in points]])
    return [tuple(int(c) for c in v) for v in values]


def point_in(box: dict, origin: dict, fx: float, fy: float) -> tuple[int, int]:
    """The point at fraction (fx, fy) of `box`, in a screenshot of the element at `origin`."""
    return (
        int(box["x"] - origin["x"] + fx * box["width"]),
        int(box["y"] - origin["y"] + fy * box["height"]),
    )


def close_to(rgb: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    """Whether every channel of `rgb` is within `tolerance` levels of `expected`."""
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def hex_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b)."""
    return tuple(int(color[k : k + 2], 16) for k in (1, 3, 5))
