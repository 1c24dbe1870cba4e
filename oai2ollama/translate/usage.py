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
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import wire
from ..records import Usage
from .answer import Piece

# A usage object, not OpenAI's `"usage": null` on every chunk.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
# How much of the end of a relayed stream is kept to find its usage in.
_SAMPLE = 16 * 1024
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
    output_tokens: int | None = None,
) -> Usage:
    """OpenAI chat (`prompt_tokens`…) or Responses (`input_tokens`…) usage as a `Usage`; a count
    the upstream left out is estimated when the caller can (`input_estimate()`; `output_tokens`,
    else `output_chars`), and the usage is then marked `estimated`."""
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
    if read.output_tokens is None and (output_tokens is not None or output_chars is not None):
        read.output_tokens = output_tokens if output_tokens is not None else estimate(output_chars or 0)
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
    """The `usage` object of a relayed answer, found without reading the answer as it passes.

    OpenAI-compatible servers send an answer's usage in its last chunk, so `feed` (which returns
    each read as it is, standing in for an identity encoder) only keeps references to the last
    reads, about `_SAMPLE` bytes, and they are searched once, when `usage` is first read after the
    answer. With `count_text`, the answer is measured too, for an estimate when no usage comes: a
    stream by its deltas (servers send about one token each; counted in that last sample and
    scaled to the whole), a whole document by its text.
    """

    __slots__ = ("_found", "_kept", "_recent", "_relayed", "_searched", "counts_text", "text_chars")

    def __init__(self, *, count_text: bool = False):
        self.counts_text = count_text
        self.text_chars = 0
        self._recent: deque[bytes] = deque()
        self._kept = 0  # bytes in `_recent`
        self._relayed = 0  # bytes fed in all
        self._found: dict[str, Any] | None = None
        self._searched = True

    def feed(self, data: bytes) -> bytes:
        recent = self._recent
        recent.append(data)
        self._kept += len(data)
        self._relayed += len(data)
        while self._kept - len(recent[0]) >= _SAMPLE:
            self._kept -= len(recent.popleft())
        self._searched = False
        return data

    def feed_whole(self, document: bytes) -> None:
        """A whole answer at once; its text is counted only if it holds no usage."""
        self._found = _last_usage(document) or self._found
        if self._found is None and self.counts_text:
            self.text_chars += text_chars(document)

    @property
    def usage(self) -> dict[str, Any] | None:
        if not self._searched:
            self._searched = True
            self._found = _last_usage(self._sample()) or self._found
        return self._found

    @property
    def output_estimate(self) -> int | None:
        """Estimated output tokens, where `count_text` asked for them."""
        if not self.counts_text:
            return None
        sample = self._sample()
        if sample:
            return round(sample.count(b'"delta"') * self._relayed / len(sample))
        return estimate(self.text_chars)

    def _sample(self) -> bytes:
        return b"".join(self._recent)[-4 * _SAMPLE :]


def _last_usage(data: bytes) -> dict[str, Any] | None:
    """The last usage object in `data`; one cut by the start of `data` is not seen."""
    found = None
    for match in _USAGE_OBJECT.finditer(data):
        end = _closing_brace(data, match.end() - 1)
        if end == -1:
            break
        try:
            value = wire.loads(data[match.end() - 1 : end + 1])
        except wire.InvalidJSON:
            continue
        if isinstance(value, dict):
            found = value
    return found


def _closing_brace(data: bytes, start: int) -> int:
    """The index of the `}` that closes the object opened at `start`, or -1 if it is not in `data`.
    Braces inside strings are not told apart: usage objects hold only names and numbers."""
    end = data.find(b"}", start)
    while end != -1 and data.count(b"{", start, end + 1) != data.count(b"}", start, end + 1):
        end = data.find(b"}", end + 1)
    return end
