"""Small HTTP helpers shared by the route modules: reading JSON bodies, writing JSON and streams,
the base of our middlewares, and `InFlight`, which ends the requests still open when the server's
shutdown grace period is over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from . import wire
from .errors import BadRequest, ProxyError
from .records import ErrorKind, RequestState, state_of

log = logging.getLogger("oai2ollama")

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


# nginx's status for "the client closed the request": logged, never seen by the client.
CLIENT_CLOSED = 499

SHUTTING_DOWN = "the server is shutting down"
# Set in a request's scope when `InFlight.end_all` cancels it: that cancellation is an answer to
# give (a final error line, a 503), not a failure.
_ENDING = "oai2ollama.ending"


class InFlight:
    """The requests being answered, so that a server shutting down can end those that outlast
    its grace period, each with a last word in its own dialect instead of a cut connection."""

    def __init__(self) -> None:
        self._requests: dict[asyncio.Task[Any], dict[str, Any]] = {}

    def add(self, task: asyncio.Task[Any], scope: dict[str, Any]) -> None:
        self._requests[task] = scope

    def discard(self, task: asyncio.Task[Any]) -> None:
        self._requests.pop(task, None)

    def end_all(self) -> int:
        """Tell every open request to end now; how many there were."""
        for task, scope in self._requests.items():
            scope[_ENDING] = True
            task.cancel(SHUTTING_DOWN)
        return len(self._requests)


def ending(scope: Mapping[str, Any]) -> bool:
    """Whether `InFlight.end_all` is what cancelled this request."""
    return bool(scope.get(_ENDING))


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ProxyError(
            "the client closed the connection before sending its whole request",
            CLIENT_CLOSED,
            kind=ErrorKind.CLIENT_CLOSED,
        ) from None
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        data = wire.loads_request(body)
    except wire.InvalidJSON as exc:
        try:
            body.decode("utf-8")  # only now: the happy path does not pay for a second pass
        except UnicodeDecodeError as bad:
            where = f"byte 0x{body[bad.start]:02x} at offset {bad.start}"
            raise BadRequest(f"invalid JSON in request body: not UTF-8 ({where})") from None
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.dumps(obj), status_code=status, media_type=JSON, headers=headers)


class CutOff(Exception):
    """Raised by `encode_stream` when a failure cannot be said inside the body: `StreamResponse`
    then leaves the body unfinished, so that the client sees a broken answer, not a short one."""


class StreamResponse(StreamingResponse):
    """A streaming response that always closes its body iterator, so the upstream is released
    as soon as the client goes away (Starlette leaves the iterator suspended otherwise).

    `on_error` words the stream's last item when the server ends it while shutting down.
    """

    def __init__(self, content: Any, *args: Any, on_error: Callable[[ProxyError], bytes] | None = None, **kwargs: Any):
        super().__init__(content, *args, **kwargs)
        self._on_error = on_error
        self._scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                if not isinstance(chunk, bytes | memoryview):
                    chunk = chunk.encode(self.charset)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except CutOff:
            state_of(self._scope)[RequestState.ERROR_KIND] = ErrorKind.MID_STREAM
            # Without the closing message the server drops the connection mid-body (an incomplete
            # chunked body), the only way HTTP/1.1 has to say "this answer is not whole".
            return
        except asyncio.CancelledError:
            if not ending(self._scope) or self._on_error is None:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            state_of(self._scope)[RequestState.ERROR_KIND] = ErrorKind.SHUTDOWN
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # the upstream request ends here, not when the server closes
            last = self._on_error(ProxyError(SHUTTING_DOWN, 503))
            if not last:
                return
            await send({"type": "http.response.body", "body": last, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def encode_stream(
    items: AsyncIterable[Any],
    encode: Callable[[Any], bytes],
    on_error: Callable[[ProxyError], bytes],
    state: dict[str, Any] | None = None,
    finish: Callable[[], bytes] | None = None,
) -> AsyncIterator[bytes]:
    """Encode a stream of answers; a failure after the first byte becomes one final error item.

    A body with no way to carry an error (a relayed JSON document) has `on_error` return `b""`:
    `CutOff` is raised instead, and `StreamResponse` breaks the body off. A failure is noted in
    `state`, the request's (see `records`). `finish` gives what an `encode` that holds bytes back
    still holds when the items end.
    """
    iterator = aiter(items)
    try:
        async for item in iterator:
            yield encode(item)
        if finish is not None and (rest := finish()):
            yield rest
    except ProxyError as exc:
        log.warning("stream ended early: %s", exc.message)
        error = exc
    except Exception as exc:
        # The status line is gone already; a bug must still end the stream with a readable error.
        log.exception("unexpected error while streaming")
        error = ProxyError(f"internal error in oai2ollama: {type(exc).__name__}")
    else:
        return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    if state is not None:
        state[RequestState.ERROR_KIND] = ErrorKind.MID_STREAM
    last = on_error(error)
    if not last:
        raise CutOff(error.message)
    yield last


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


class HTTPMiddleware:
    """A pure ASGI middleware for HTTP requests: they go to `handle`; anything else (the lifespan)
    passes straight through."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
