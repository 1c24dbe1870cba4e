"""All upstream I/O: the one pooled `httpx.AsyncClient`, and the mapping of its failures to ours.

This is the only module that imports httpx. A transport failure becomes an `UpstreamError`
(502 unreachable or broken, 504 timed out) naming the upstream host and the cause, never the key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import __version__, wire
from .errors import UpstreamError, message_from_body
from .transport import AiohttpTransport

log = logging.getLogger("oai2ollama.upstream")

USER_AGENT = f"oai2ollama/{__version__}"
# Headers of an upstream answer that a relay passes on; hop-by-hop and length headers are
# the server's own business.
RELAYED_HEADERS = ("content-type", "retry-after", "x-request-id", "openai-processing-ms")
RATE_LIMIT_PREFIXES = ("x-ratelimit-", "ratelimit-")


@dataclass(frozen=True)
class Target:
    """One OpenAI-compatible upstream."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    name: str = "default"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def host(self) -> str:
        return httpx.URL(self.base_url).host or self.base_url

    def redact(self, text: str) -> str:
        """Some upstreams quote the key they rejected in their error message; it must not reach a client."""
        return text.replace(self.api_key, "***") if self.api_key and self.api_key in text else text

    @property
    def origin(self) -> str:
        url = httpx.URL(self.base_url)
        return f"{url.scheme}://{url.netloc.decode()}"


def relayed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name in RELAYED_HEADERS or name.startswith(RATE_LIMIT_PREFIXES)
    }


class Response:
    """An upstream answer whose body has not been read yet."""

    def __init__(self, target: Target, response: httpx.Response):
        self.target = target
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self.content_type = response.headers.get("content-type", "")

    @property
    def ok(self) -> bool:
        return self.status < 400

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _mid_stream_error(self.target, exc) from None
        finally:
            await self._response.aclose()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection is released however the iteration ends."""
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise _mid_stream_error(self.target, exc) from None
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()

    async def json(self) -> Any:
        body = await self.read()
        try:
            return wire.loads(body)
        except wire.InvalidJSON:
            raise UpstreamError(f"upstream {self.target.host} sent invalid JSON: {_preview(body)}") from None

    async def raise_for_error(self) -> None:
        """Turn an error answer into an `UpstreamError` that keeps its status and message."""
        if self.ok:
            return
        body = await self.read()
        message = message_from_body(self.status, body, self._response.reason_phrase)
        raise UpstreamError(self.target.redact(message), status=self.status, headers=relayed_headers(self.headers))


class Upstreams:
    """Owns the pooled client shared by every request of the process."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        http2: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._read_timeout = read_timeout
        # Hundreds of concurrent streams must not queue behind httpx's default of 100.
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500, keepalive_expiry=60)
        if transport is None and not http2:
            # httpx's own transport is several times slower under concurrency (see transport.py);
            # only HTTP/2, which aiohttp cannot speak, needs it.
            transport = AiohttpTransport(limits=limits)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout),
            limits=limits,
            http2=http2,
            follow_redirects=True,
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
    ) -> Response:
        """Send a request and return as soon as the status line and headers have arrived."""
        # Lower-cased so that a configured header cannot sit beside the same one set below.
        headers = {name.lower(): value for name, value in target.headers.items()}
        headers["accept"] = "application/json, text/event-stream"
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        elif client_headers is not None:
            # A local upstream may need no key at all; otherwise the client brings its own.
            auth = client_headers.get("authorization", "").strip()
            if auth.lower() in ("", "bearer") and client_headers.get("x-api-key"):
                auth = f"Bearer {client_headers['x-api-key'].strip()}"
            # Copilot sends `Bearer ` with nothing after it when no key is set; that is no credential.
            if auth and auth.lower() != "bearer":
                headers["authorization"] = auth
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else wire.dumps(body)
            headers["content-type"] = "application/json"
        url = target.base_url + path
        request = self._client.build_request(method, url, content=content, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _timeout_error(target, exc, self._read_timeout) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot reach upstream {target.host}: {_cause(exc)}", status=502) from None
        return Response(target, response)

    async def get_json(self, target: Target, path: str) -> Any:
        response = await self.send(target, "GET", path)
        await response.raise_for_error()
        return await response.json()


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # httpx nests the OS error text; the innermost cause is the readable one.
    inner = exc.__cause__ or exc.__context__
    while inner is not None and str(inner):
        text = str(inner)
        inner = inner.__cause__ or inner.__context__
    return text


def _timeout_error(target: Target, exc: httpx.TimeoutException, read_timeout: float) -> UpstreamError:
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamError(f"upstream {target.host} did not accept a connection in time", status=504)
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamError(f"no free connection to upstream {target.host} in time", status=504)
    return UpstreamError(f"upstream {target.host} did not answer within {read_timeout:g} s", status=504)


def _mid_stream_error(target: Target, exc: httpx.HTTPError) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError(f"upstream {target.host} stopped sending for too long", status=504)
    return UpstreamError(f"upstream {target.host} broke off the answer: {_cause(exc)}", status=502)


def _preview(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("…" if len(body) > limit else "")
