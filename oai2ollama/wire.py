"""The package's one JSON codec, and the framing of the streams we emit.

`pydantic_core` is already installed with FastAPI and encodes several times faster than the
standard library; the stream encoders here are on the per-chunk hot path.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json, to_json

# U+2028, U+2029 and U+0085 are valid inside JSON strings, but line readers built on
# str.splitlines (httpx's aiter_lines, which ollama-python uses) break lines there.
_LINE_SEPARATORS = (
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
    ("\u0085".encode(), b"\\u0085"),
)


class InvalidJSON(ValueError):
    """Raised by `loads` for anything that is not one well-formed JSON document."""


def dumps(obj: Any) -> bytes:
    data = to_json(obj)
    if b"\xe2\x80" in data or b"\xc2\x85" in data:
        for raw, escaped in _LINE_SEPARATORS:
            data = data.replace(raw, escaped)
    return data


def loads(data: bytes | str) -> Any:
    try:
        return from_json(data)
    except ValueError as exc:
        raise InvalidJSON(str(exc)) from None


def ndjson_line(obj: Any) -> bytes:
    return dumps(obj) + b"\n"


def sse_frame(obj: Any, event: str | None = None) -> bytes:
    data = b"data: " + dumps(obj) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data
