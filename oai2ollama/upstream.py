"""All upstream I/O: the one pooled `httpx.AsyncClient` and the answers read through it.

A transport failure becomes an `UpstreamError` (502 unreachable or broken, 504 timed out) naming
the upstream host and the cause, never the key (worded in `upstream_faults`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from . import __version__, wire
from .errors import UpstreamError, message_from_body
from .masking import Secrets
from .records import ErrorKind
from .target import Target
from .transport import AiohttpTransport
from .upstream_faults import cause, deadline_error, mid_stream_error, preview, redirected, timeout_error

log = logging.getLogger("oai2ollama.upstream")

USER_AGENT = f"oai2ollama/{__version__}"
# Headers of an upstream answer that a relay passes on; hop-by-hop and length headers are
# the server's own business.
RELAYED_HEADERS = ("content-type", "retry-after", "x-request-id", "openai-processing-ms")
RATE_LIMIT_PREFIXES = ("x-ratelimit-", "ratelimit-")
# An error answer is a message for a person; a gateway that sends megabytes of it is not waited for.
ERROR_BODY_LIMIT = 64 * 1024
# Redirects are followed within the upstream's own origin only, and only this many in a row.
MAX_REDIRECTS = 5
_UNREACHABLE = ErrorKind.UNREACHABLE


def relayed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name in RELAYED_HEADERS or name.startswith(RATE_LIMIT_PREFIXES)
    }


def error_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream headers an error answer of ours keeps (`Retry-After`, rate limits): not its
    content type, which described the upstream's body, not the error object we write."""
    kept = relayed_headers(headers)
    kept.pop("content-type", None)
    return kept


@dataclass(frozen=True)
class Deadline:
    """When a request must be over (the event loop's clock), and the timeout it came from."""

    at: float
    seconds: float


