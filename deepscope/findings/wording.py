"""How findings write numbers and step ranges: short, and the same in every rule."""

from __future__ import annotations

import math


def num(value: float) -> str:
    """3 significant digits: 0.0321 → "0.0321", 3.2e-05 → "3.2e-05", 12345 → "1.23e+04"."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e4:
        return f"{value:.3g}"
    return f"{value:.2e}"


def times(value: float) -> str:
    """A factor: 32.4 → "32×", 2.46 → "2.5×"."""
    return f"{value:.0f}×" if value >= 10 else f"{value:.2g}×"


def steps(first: int, last: int) -> str:
    """ "step 40" or "steps 40–900"."""
    return f"step {first}" if first == last else f"steps {first}–{last}"


def share(count: int, total: int) -> str:
    """ "18 of the last 20"."""
    return f"{count} of the last {total}"
