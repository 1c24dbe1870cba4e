"""Small HTTP helpers shared by the route modules: reading JSON bodies, writing JSON and streams."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from fastapi import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from . import wire
from .errors import BadRequest, ProxyError

log = logging.getLogger("oai2ollama")

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        data = wire.loads(body)
    except wire.InvalidJSON as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.dumps(obj), status_code=status, media_type=JSON, headers=headers)


class StreamResponse(StreamingResponse):
    """A streaming response that always closes its body iterator, so the upstream is released
    as soon as the client goes away (Starlette leaves the iterator suspended otherwise)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def encode_stream(
    items: AsyncIterable[Any],
    encode: Callable[[Any], bytes],
    on_error: Callable[[ProxyError], bytes],
) -> AsyncIterator[bytes]:
    """Encode a stream of answers; a failure after the first byte becomes one final error item."""
    iterator = aiter(items)
    try:
        async for item in iterator:
            yield encode(item)
    except ProxyError as exc:
        log.warning("stream ended early: %s", exc.message)
        yield on_error(exc)
    except Exception as exc:
        # The status line is gone already; a bug must still end the stream with a readable error.
        log.exception("unexpected error while streaming")
        yield on_error(ProxyError(f"internal error in oai2ollama: {type(exc).__name__}"))
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def started(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Wait for the first item before a response is committed, so that an upstream failing at
    once gets a real HTTP status instead of a 200 with an error line."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        first = _NOTHING
    except BaseException:
        await items.aclose()  # type: ignore[attr-defined]
        raise

    async def chain() -> AsyncIterator[Any]:
        try:
            if first is not _NOTHING:
                yield first
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    return chain()


_NOTHING = object()
