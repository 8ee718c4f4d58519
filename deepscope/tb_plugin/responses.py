"""HTTP responses and query arguments shared by the plugin's routes.

Every response goes through `http_util.Respond` (nosniff, content types,
gzip); bad arguments raise `errors.InvalidArgumentError` (400) with a message
a person can act on.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections.abc import Iterable

from tensorboard import errors
from tensorboard.backend import http_util


def required_arg(request, name: str, example: str = "ROUTE?run=RUN&tag=TAG") -> str:
    """The query parameter `name`; a 400 that shows an example when it is missing."""
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(
            f"missing query parameter {name!r}: ask e.g. {example} (the tags route lists both)"
        )
    return value


def int_arg(
    request, name: str, default: int | None = None, minimum: int | None = None
) -> int | None:
    """An integer query parameter (or `default` when absent); a 400 when it is not one."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgumentError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise errors.InvalidArgumentError(f"{name} must be at least {minimum}, got {value}")
    return value


def choice_arg(request, name: str, choices: tuple[str, ...], default: str) -> str:
    """A query parameter that must be one of `choices`."""
    value = request.args.get(name, default)
    if value not in choices:
        raise errors.InvalidArgumentError(
            f"{name} must be one of {', '.join(choices)}, got {value!r}"
        )
    return value


def respond_json(request, body: dict):
    """Respond with `body` as JSON, gzipped at the fastest level.

    The body must hold no NaN/Inf (spell them out, or use None): it skips
    `Respond`'s cleansing pass. gzip level 1 costs a third of `Respond`'s level
    3 on megabyte-sized bodies, for a few percent more bytes. `Respond` unzips
    it again for a client that does not accept gzip.
    """
    text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return http_util.Respond(
        request,
        gzip.compress(text, compresslevel=1, mtime=0),
        "application/json",
        content_encoding="gzip",
    )


def json_number(value: float, *, null: bool = False) -> float | str | None:
    """A number for strict JSON: finite as a float, NaN/±Inf as "NaN", "Infinity", "-Infinity".

    With `null=True` NaN/±Inf become None (null) instead: for values the
    frontend shows as "no value" rather than as the non-finite number.
    """
    value = float(value)
    if math.isfinite(value):
        return value
    if null:
        return None
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def json_numbers(values: Iterable[float], *, null: bool = False) -> list:
    """`json_number` of each value (a numpy array's too)."""
    return [json_number(v, null=null) for v in values]


def respond_base64_json(request, body: dict, data: bytes | dict[str, bytes], slot_key="values"):
    """Respond with `body` as JSON, each array slot's (empty) "base64" filled with its bytes.

    `data` is the bytes of `body[slot_key]`, or a dict of slot name to bytes for
    several slots. The base64 text is spliced in rather than passed through
    `json.dumps` (base64 needs no escaping), and sent uncompressed: gzip shrinks
    base64 of float32 by only a quarter, and of float16 barely at all, at the cost
    of most of the response time.
    """
    slots = data if isinstance(data, dict) else {slot_key: data}
    for key in slots:
        if body.get(key, {}).get("base64") != "":
            raise ValueError(f'body[{key!r}]["base64"] must be an empty string slot')
    text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("ascii")
    marker = b'"base64":""'
    # Inside JSON strings every quote is escaped, so these searches find only keys.
    at = {
        text.index(marker, text.index(f'"{key}":'.encode("ascii"))) + len(marker) - 1: key
        for key in slots
    }
    parts, last = [], 0
    for position in sorted(at):
        parts += [text[last:position], base64.b64encode(slots[at[position]])]
        last = position
    parts.append(text[last:])
    return http_util.Respond(
        request, b"".join(parts), "application/json", content_encoding="identity"
    )
