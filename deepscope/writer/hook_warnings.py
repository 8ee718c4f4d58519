"""Warnings from inside the optimizer's hooks, which must never stop training.

A script (or pytest's `filterwarnings = error`) may turn warnings into
exceptions; raised from an optimizer hook, one would end the training the
monitor watches. `warn_from_hook` warns as usual and swallows that exception.
"""

from __future__ import annotations

import warnings


def warn_from_hook(message: str, stacklevel: int = 2) -> None:
    """`warnings.warn(message, RuntimeWarning)`, except that it never raises."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
    except Exception:  # a filter made it an error: the message is in monitor.stats anyway
        pass
