"""`CancelOnDisconnect`: the work of a client that went away stops at once."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Message, Receive, Scope, Send

from .http import HTTPMiddleware
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
    """

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

        try:
            await self.app(scope, receive_body, note_start)
        except asyncio.CancelledError:
            # Only the cancellation `watch` caused ends here; the server's own (shutting down) goes on.
            if not cancelled or handler.uncancel() > 0:
                raise
            log.info("%s %s: the client went away before the answer began", scope["method"], escaped(scope["path"]))
        finally:
            if watcher is not None:
                watcher.cancel()
