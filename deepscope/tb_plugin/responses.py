"""HTTP responses and query arguments shared by the plugin's routes.

Every response goes through `http_util.Respond` (nosniff, content types,
gzip); bad arguments raise `errors.InvalidArgumentError` (400) with a message
a person can act on.
"""

from __future__ import annotations

import base64
import gzip
import json

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


def respond_base64_json(request, body: dict, data: bytes, slot_key: str = "values"):
    """Respond with `body` as JSON, `body[slot_key]["base64"]` (empty) filled with `data`.

    The base64 text is spliced in rather than passed through `json.dumps`
    (base64 needs no escaping), and sent uncompressed: gzip shrinks base64 of
    float32 by only a quarter, at the cost of most of the response time.
    """
    if body.get(slot_key, {}).get("base64") != "":
        raise ValueError(f'body[{slot_key!r}]["base64"] must be an empty string slot')
    text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("ascii")
    slot = f'"{slot_key}":'.encode("ascii")
    start = text.index(slot)
    marker = b'"base64":""'
    at = text.index(marker, start) + len(marker) - 1
    text = b"".join((text[:at], base64.b64encode(data), text[at:]))
    return http_util.Respond(request, text, "application/json", content_encoding="identity")
