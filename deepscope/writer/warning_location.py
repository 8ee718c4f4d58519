"""Where a deepscope warning points: the user's line, not deepscope's own."""

from __future__ import annotations

import sys


def stacklevel_outside_deepscope() -> int:
    """The `stacklevel` for `warnings.warn` in this function's caller that points at the first
    frame outside the deepscope package (the user's call, however deep inside deepscope the
    warning is raised)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("deepscope."):
        frame, level = frame.f_back, level + 1
    return level
