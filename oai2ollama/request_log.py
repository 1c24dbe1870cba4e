"""One log line per request: method, path, model, status, duration.

What a client sent (the path, the model name) is written escaped: a name with a line break or a
terminal escape must not write a second, forged line into the log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import dialect
from .http import HTTPMiddleware
from .records import ErrorKind, Observer, RequestRecord, RequestState, state_of

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
        whole = False  # the answer's last body message went out

        async def send_and_note(message: Message) -> None:
            nonlocal status, first_byte, whole
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if first_byte is None and message.get("body"):
                    first_byte = time.perf_counter() - started
                if not message.get("more_body", False):
                    whole = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            # Rendered as a 500 by the server-error middleware outside this one.
            state_of(scope).setdefault(RequestState.ERROR_KIND, ErrorKind.INTERNAL)
            status = status or 500
            whole = True
            raise
        finally:
            ended = time.perf_counter()
            if self.observers:
                self._observe(scope, status, whole, started, ended, first_byte)
            if log.isEnabledFor(logging.INFO):
                model = scope.get("state", {}).get("model")
                log.info(
                    "%s %s%s %s %.1f ms",
                    scope["method"],
                    escaped(scope["path"]),
                    f" model={escaped(model)}" if model else "",
                    status or "-",
                    (ended - started) * 1000,
                )

    def _observe(
        self, scope: Scope, status: int, whole: bool, started: float, ended: float, first_byte: float | None
    ) -> None:
        state = state_of(scope)
        card = state.get(RequestState.CARD)
        headers = dict(scope["headers"])
        usage = state.get(RequestState.USAGE)
        if callable(usage):
            try:
                usage = usage()
            except Exception:  # the record goes out without it rather than not at all
                log.exception("reading a request's usage failed")
                usage = None
        sent = state.get(RequestState.UPSTREAM_SENT)
        duration = ended - started
        record = RequestRecord(
            started_at=time.time() - duration,
            method=scope["method"],
            path=scope["path"],
            dialect=dialect(scope["path"]),
            status=status,
            duration=duration,
            first_byte=first_byte,
            model=_as_text(state.get(RequestState.MODEL)),
            upstream=card.upstream if card is not None else None,
            upstream_model=card.upstream_id if card is not None else None,
            key_name=state.get(RequestState.KEY_NAME),
            client=headers.get(b"user-agent", b"").decode("latin-1")[:_SHOWN],
            streamed=bool(state.get(RequestState.STREAMED)),
            error_kind=state.get(RequestState.ERROR_KIND) or _unnamed_failure(status, whole),
            usage=usage,
            upstream_duration=ended - sent if sent is not None else None,
        )
        for observe in self.observers:
            try:
                observe(record)
            except Exception:  # an observer's bug must not fail the request it observes
                log.exception("a request observer failed")


def _as_text(value: object) -> str | None:
    """The model as the client named it: routes note the body's value as it came, which a bad
    request may have made a number or an object (`"model": 42`); the record holds its JSON text."""
    if value is None or isinstance(value, str):
        return value
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):  # nested past what JSON encodes
        text = f"<{type(value).__name__}>"
    return text[:_SHOWN]


def _unnamed_failure(status: int, whole: bool) -> str | None:
    """The kind of a failure nothing named: an answer never begun or never finished is one the
    client left (the server's own endings name themselves), an error status one we gave."""
    if status == 0 or not whole:
        return ErrorKind.CLIENT_CLOSED
    if status >= 400:
        return ErrorKind.BAD_REQUEST if status < 500 else ErrorKind.INTERNAL
    return None
