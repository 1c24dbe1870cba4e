"""How many tokens an answer used: read from the upstream's `usage`, estimated where it sent none.

Encoders note what they see in a `Meter` as they write; the `/v1` byte relay, which never parses
its stream, feeds each read to a `UsageTap`, which parses only the `usage` object itself, wherever
it lies (a chat chunk, a whole completion, a Responses `response.completed` event) and however the
reads split it. Estimates are the usual rule of thumb, four characters per token, of the answer's
text and of the request's text.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import wire
from ..records import Usage
from .answer import Piece

_USAGE = b'"usage"'
# A usage object split over reads is held until it is whole; one this large is not usage.
_MAX_HELD = 64 * 1024
# The strings that are the answer's text in OpenAI chunks and completions (JSON-escaped, so
# counted a little long): chat `content`, reasoning, tool-call `arguments`, legacy `text`.
_TEXT = re.compile(rb'"(?:content|reasoning_content|reasoning|arguments|text)":\s*"((?:[^"\\]|\\.)*)"')
# Request fields that are not counted: pictures are not read as characters, and role and part
# names are framing (as in the Anthropic estimate, `anthropic_tokens`).
_UNCOUNTED = frozenset(("image_url", "images", "input_image", "image", "file_data", "role", "type"))


@dataclass(slots=True)
class Meter:
    """What one answer used as its encoder saw it: filled while the answer is written, read once it is over."""

    usage: dict[str, Any] | None = None  # the upstream's last `usage` object
    output_chars: int = 0  # characters of text, reasoning and tool arguments written


class PieceEncoder(Protocol):
    """An encoder of one answer in some dialect: events per piece, and the closing events."""

    output_chars: int

    def piece(self, piece: Piece) -> Iterable[Any]: ...

    def finish(self, finish_reason: str | None, usage: dict[str, Any] | None) -> Iterable[Any]: ...


async def metered_events(
    pieces: AsyncIterable[Piece], encoder: PieceEncoder, meter: Meter | None
) -> AsyncIterator[Any]:
    """`encoder`'s events for an answer's pieces; once it is over, however it ends, `meter` holds
    what the answer used."""
    finish: str | None = None
    usage: dict[str, Any] | None = None
    try:
        async for piece in pieces:
            for event in encoder.piece(piece):
                yield event
            finish = piece.finish_reason or finish
            usage = piece.usage or usage
    finally:
        if meter is not None:
            meter.usage, meter.output_chars = usage, encoder.output_chars
    for event in encoder.finish(finish, usage):
        yield event


def estimate(chars: int) -> int:
    return math.ceil(chars / 4)


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _detail(usage: Mapping[str, Any], *path: str) -> int | None:
    for name in path[:-1]:
        inner = usage.get(name)
        if not isinstance(inner, dict):
            return None
        usage = inner
    return _int(usage.get(path[-1]))


def token_usage(
    usage: Mapping[str, Any] | None,
    *,
    input_estimate: Callable[[], int] | None = None,
    output_chars: int | None = None,
) -> Usage:
    """OpenAI chat (`prompt_tokens`…) or Responses (`input_tokens`…) usage as a `Usage`; a count
    the upstream left out is estimated when the caller can (`input_estimate()`, `output_chars`),
    and the usage is then marked `estimated`."""
    usage = usage if isinstance(usage, Mapping) else {}
    read = Usage(
        input_tokens=_int(usage.get("prompt_tokens", usage.get("input_tokens"))),
        output_tokens=_int(usage.get("completion_tokens", usage.get("output_tokens"))),
        reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens")
        or _detail(usage, "output_tokens_details", "reasoning_tokens"),
        cached_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens")
        or _detail(usage, "input_tokens_details", "cached_tokens")
        or _int(usage.get("prompt_cache_hit_tokens")),  # DeepSeek
    )
    if read.input_tokens is None and input_estimate is not None:
        read.input_tokens = input_estimate()
        read.estimated = True
    if read.output_tokens is None and output_chars is not None:
        read.output_tokens = estimate(output_chars)
        read.estimated = True
    return read


def request_chars(value: Any) -> int:
    """Characters of text in a request body's messages, prompt, input, instructions and tools
    (images and other binary parts are not counted)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(request_chars(item) for key, item in value.items() if key not in _UNCOUNTED)
    if isinstance(value, list):
        return sum(request_chars(item) for item in value)
    return 0


def request_tokens(body: Mapping[str, Any]) -> int:
    """The estimated prompt size of an OpenAI-style request body (chat, completions, embeddings, responses)."""
    parts = ("messages", "prompt", "suffix", "input", "instructions", "tools")
    return estimate(sum(request_chars(body.get(name)) for name in parts))


def text_chars(data: bytes) -> int:
    """Characters of answer text in OpenAI chunks or a completion, read without parsing them."""
    return sum(map(len, _TEXT.findall(data)))


class UsageTap:
    """Finds the `usage` object in a relayed answer's bytes without parsing the rest.

    `feed` each read as it passes (it returns the read, so it can stand in for an identity
    encoder). A read without `"usage"` costs one substring search, plus a look at its last bytes
    in case the name is split; `"usage": null` (OpenAI sends it on every chunk) is passed over;
    an object split across reads is held until its braces close. The last object found wins.
    With `count_text`, the answer's text is counted too, for an estimate when no usage comes.
    """

    __slots__ = ("_held", "counts_text", "feed", "text_chars", "usage")

    def __init__(self, *, count_text: bool = False):
        self.usage: dict[str, Any] | None = None
        self.counts_text = count_text
        self.text_chars = 0
        self._held = b""
        self.feed: Callable[[bytes], bytes] = self._feed_counting if count_text else self._feed

    def feed_whole(self, document: bytes) -> None:
        """A whole answer at once; its text is counted only if it holds no usage."""
        self._feed(document)
        if self.usage is None and self.counts_text:
            self.text_chars += text_chars(document)

    def _feed(self, data: bytes) -> bytes:
        if self._held or _USAGE in data or data.rfind(b'"', -6) != -1:
            self._scan(data)
        return data

    def _feed_counting(self, data: bytes) -> bytes:
        self.text_chars += text_chars(data)
        return self._feed(data)

    def _scan(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        at = data.find(_USAGE)
        while at != -1:
            value = at + len(_USAGE)
            while value < len(data) and data[value] in b" \t\r\n:":
                value += 1
            if value == len(data):
                self._hold(data[at:])  # the value is in the next read
                return
            if data[value] != 0x7B:  # `{`: anything else (null) is no usage
                at = data.find(_USAGE, value)
                continue
            end = _closing_brace(data, value)
            if end == -1:
                self._hold(data[at:])
                return
            try:
                found = wire.loads(data[value : end + 1])
            except wire.InvalidJSON:
                found = None
            if isinstance(found, dict):
                self.usage = found
            at = data.find(_USAGE, end)
        quote = data.rfind(b'"', -6)
        if quote != -1 and _USAGE.startswith(data[quote:]):
            self._held = data[quote:]  # `"usa` at the end of a read: the name may go on in the next

    def _hold(self, rest: bytes) -> None:
        self._held = rest if len(rest) <= _MAX_HELD else b""


def _closing_brace(data: bytes, start: int) -> int:
    """The index of the `}` that closes the object opened at `start`, or -1 if it is not in `data`.
    Braces inside strings are not told apart: usage objects hold only names and numbers."""
    end = data.find(b"}", start)
    while end != -1 and data.count(b"{", start, end + 1) != data.count(b"}", start, end + 1):
        end = data.find(b"}", end + 1)
    return end