async def _until(deadline: float, reads: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`reads` while the deadline has not passed; after, TimeoutError."""
    while True:
        async with asyncio.timeout_at(deadline):
            try:
                chunk = await anext(reads)
            except StopAsyncIteration:
                return
        yield chunk


class Response:
    """An upstream answer whose body has not been read yet."""

    def __init__(
        self,
        target: Target,
        response: httpx.Response,
        read_timeout: float | None = None,
        secrets: Secrets | None = None,
        deadline: Deadline | None = None,
    ):
        self.target = target
        self._deadline = deadline
        self.secrets = target.secrets if secrets is None else secrets
        self._response = response
        self._read_timeout = read_timeout
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self.content_type = response.headers.get("content-type", "")

    @property
    def ok(self) -> bool:
        return self.status < 400

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body, or its first `limit` bytes (the rest is not waited for)."""
        if limit is None:
            try:
                if self._deadline is None:
                    return self.secrets.mask_bytes(await self._response.aread())
                async with asyncio.timeout_at(self._deadline.at):
                    return self.secrets.mask_bytes(await self._response.aread())
            except TimeoutError:
                raise self._deadline_passed() from None
            except httpx.HTTPError as exc:
                raise self._broken_off(exc) from None
            finally:
                await self._response.aclose()
        parts: list[bytes] = []
        size = 0
        chunks = self.chunks()
        try:
            async for chunk in chunks:
                parts.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        finally:
            await chunks.aclose()  # now, not when the generator is collected: the connection goes too
        return b"".join(parts)[:limit]

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, secrets masked; the connection is released however the iteration ends."""
        mask = self.secrets.stream() if self.secrets else None
        reads = self._response.aiter_bytes()
        if self._deadline is not None:
            reads = _until(self._deadline.at, reads)
        try:
            async for chunk in reads:
                if mask is not None:
                    chunk = mask.feed(chunk)
                    if not chunk:
                        continue
                yield chunk
            if mask is not None and (rest := mask.close()):
                yield rest
        except TimeoutError:
            raise self._deadline_passed() from None
        except httpx.HTTPError as exc:
            raise self._broken_off(exc) from None
        finally:
            if self._deadline is not None:
                await reads.aclose()  # type: ignore[attr-defined]
            await self._response.aclose()

    def _deadline_passed(self) -> UpstreamError:
        assert self._deadline is not None
        return deadline_error(self.target, self._deadline.seconds)

    def _broken_off(self, exc: httpx.HTTPError) -> UpstreamError:
        error = mid_stream_error(self.target, exc, self._read_timeout)
        error.message = self.secrets.mask(error.message)
        return error

    async def aclose(self) -> None:
        await self._response.aclose()

    async def json(self) -> Any:
        body = await self.read()
        try:
            return wire.loads(body)
        except wire.InvalidJSON:
            raise UpstreamError(f"upstream {self.target.host} sent invalid JSON: {preview(body)}") from None

    async def raise_for_error(self) -> None:
        """Turn an error answer into an `UpstreamError` that keeps its status and message."""
        if self.ok:
            return
        try:
            body = await self.read(ERROR_BODY_LIMIT)
        except UpstreamError:
            body = b""  # the status says what went wrong; a body that broke off adds nothing
        message = message_from_body(self.status, body, self._response.reason_phrase)
        # The body was masked as it was read; a key the upstream wrote JSON-escaped is unescaped only now.
        raise UpstreamError(
            self.secrets.mask(message),
            status=self.status,
            headers=error_headers(self.headers),
            kind=ErrorKind.of_upstream_status(self.status),
        )


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _CookielessClient(httpx.AsyncClient):
    """A client that keeps no cookies. One client serves every user of the proxy, so an
    upstream's cookie must not travel from one user's request to the next; and parsing
    Set-Cookie through `http.cookiejar` cost ~10% of a proxied request."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass


class Upstreams:
    """Owns the pooled client shared by every request of the process."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        http2: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 2000,
    ):
        self._read_timeout = read_timeout
        # Hundreds of concurrent streams must not queue behind httpx's default of 100.
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=min(500, max_connections), keepalive_expiry=60
        )
        if transport is None and not http2:
            # httpx's own transport is several times slower under concurrency (see transport.py);
            # only HTTP/2, which aiohttp cannot speak, needs it.
            transport = AiohttpTransport(limits=limits)
        # Our own transport is called directly; httpx's client machinery (auth, cookies, redirect
        # bookkeeping, timing wrappers) cost ~25% of a request that needs none of it.
        self._direct = transport if isinstance(transport, AiohttpTransport) else None
        self._urls: dict[tuple[str, str], httpx.URL] = {}
        # Waiting for a pooled connection, DNS and connecting are one phase, bounded by the connect
        # timeout (our transport's `connect` covers the three); only a silent upstream gets `read`.
        timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout)
        self._extensions = {"timeout": timeout.as_dict()}
        self._client = _CookielessClient(
            timeout=timeout,
            limits=limits,
            http2=http2,
            follow_redirects=False,  # see `_exchange`
            transport=transport,
            headers={"user-agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        target: Target,
        method: str,
        path: str,
        *,
        body: Any = None,
        client_headers: Mapping[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> Response:
        """Send a request and return as soon as the status line and headers have arrived.

        `request_timeout` (seconds) bounds the whole exchange, the reading of the answer included."""
        # Lower-cased so that a configured header cannot sit beside the same one set below.
        headers = {name.lower(): value for name, value in target.headers.items()}
        headers["accept"] = "application/json, text/event-stream"
        headers["user-agent"] = USER_AGENT
        secrets = target.secrets
        if target.api_key:
            auth = target.auth_header
            headers[auth] = target.api_key if auth == "api-key" else f"Bearer {target.api_key}"
        elif client_headers is not None:
            # A local upstream may need no key at all; otherwise the client brings its own.
            auth = client_headers.get("authorization", "").strip()
            if auth.lower() in ("", "bearer") and client_headers.get("x-api-key"):
                auth = f"Bearer {client_headers['x-api-key'].strip()}"
            # Copilot sends `Bearer ` with nothing after it when no key is set; that is no credential.
            if auth and auth.lower() != "bearer":
                headers["authorization"] = auth
                secrets = secrets.including(auth.split(None, 1)[-1])
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else wire.dumps(body)
            headers["content-type"] = "application/json"
        url = self._urls.get((target.base_url, path))
        if url is None:
            # Parsed once per upstream route: httpx parses a URL string anew on every request.
            url = self._urls[(target.base_url, path)] = httpx.URL(target.url(path))
        # Built directly rather than by `client.build_request`, whose merging of client-wide
        # headers, cookies and parameters (none of which this client has) cost ~15% of a request.
        request = httpx.Request(method, url, content=content, headers=headers, extensions=self._extensions)
        deadline = None
        if request_timeout is not None:
            deadline = Deadline(asyncio.get_running_loop().time() + request_timeout, request_timeout)
        try:
            if deadline is None:
                response = await self._exchange(target, request)
            else:
                async with asyncio.timeout_at(deadline.at):
                    response = await self._exchange(target, request)
        except TimeoutError:
            raise deadline_error(target, request_timeout or 0) from None
        except httpx.TimeoutException as exc:
            raise timeout_error(target, exc, self._read_timeout) from None
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
            why = secrets.mask(cause(exc))
            raise UpstreamError(f"cannot reach upstream {target.address}: {why}", 502, kind=_UNREACHABLE) from None
        except httpx.HTTPError as exc:
            # A parser's complaint quotes the upstream's bytes, which may echo what it was sent.
            why = secrets.mask(cause(exc))
            raise UpstreamError(f"upstream {target.address} failed to answer: {why}", 502, kind=_UNREACHABLE) from None
        return Response(target, response, self._read_timeout, secrets, deadline)

    async def _exchange(self, target: Target, request: httpx.Request) -> httpx.Response:
        """Send `request`, following redirects by hand, once per hop and never to another origin.

        httpx's client, when it follows a redirect to another host, drops only `Authorization`:
        a configured header (Azure's `api-key`) and, on a 307 or 308, the whole conversation would
        go to whoever the upstream points at.
        """
        for _ in range(MAX_REDIRECTS + 1):
            if self._direct is not None:
                response = await self._direct.handle_async_request(request)
                response.request = request
            else:
                response = await self._client.send(request, stream=True)
            if not response.is_redirect:
                return response
            await response.aclose()
            request = redirected(target, request, response)
        too_many = f"upstream {target.address} redirected more than {MAX_REDIRECTS} times"
        raise UpstreamError(too_many, 502, kind=_UNREACHABLE)

    async def get_json(self, target: Target, path: str) -> Any:
        response = await self.send(target, "GET", path)
        await response.raise_for_error()
        return await response.json()
