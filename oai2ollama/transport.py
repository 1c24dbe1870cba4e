"""An httpx transport that sends requests with aiohttp, for throughput under concurrency.

Measured on a 2-core machine against nginx on loopback (32 concurrent requests, one
process): httpx's own HTTP/1.1 transport ≈600 requests/s, this one ≈3,900. `upstream.py`
uses it for every upstream except when HTTP/2 is asked for, which only httpx's transport
speaks. aiohttp's failures are mapped to httpx's exception types here, so `upstream.py`
maps exactly one family of errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

# Request bodies larger than this are written in pieces of WRITE_SIZE (see `_paced`).
LARGE_BODY = 1 << 20
WRITE_SIZE = 256 * 1024


def describe_os_error(exc: OSError) -> str:
    """A socket failure in a few words: `connection refused`, not `[Errno 111] Connect call failed (…)`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({getattr(exc, 'verify_message', None) or exc.strerror or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({getattr(exc, 'reason', None) or exc.strerror or exc})"
    # getaddrinfo's errors (EAI_*) are negative on Linux; some resolvers raise a plain OSError with them.
    if isinstance(exc, socket.gaierror) or (isinstance(exc.errno, int) and exc.errno < 0):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    # By errno, not by class: aiohttp's errors are OSErrors that carry the errno of the one they wrap.
    words = _ERRNO_WORDS.get(exc.errno) if isinstance(exc.errno, int) else None
    if words is None and isinstance(exc, TimeoutError):
        words = "timed out"
    return words or exc.strerror or str(exc) or type(exc).__name__


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by peer",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def _one_line(text: str) -> str:
    # aiohttp's parser errors span lines, with a caret under the bad byte.
    return " ".join(part for part in text.split() if part != "^")


def describe(exc: BaseException) -> str:
    """One readable line for an aiohttp failure (their own texts span lines and start with `400, message:`)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        return describe_os_error(cause) if isinstance(cause, OSError) else f"TLS certificate not accepted ({cause})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_os_error(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        # The connection's own failure is only kept in the text (aiohttp ≥ 3.9).
        if "ConnectionResetError" in str(exc):
            return "connection reset by peer"
        return "connection closed before the body was complete"
    if isinstance(exc, aiohttp.ClientResponseError) and exc.message:
        return f"not a valid HTTP answer ({_one_line(exc.message)})"
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return _one_line(str(exc)) or type(exc).__name__


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                data = await self._response.content.readany()
                if not data:
                    return
                yield data
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(describe(exc)) from exc

    async def aclose(self) -> None:
        # A fully read response returns its connection to the pool; an abandoned one is closed.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


async def _paced(content: bytes, sending: asyncio.Timeout, seconds: float | None) -> AsyncIterator[bytes]:
    """`content` in pieces; while one is written, the upstream has `seconds` to take it."""
    loop = asyncio.get_running_loop()
    view = memoryview(content)
    try:
        for start in range(0, len(content), WRITE_SIZE):
            if seconds is not None:
                _rearm(sending, loop.time() + seconds)
            yield bytes(view[start : start + WRITE_SIZE])
    finally:
        _rearm(sending, None)  # written: from here the read timeout governs


def _rearm(sending: asyncio.Timeout, when: float | None) -> None:
    with contextlib.suppress(RuntimeError):  # the request is over (or timed out) already
        sending.reschedule(when)


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")


def _proxy_configured() -> bool:
    """Whether the environment names a proxy (NO_PROXY alone names none: it only makes exceptions)."""
    return any(name.lower() in PROXY_VARIABLES and value for name, value in os.environ.items())


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over one pooled `aiohttp.ClientSession`, opened on first use inside the running loop."""

    def __init__(self, *, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None, trust_env: bool = True):
        self._limits = limits
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry or 15,
            ssl=self._ssl,
            ttl_dns_cache=300,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # With trust_env aiohttp consults proxy settings and netrc in a thread on every
            # request; pay that only where a proxy is actually configured.
            trust_env=self._trust_env and _proxy_configured(),
            auto_decompress=False,  # httpx decodes content-encoding itself
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        content = await request.aread()
        # aiohttp arms its read timeout only once the body is written: an upstream that stops
        # reading a large body (many images) would hold the request for ever. Such a body goes in
        # pieces instead, each of which must leave within the write timeout.
        sending: asyncio.Timeout | None = None
        try:
            async with asyncio.timeout(None) as sending:
                data: Any = content or None
                if len(content) > LARGE_BODY:
                    data = _paced(content, sending, timeouts.get("write"))
                response = await self._session.request(
                    request.method,
                    str(request.url),
                    headers=request.headers.multi_items(),
                    data=data,
                    allow_redirects=False,
                    timeout=timeout,
                )
        except TimeoutError as exc:
            if sending is not None and sending.expired():
                raise httpx.WriteTimeout("the upstream stopped reading the request") from exc
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise httpx.ConnectTimeout(str(exc) or "connect timed out") from exc
            raise httpx.ReadTimeout(str(exc) or "read timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(describe(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.RemoteProtocolError(describe(exc)) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
