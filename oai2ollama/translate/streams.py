"""Byte-stream stages: upstream body bytes → lines → SSE payloads → OpenAI chunk dicts."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from .. import wire
from ..errors import UpstreamError, message_from_body


async def split_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Lines ended by LF or CRLF only.

    `str.splitlines` (and httpx's `aiter_lines`) also break on U+2028 and U+0085, which
    upstreams emit raw inside JSON strings; splitting bytes on LF keeps such tokens whole.
    """
    pending = b""
    async for chunk in chunks:
        if pending:
            chunk = pending + chunk
        lines = chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line
    if pending:
        yield pending[:-1] if pending.endswith(b"\r") else pending


async def sse_payloads(lines: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event, until `[DONE]`; comments and other fields are skipped."""
    data: list[bytes] = []
    async for line in lines:
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif not line and data:
            payload = b"\n".join(data)
            data.clear()
            if payload == b"[DONE]":
                return
            yield payload
    if data:
        payload = b"\n".join(data)
        if payload != b"[DONE]":
            yield payload


def decode_chunk(payload: bytes, host: str) -> dict[str, Any]:
    """One OpenAI stream chunk; an `error` object inside the stream becomes an `UpstreamError`."""
    try:
        chunk = wire.loads(payload)
    except wire.InvalidJSON:
        preview = payload[:120].decode("utf-8", "replace")
        raise UpstreamError(f"upstream {host} sent a malformed stream chunk: {preview}") from None
    if not isinstance(chunk, dict):
        raise UpstreamError(f"upstream {host} sent a stream chunk that is not an object")
    if "error" in chunk and not chunk.get("choices"):
        error = chunk["error"]
        status = error.get("code") if isinstance(error, dict) else None
        message = message_from_body(502, payload)
        raise UpstreamError(message, status=status if isinstance(status, int) and status >= 400 else 502)
    return chunk


async def openai_chunks(body: AsyncIterable[bytes], *, content_type: str, host: str) -> AsyncIterator[dict[str, Any]]:
    """Chunk dicts from an upstream answer to a streamed request.

    An upstream that ignored `stream: true` and answered with one JSON document is accepted:
    that document is yielded as the only chunk.
    """
    if "json" in content_type and "event-stream" not in content_type:
        payload = b"".join([chunk async for chunk in body])
        yield decode_chunk(payload, host)
        return
    seen = False
    async for payload in sse_payloads(split_lines(body)):
        seen = True
        yield decode_chunk(payload, host)
    if not seen:
        raise UpstreamError(f"upstream {host} ended the stream without sending anything")
