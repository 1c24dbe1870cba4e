"""The request body limit: declared sizes refused before anything is read, chunked bodies as soon
as they cross it, so no more than one chunk beyond the limit is ever held."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive

from ..config import describe_bytes
from ..errors import ProxyError
from .refusal import Refusal

_BODYLESS = ("GET", "HEAD", "OPTIONS")


class BodyTooLarge(ProxyError):
    status = 413


class BodyLimit:
    def __init__(self, limit: int):
        self.limit = limit
        self._described = describe_bytes(limit)
        self._too_large = f"request body too large: the limit is {self._described}"

    def check(self, content_length: bytes | None) -> Refusal | None:
        """A declared body that is malformed or too large; None when it may be read."""
        if content_length is None:
            return None
        if not content_length.isdigit():
            return Refusal(400, "invalid Content-Length header")
        if int(content_length) > self.limit:
            return Refusal(413, f"request body too large: {int(content_length)} bytes, the limit is {self._described}")
        return None

    def watch(self, method: str, content_length: bytes | None, receive: Receive) -> Receive:
        """`receive` itself when the size is declared (and checked) or there is no body; else one
        that fails with 413 as soon as the body read so far passes the limit."""
        if content_length is not None or method in _BODYLESS:
            return receive
        return _limited(receive, self.limit, self._too_large)


def _limited(receive: Receive, limit: int, message: str) -> Callable[[], Awaitable[Message]]:
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        received = await receive()
        if received["type"] == "http.request":
            seen += len(received.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(message)
        return received

    return receive_limited
