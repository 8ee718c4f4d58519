"""HTTP responses and query arguments shared by the plugin's routes.

Every response goes through `http_util.Respond` (nosniff, content types,
gzip); bad arguments raise `errors.InvalidArgumentError` (400) with a message
a person can act on.

Every data response carries a strong validator, an `ETag` (a hash of its
body), with `Cache-Control: no-cache` (Respond's), so the browser keeps it and
asks again with `If-None-Match`; a body that has not changed since is answered
`304 Not Modified` with no body. An idle tab's reload then moves a few hundred
bytes per route instead of megabytes.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence

import werkzeug.wrappers
from tensorboard import errors
from tensorboard.backend import http_util

# Characters of a request's value that an error message repeats: enough to recognise it,
# while a 60 kB tag name costs a 60 kB error no more.
ECHO_CHARS = 200


def cap(text: str) -> str:
    """`text` cut to its first `ECHO_CHARS` characters and "…(N more characters)"."""
    if len(text) <= ECHO_CHARS:
        return text
    return f"{text[:ECHO_CHARS]}…({len(text) - ECHO_CHARS} more characters)"


def echo(value) -> str:
    """`repr(value)` for an error message, showing at most `ECHO_CHARS` characters of it.

    A longer string is shown as the repr of its first `ECHO_CHARS` characters
    and "…(N more characters)", so that the message stays readable and small
    however large the request (a 60 kB tag name costs no 60 kB error).
    """
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]!r}…({len(value) - ECHO_CHARS} more characters)"
    return cap(repr(value))


def required_arg(request, name: str, example: str = "ROUTE?run=RUN&tag=TAG") -> str:
    """The query parameter `name`; a 400 that shows an example when it is missing."""
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(
            f"missing query parameter {echo(name)}: ask e.g. {example} (the tags route lists both)"
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
        raise errors.InvalidArgumentError(f"{name} must be an integer, got {echo(raw)}") from None
    if minimum is not None and value < minimum:
        raise errors.InvalidArgumentError(
            f"{name} must be at least {minimum}, got {cap(str(value))}"
        )
    return value


def choice_arg(request, name: str, choices: tuple[str, ...], default: str) -> str:
    """A query parameter that must be one of `choices`."""
    value = request.args.get(name, default)
    if value not in choices:
        raise errors.InvalidArgumentError(
            f"{name} must be one of {', '.join(choices)}, got {echo(value)}"
        )
    return value


def respond_text_error(request, message: str, code: int):
    """A plain-text error (`text/plain; charset=utf-8`, nosniff) through `Respond`.

    As TensorBoard renders `tensorboard.errors`, for the errors it does not
    know: the plugin's safety net answers unexpected exceptions with it.
    """
    return http_util.Respond(request, message, "text/plain; charset=utf-8", code=code)


# As tensorboard.backend.http_util decides whether a client takes gzip.
_ACCEPTS_GZIP = re.compile(r"\bgzip\b")


def entity_tag(parts: Sequence[bytes], variant: str = "") -> str:
    """A strong validator of the body made of `parts` (unquoted): 32 hex digits of SHA-256.

    `variant` tells apart representations of one body (e.g. "gzip"). Each
    part's length is hashed with it, so parts cannot run into each other.
    SHA-256 because CPUs hash it in hardware: about 12 ms for the 8 MB of a
    10,000-step × 201-parameter update-ratio response (BLAKE2b: 28 ms).
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:32] + (f"-{variant}" if variant else "")


def not_modified(request, etag: str) -> bool:
    """Whether the request's If-None-Match names `etag` (unquoted) or is `*`.

    If-None-Match compares weakly (RFC 9110 13.1.2): `W/"x"` matches `"x"`.
    """
    if_none_match = getattr(request, "if_none_match", None)
    return bool(if_none_match) and if_none_match.contains_weak(etag)


class _NotModifiedResponse(werkzeug.wrappers.Response):
    """A 304 that keeps its Content-Type.

    werkzeug drops a 304's entity headers (Content-Type, Content-Encoding,
    Content-Length, Expires) when it sends it; TensorBoard's security validator
    then logs "Content-Type is required on a Response" for every one. Browsers
    ignore a 304's Content-Type (they keep the stored response's).
    """

    def get_wsgi_headers(self, environ):
        headers = super().get_wsgi_headers(environ)
        if "Content-Type" in self.headers and "Content-Type" not in headers:
            headers["Content-Type"] = self.headers["Content-Type"]
        return headers


def respond_not_modified(request, etag: str, content_type: str = "application/json"):
    """`304 Not Modified` with the ETag and no body, through `Respond`.

    The browser answers the page's fetch with the body it stored (status 200).
    """
    response = http_util.Respond(
        request,
        b"",
        content_type,
        code=304,
        content_encoding="identity",
        headers=[("ETag", f'"{etag}"')],
    )
    response.__class__ = _NotModifiedResponse
    return response


def respond_with_etag(request, content: bytes, content_type: str):
    """`Respond` with `content` (bytes, not yet encoded) and its ETag, or a 304.

    For responses other than the JSON helpers below, e.g. the tags route's.
    Respond gzips text for a client that takes it.
    """
    variant = "gzip" if _takes_gzip(request) else ""
    etag = entity_tag([content, content_type.encode("utf-8")], variant)
    if not_modified(request, etag):
        return respond_not_modified(request, etag, content_type)
    return http_util.Respond(
        request,
        content,
        content_type,
        headers=[("ETag", f'"{etag}"'), ("Vary", "Accept-Encoding")],
    )


