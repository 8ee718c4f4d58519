"""Run colours stay apart for 50 runs (issue 9 §4: seven colours repeated past 7 runs).

Reads the colours from frontend/src/palette.ts and checks them in CIELAB (sRGB D65,
closed form), independently of how they were picked.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

PALETTE = Path(__file__).resolve().parents[2] / "frontend" / "src" / "palette.ts"
# TensorBoard's default run palette (tensorboard/webapp/runs/store: the scalar dashboard's).
TENSORBOARD = ["#425066", "#12b5cb", "#e52592", "#f9ab00", "#9334e6", "#7cb342", "#e8710a"]


def _array(name: str) -> list[str]:
    text = PALETTE.read_text(encoding="utf-8")
    body = re.search(rf"export const {name}: readonly string\[\] = \[(.*?)\];", text, re.S)
    assert body, f"{name} not found in {PALETTE}"
    return re.findall(r'"(#[0-9a-f]{6})"', body.group(1))


def run_colors() -> list[str]:
    return _array("TENSORBOARD_RUN_COLORS") + _array("RUN_COLORS")


def srgb_to_lab(hex_colors: list[str]) -> np.ndarray:
    rgb = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in hex_colors]) / 255.0
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]]
    )  # fmt: skip
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return np.stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1
    )


def test_fifty_runs_get_fifty_distinct_colours_starting_with_tensorboards():
    colors = run_colors()
    assert len(colors) == 50
    assert colors[:7] == TENSORBOARD
    assert len(set(colors)) == 50


def test_any_two_of_the_fifty_are_far_apart_in_cielab():
    lab = srgb_to_lab(run_colors())
    distance = np.linalg.norm(lab[:, None, :] - lab[None, :, :], axis=-1)
    np.fill_diagonal(distance, np.inf)
    # ΔE76 ≈ 2.3 is a just-noticeable difference; 20 is clearly another colour.
    assert distance.min() >= 20.0, distance.min()


def test_run_colours_are_readable_on_white():
    lightness = srgb_to_lab(run_colors())[:, 0]
    assert lightness.max() <= 80.0  # TensorBoard's yellow is the lightest
