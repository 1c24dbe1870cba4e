"""Byte-stream stages: upstream body bytes → lines → SSE payloads → OpenAI chunk dicts.

Lines and events each have a synchronous core fed one network read at a time (`LineSplitter`,
`EventReader`). `openai_chunk_batches` drives both inside one generator rather than through an
async stage each: every extra stage would cost a suspension per chunk on the hot path.
`openai_chunks` hands out the same chunks one at a time, for the Anthropic route.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from typing import Any

from .. import wire
from ..errors import UpstreamError, message_from_body
from ..records import ErrorKind
from .answer import answer_choice

DONE = b"[DONE]"
# While nothing parseable has arrived, the body is kept (up to this size) to explain what it was.
_SNIFF_LIMIT = 1 << 20


class LineSplitter:
    """Lines ended by LF or CRLF only.

    `str.splitlines` (and httpx's `aiter_lines`) also break on U+2028 and U+0085, which
    upstreams emit raw inside JSON strings; splitting bytes on LF keeps such tokens whole.
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the unfinished line, kept in pieces to avoid quadratic joins

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            if chunk:
                self._parts.append(chunk)
            return []
        if self._parts:
            self._parts.append(chunk)
            chunk = b"".join(self._parts)
            self._parts.clear()
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._parts.append(rest)
        if b"\r" in chunk:
            return [line[:-1] if line.endswith(b"\r") else line for line in lines]
        return lines

    def close(self) -> list[bytes]:
        """The last line, when the body did not end with a line break."""
        if not self._parts:
            return []
        line = b"".join(self._parts)
        self._parts.clear()
        return [line[:-1] if line.endswith(b"\r") else line]


class EventReader:
    """The `data` of each server-sent event; comments (`: keep-alive`) and other fields are skipped.

    Multi-line data is joined with LF, as the SSE spec says. Some servers end each event with one
    LF only: a `data:` line that follows a complete JSON object then starts a new event. `done`
    turns true at `[DONE]`, after which nothing more is read.
    """

    __slots__ = ("_data", "done")

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self.done = False

    def feed(self, lines: list[bytes]) -> list[bytes]:
        payloads: list[bytes] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data:"):
                if data and len(data) == 1 and _whole_object(data[0]):
                    payloads.append(data.pop())
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif not line and data:
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                data.clear()
                if payload.startswith(b"[") and payload.strip() == DONE:
                    self.done = True
                    return payloads
                payloads.append(payload)
        return payloads

    def close(self) -> list[bytes]:
        """An event the body ended in without its closing blank line."""
        return [] if self.done else self.feed([b""])


def _whole_object(data: bytes) -> bool:
    return data.startswith(b"{") and data.rstrip().endswith(b"}")


def _preview(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace").strip()
    return text + ("…" if len(body) > limit else "")


def decode_chunk(payload: bytes, host: str) -> dict[str, Any]:
    """One OpenAI stream chunk; an `error` object inside the stream becomes an `UpstreamError`.

    The error may come alone or, as OpenRouter sends it mid-stream, beside `choices` with
    `finish_reason: "error"`.
    """
    try:
        chunk = wire.loads(payload)
    except wire.InvalidJSON:
        raise UpstreamError(f"upstream {host} sent a malformed stream chunk: {_preview(payload)}") from None
    if not isinstance(chunk, dict):
        raise UpstreamError(f"upstream {host} sent a stream chunk that is not an object: {_preview(payload)}")
    if chunk.get("error"):
        error = chunk["error"]
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
        kind = ErrorKind.of_upstream_status(status)
        raise UpstreamError(message_from_body(status, payload), status=status, kind=kind)
    return chunk


async def openai_chunk_batches(
    body: AsyncIterable[bytes], *, content_type: str, host: str
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The chunk dicts of an upstream answer to a streamed request, one non-empty list per read.

    Encoders that write a batch as one piece turn a network read into one write: a socket
    write per event would cost more than all the translation. A malformed event ends the
    stream with an `UpstreamError`, after the good events before it. An upstream that ignored
    `stream: true` and answered with one JSON document is accepted: that document is the only
    chunk, whatever its content type claimed. A body that is not a chat answer at all (a model
    list, some other API's object) is an `UpstreamError` before any chunk.

    A stream is whole once it has said so, by `[DONE]` or by a `finish_reason` (servers send
    either without the other); one that stops with neither (a proxy or server that closed the
    connection cleanly mid-answer) ends with an `UpstreamError`, so that a cut answer is never
    passed on as finished. The body is closed however the iteration ends.
    """
    try:
        if "json" in content_type and "event-stream" not in content_type:
            document = b"".join([chunk async for chunk in body])
            if not document.lstrip().startswith((b"data:", b":")):
                yield [_answer_document(document, host)]
                return
            body = _replay(document)
        splitter, reader = LineSplitter(), EventReader()
        sniffed: list[bytes] | None = []  # the body so far, until a first event arrives
        sniffed_size = 0
        progress = _Progress(host)
        async for chunk in body:
            if sniffed is not None and sniffed_size < _SNIFF_LIMIT:
                sniffed.append(chunk)
                sniffed_size += len(chunk)
            payloads = reader.feed(splitter.feed(chunk))
            if payloads:
                sniffed = None
                for batch in progress.batches(payloads):
                    yield batch
            if reader.done:
                return
        payloads = reader.feed(splitter.close()) + reader.close()
        if payloads:
            for batch in progress.batches(payloads):
                yield batch
        elif sniffed is not None and not reader.done:
            document = b"".join(sniffed)
            if not document.lstrip().startswith(b"{"):
                raise _not_a_stream(document, host)
            yield [_answer_document(document, host)]  # an error object raises here
            return
        if not reader.done and not progress.finished:
            raise UpstreamError(
                f"upstream {host} ended the answer early: its stream stopped without a finish_reason or [DONE]"
            )
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


# What a chunk or document that is part of a chat answer may say it is, when it has no `choices`.
_ANSWER_OBJECTS = ("chat.completion", "chat.completion.chunk", "text_completion")


def _is_answer(chunk: dict[str, Any]) -> bool:
    """Whether a chunk belongs to a chat (or legacy completions) answer: it has `choices`, is a
    usage-only chunk, or names itself as a completion."""
    return type(chunk.get("choices")) is list or "usage" in chunk or chunk.get("object") in _ANSWER_OBJECTS


def _not_an_answer(payload: bytes | dict[str, Any], host: str) -> UpstreamError:
    body = payload if isinstance(payload, bytes) else wire.dumps(payload)
    return UpstreamError(f"upstream {host} sent a body that is not a chat answer: {_preview(body)}")


def _answer_document(document: bytes, host: str) -> dict[str, Any]:
    """A whole JSON answer; it must be a completion (an error object raises its own error)."""
    if document.lstrip().startswith(b"<"):
        raise _not_an_answer(document, host)  # a gateway's HTML page sent as JSON
    chunk = decode_chunk(document, host)
    if not _is_answer(chunk):
        raise _not_an_answer(document, host)
    return chunk


class _Progress:
    """How far a stream has got: whether it began as a chat answer, and whether it finished."""

    __slots__ = ("answering", "finished", "host")

    def __init__(self, host: str):
        self.host = host
        self.answering = False  # a chunk with choices arrived
        self.finished = False  # the answer's choice has its finish_reason

    def batches(self, payloads: list[bytes]) -> Iterator[list[dict[str, Any]]]:
        """The chunks of `payloads` as one batch, seen; a bad payload raises after the good chunks
        before it have been given."""
        batch, error = _decode_all(payloads, self.host)
        if batch:
            self.see(batch)
            yield batch
        if error is not None:
            raise error

    def see(self, batch: list[dict[str, Any]]) -> None:
        if self.finished:
            return
        for chunk in batch:
            choices = chunk.get("choices")
            if type(choices) is list:
                self.answering = True
                choice = answer_choice(choices)
                if choice is not None and choice.get("finish_reason"):
                    self.finished = True
                    return
            elif not self.answering and not _is_answer(chunk):
                # Checked only until the answer has begun: later oddities are extensions.
                raise _not_an_answer(chunk, self.host)


def _decode_all(payloads: list[bytes], host: str) -> tuple[list[dict[str, Any]], UpstreamError | None]:
    """The chunks before the first bad payload, and the error it caused."""
    batch: list[dict[str, Any]] = []
    for payload in payloads:
        try:
            batch.append(decode_chunk(payload, host))
        except UpstreamError as exc:
            return batch, exc
    return batch, None


async def openai_chunks(
    body: AsyncIterable[bytes], *, content_type: str, host: str
) -> AsyncGenerator[dict[str, Any], None]:
    """The same chunk dicts one at a time."""
    batches = openai_chunk_batches(body, content_type=content_type, host=host)
    try:
        async for batch in batches:
            for chunk in batch:
                yield chunk
    finally:
        await batches.aclose()


async def _replay(document: bytes) -> AsyncIterator[bytes]:
    yield document


def _not_a_stream(body: bytes, host: str) -> UpstreamError:
    if all(not line.strip() or line.startswith(b":") for line in body.split(b"\n")):  # nothing but keep-alives
        return UpstreamError(f"upstream {host} ended the stream without sending anything")
    return UpstreamError(f"upstream {host} sent a body that is not an event stream: {_preview(body)}")
