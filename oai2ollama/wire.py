"""The package's one JSON codec, and the framing of the streams we emit.

`pydantic_core` is already installed with FastAPI and encodes several times faster than the
standard library; the stream encoders here are on the per-chunk hot path.
"""

from __future__ import annotations

import math
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


def loads_request(data: bytes) -> Any:
    """`loads` for what clients send: JSON as RFC 8259 has it, and nothing we could not send on.

    NaN, Infinity and -Infinity are not JSON; a number beyond a double's range (1e400) is JSON but
    parses to infinity, which would go upstream as `Infinity`. Both are refused, naming the field.
    """
    try:
        value = from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        try:
            lenient = from_json(data)
        except ValueError:
            raise InvalidJSON(str(exc)) from None
        where, number = _non_finite(lenient) or ("body", math.nan)
        shown = "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
        raise InvalidJSON(f"{where}: {shown} is not JSON") from None
    found = _non_finite(value)
    if found is not None:
        raise InvalidJSON(f"{found[0]}: number out of range (beyond ±1.8e308)")
    return value


def _non_finite(value: Any) -> tuple[str, float] | None:
    """Where the first NaN or infinity in a parsed document is, and what it is. Iterative, for any
    depth the parser allows; paths are only spelled out once one is known to be there, so that a
    clean document costs one pass of type checks (about what parsing it took)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is float and not math.isfinite(item):
            return _where(value, "body")
    return None


def _where(item: Any, where: str) -> tuple[str, float] | None:
    # Recursive, which is safe: the parser refuses documents nested beyond ~200 levels.
    if type(item) is float and not math.isfinite(item):
        return where, item
    if type(item) is dict:
        children = ((f"{where}.{key}" if where != "body" else key, v) for key, v in item.items())
    elif type(item) is list:
        children = ((f"{where}[{n}]", v) for n, v in enumerate(item))
    else:
        return None
    for place, child in children:
        found = _where(child, place)
        if found is not None:
            return found
    return None


def ndjson_line(obj: Any) -> bytes:
    return dumps(obj) + b"\n"


def sse_frame(obj: Any, event: str | None = None) -> bytes:
    data = b"data: " + dumps(obj) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + data if event else data
