"""`CancelOnDisconnect`: the work of a client that went away stops at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .http import SHUTTING_DOWN, HTTPMiddleware, InFlight, ending
from .records import ErrorKind, RequestState, state_of
from .request_log import escaped

log = logging.getLogger("oai2ollama")


class CancelOnDisconnect(HTTPMiddleware):
    """ASGI middleware: a client that goes away before its answer has begun cancels its request.

    Starlette notices a disconnect only while it streams a response. A handler still waiting on
    the upstream (headers that come late, a first token after a long prompt, a non-streamed answer
    being collected) would otherwise hold the upstream request until the upstream finished or
    timed out. Once the request body has been read, the connection is watched: a disconnect
    before the response starts cancels the handler, whose cleanup closes the upstream request at
    once; after, it is only passed on, and Starlette's streaming stops as usual.

    It also keeps the requests `in_flight`: one the server ends while shutting down (`InFlight`)
    is answered 503 by `render` if its answer had not begun (a stream ends itself, see
    `StreamResponse`).
    """

    def __init__(
        self,
        app: ASGIApp,
        in_flight: InFlight | None = None,
        render: Callable[[str, int, str], Response] | None = None,
    ):
        super().__init__(app)
        self.in_flight = in_flight or InFlight()
        self.render = render

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        responding = cancelled = False
        watcher: asyncio.Task[None] | None = None
        handler = asyncio.current_task()
        assert handler is not None

        async def watch() -> None:
            nonlocal cancelled
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            if not responding:
                cancelled = True
                handler.cancel()

        async def receive_body() -> Message:
            nonlocal watcher
            if watcher is not None or gone.is_set():
                await gone.wait()  # `watch` owns the connection's messages from here
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        async def note_start(message: Message) -> None:
            nonlocal responding
            if message["type"] == "http.response.start":
                responding = True
            await send(message)

        self.in_flight.add(handler, scope)
        try:
            await self.app(scope, receive_body, note_start)
        except asyncio.CancelledError:
            if ending(scope) and not cancelled:
                handler.uncancel()
                state_of(scope)[RequestState.ERROR_KIND] = ErrorKind.SHUTDOWN
                if not responding and self.render is not None:
                    await self.render(scope["path"], 503, SHUTTING_DOWN)(scope, receive, send)
                return
            # Only the cancellation `watch` caused ends here; the server's own (forced exit) goes on.
            if not cancelled or handler.uncancel() > 0:
                raise
            state_of(scope)[RequestState.ERROR_KIND] = ErrorKind.CLIENT_CLOSED
            log.info("%s %s: the client went away before the answer began", scope["method"], escaped(scope["path"]))
        finally:
            self.in_flight.discard(handler)
            if watcher is not None:
                watcher.cancel()
