"""One log line per request: method, path, model, status, duration.

What a client sent (the path, the model name) is written escaped: a name with a line break or a
terminal escape must not write a second, forged line into the log.
"""

from __future__ import annotations

import logging
import time

from starlette.types import Message, Receive, Scope, Send

from .http import HTTPMiddleware

log = logging.getLogger("oai2ollama")

# Longest client-sent value written as is; a longer one is cut, with its full length said.
_SHOWN = 200


def escaped(value: object) -> str:
    """`value` as one printable line: control characters, line and paragraph separators and
    backslashes escaped, as `repr` would write them, without its quotes."""
    text = str(value)
    if text.isprintable() and "\\" not in text and len(text) <= _SHOWN:
        return text
    shown = text.encode("unicode_escape").decode("ascii")
    if not shown.isprintable():  # unicode_escape leaves no control characters; belt and braces
        shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in shown)
    if len(shown) > _SHOWN:
        shown = f"{shown[:_SHOWN]}… ({len(text)} characters)"
    return shown


class RequestLog(HTTPMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if log.isEnabledFor(logging.INFO):
                model = scope.get("state", {}).get("model")
                log.info(
                    "%s %s%s %s %.1f ms",
                    scope["method"],
                    escaped(scope["path"]),
                    f" model={escaped(model)}" if model else "",
                    status or "-",
                    (time.perf_counter() - started) * 1000,
                )
