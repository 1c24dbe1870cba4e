"""One log line per request: method, path, model, status, duration.

What a client sent (the path, the model name) is written escaped: a name with a line break or a
terminal escape must not write a second, forged line into the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import dialect
from .http import HTTPMiddleware
from .records import Observer, RequestRecord, RequestState, state_of

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
    """The log line, and a `RequestRecord` for each observer (the ledger, the metrics)."""

    def __init__(self, app: ASGIApp, *, observers: Sequence[Observer] = ()):
        super().__init__(app)
        self.observers = observers

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0
        first_byte: float | None = None

        async def send_and_note(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
            elif first_byte is None and message.get("body"):
                first_byte = time.perf_counter() - started
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if self.observers:
                self._observe(scope, status, time.perf_counter() - started, first_byte)
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

    def _observe(self, scope: Scope, status: int, duration: float, first_byte: float | None) -> None:
        state = state_of(scope)
        card = state.get(RequestState.CARD)
        headers = dict(scope["headers"])
        record = RequestRecord(
            started_at=time.time() - duration,
            method=scope["method"],
            path=scope["path"],
            dialect=dialect(scope["path"]),
            status=status,
            duration=duration,
            first_byte=first_byte,
            model=state.get(RequestState.MODEL),
            upstream=card.upstream if card is not None else None,
            upstream_model=card.upstream_id if card is not None else None,
            key_name=state.get(RequestState.KEY_NAME),
            client=headers.get(b"user-agent", b"").decode("latin-1")[:_SHOWN],
            streamed=bool(state.get(RequestState.STREAMED)),
            error_kind=state.get(RequestState.ERROR_KIND),
            usage=state.get(RequestState.USAGE),
        )
        for observe in self.observers:
            try:
                observe(record)
            except Exception:  # an observer's bug must not fail the request it observes
                log.exception("a request observer failed")
