"""Warnings from inside the optimizer's hooks, which must never stop training.

A script (or pytest's `filterwarnings = error`) may turn warnings into
exceptions; raised from an optimizer hook, one would end the training the
monitor watches. `warn_from_hook` warns as usual and swallows that exception.

Where the warning points: the first frame outside deepscope and torch, which
for a measurer's warning is the user's `optimizer.step()` line (the hooks run
inside torch's step wrapper), and for a direct call the user's own call.
"""

from __future__ import annotations

import sys
import warnings

_SKIPPED = ("deepscope.", "torch.")


def _stacklevel_outside() -> int:
    """The `stacklevel` for `warnings.warn` in `warn_from_hook` that points at the first
    frame outside deepscope and torch."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_SKIPPED):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 2


def warn_from_hook(message: str, stacklevel: int | None = None) -> None:
    """`warnings.warn(message, RuntimeWarning)`, except that it never raises.

    stacklevel: as for `warnings.warn`, counted from the caller; None (the
    default) points at the first frame outside deepscope and torch.
    """
    try:
        level = _stacklevel_outside() if stacklevel is None else stacklevel + 1
        warnings.warn(message, RuntimeWarning, stacklevel=level)
    except Exception:  # a filter made it an error: the message is in monitor.stats anyway
        pass