def _takes_gzip(request) -> bool:
    return bool(_ACCEPTS_GZIP.search(request.headers.get("Accept-Encoding", "")))


@dataclasses.dataclass(frozen=True)
class PreparedJson:
    """A JSON response made once and sent again: its body as sent and its ETags.

    Keep one for a response that is asked again unchanged (a route's cache):
    `respond_json_text` then sends it without serialising, gzipping or hashing.
    """

    content: bytes  # the body as sent
    content_encoding: (
        str  # "gzip" (Respond unzips for a client that does not take it) or "identity"
    )
    etag: str  # for a client that takes gzip, or for every client when not gzipped
    etag_plain: str  # for a client that does not take gzip

    @property
    def nbytes(self) -> int:
        """Bytes it holds (for a cache's budget)."""
        return len(self.content) + 200


def json_text(value) -> bytes:
    """Strict, compact JSON of `value` in UTF-8 (NaN/Inf must be spelled out beforehand)."""
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("utf-8")


def prepare_json_text(text: bytes) -> PreparedJson:
    """Serialized JSON (UTF-8, no NaN/Inf) gzipped at level 1, with its ETags."""
    return PreparedJson(
        gzip.compress(text, compresslevel=1, mtime=0),
        "gzip",
        entity_tag([text], "gzip"),
        entity_tag([text]),
    )


def respond_json_text(request, text: bytes | PreparedJson):
    """Respond with already-serialized JSON (or a prepared response), with its ETag, or a 304.

    `text` is strict JSON in UTF-8 (no NaN/Inf: it skips `Respond`'s cleansing),
    sent gzipped at level 1; `Respond` unzips it for a client that does not take
    gzip (whose ETag differs). A 304 costs no gzip.
    """
    takes_gzip = _takes_gzip(request)
    if isinstance(text, PreparedJson):
        gzipped = text.content_encoding == "gzip"
        etag = text.etag_plain if gzipped and not takes_gzip else text.etag
    else:
        gzipped = True
        etag = entity_tag([text], "gzip" if takes_gzip else "")
    if not_modified(request, etag):
        return respond_not_modified(request, etag)
    if isinstance(text, PreparedJson):
        content, encoding = text.content, text.content_encoding
    else:
        content, encoding = gzip.compress(text, compresslevel=1, mtime=0), "gzip"
    headers = [("ETag", f'"{etag}"')]
    if gzipped:
        headers.append(("Vary", "Accept-Encoding"))
    return http_util.Respond(
        request, content, "application/json", content_encoding=encoding, headers=headers
    )


def respond_json(request, body: dict):
    """Respond with `body` as JSON, gzipped at the fastest level, with an ETag (or a 304).

    The body must hold no NaN/Inf (spell them out, or use None): it skips
    `Respond`'s cleansing pass. gzip level 1 costs a third of `Respond`'s level
    3 on megabyte-sized bodies, for a few percent more bytes. `Respond` unzips
    it again for a client that does not accept gzip (whose ETag differs).
    """
    return respond_json_text(request, json_text(body))


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


def _base64_parts(body: dict, data: bytes | dict[str, bytes], slot_key: str):
    """The JSON text of `body`, its slots' bytes by name, and the ETag of both."""
    slots = data if isinstance(data, dict) else {slot_key: data}
    for key in slots:
        if body.get(key, {}).get("base64") != "":
            raise ValueError(f'body[{key!r}]["base64"] must be an empty string slot')
    text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("ascii")
    parts = [text]
    for key in sorted(slots):
        parts += [key.encode("utf-8"), slots[key]]
    return text, slots, entity_tag(parts)


def _spliced(text: bytes, slots: dict[str, bytes]) -> bytes:
    marker = b'"base64":""'
    # Inside JSON strings every quote is escaped, so these searches find only keys.
    at = {
        text.index(marker, text.index(f'"{key}":'.encode("ascii"))) + len(marker) - 1: key
        for key in slots
    }
    parts, last = [], 0  # the body's pieces, base64 spliced in
    for position in sorted(at):
        parts += [text[last:position], base64.b64encode(slots[at[position]])]
        last = position
    parts.append(text[last:])
    return b"".join(parts)


def prepare_base64_json(
    body: dict, data: bytes | dict[str, bytes], slot_key: str = "values"
) -> PreparedJson:
    """`respond_base64_json`'s response made once, to keep and send with `respond_json_text`."""
    text, slots, etag = _base64_parts(body, data, slot_key)
    return PreparedJson(_spliced(text, slots), "identity", etag, etag)


def respond_base64_json(request, body: dict, data: bytes | dict[str, bytes], slot_key="values"):
    """Respond with `body` as JSON, each array slot's (empty) "base64" filled with its bytes.

    `data` is the bytes of `body[slot_key]`, or a dict of slot name to bytes for
    several slots. The base64 text is spliced in rather than passed through
    `json.dumps` (base64 needs no escaping), and sent uncompressed: gzip shrinks
    base64 of float32 by only a quarter, and of float16 barely at all, at the cost
    of most of the response time. The ETag hashes the JSON and the raw bytes, so a
    304 costs no base64.
    """
    text, slots, etag = _base64_parts(body, data, slot_key)
    if not_modified(request, etag):
        return respond_not_modified(request, etag)
    prepared = PreparedJson(_spliced(text, slots), "identity", etag, etag)
    return respond_json_text(request, prepared)
