"""Run and tag names that TensorBoard's fast data server cannot read blob series of.

TensorBoard's Rust data server (tensorboard-data-server 0.7.2, the default
`--load_fast=true` on Linux) cannot parse its own blob key when the run or
tag name contains `"`, `\\`, a newline, a tab or another control character:
every read of a blob-sequence series (spectra, correlations, saliency) of
such a run or tag fails. The Python loader (`--load_fast=false`) reads them.
"""

from __future__ import annotations

import os
import unicodedata

_QUOTE_AND_BACKSLASH = frozenset('"\\')


def unreadable_character(name: str, path_separator: str | None = None) -> str | None:
    """The first character of `name` the fast data server cannot take in a blob key, or None.

    Those are `"`, `\\` and control characters (Unicode category Cc: newline,
    tab, NUL, DEL, ...). `path_separator`: a character that separates a path's
    parts and is therefore not part of a run name (`\\` on Windows).
    """
    for char in name:
        if char == path_separator:
            continue
        if char in _QUOTE_AND_BACKSLASH or unicodedata.category(char) == "Cc":
            return char
    return None


def unreadable_log_dir_character(log_dir: str) -> str | None:
    """`unreadable_character` of a log dir path (a run name is its path under --logdir)."""
    return unreadable_character(str(log_dir), "\\" if os.sep == "\\" else None)


def unreadable_name_message(what: str, name: str, char: str) -> str:
    """The warning for a `what` ("tag", "log dir") called `name` that contains `char`."""
    return (
        f"deepscope: {what} {name!r} contains {char!r}: TensorBoard's default data server "
        "(tensorboard-data-server, --load_fast=true on Linux) cannot read spectrum, "
        "correlation or saliency series of a run or tag whose name contains '\"', '\\', a "
        "newline, a tab or another control character (every read of them fails); rename it, "
        "or run tensorboard with --load_fast=false"
    )
