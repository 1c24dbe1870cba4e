"""All upstream I/O: the one pooled `httpx.AsyncClient`, and the mapping of its failures to ours.

This is the only module that imports httpx. A transport failure becomes an `UpstreamError`
(502 unreachable or broken, 504 timed out) naming the upstream host and the cause, never the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx

from . import __version__, wire
from .errors import UpstreamError, message_from_body
from .masking import Secrets
from .translate.dialects import kind_from_host
from .transport import AiohttpTransport, describe_os_error

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


@dataclass(frozen=True)
class Target:
    """One OpenAI-compatible upstream."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    name: str = "default"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Whether /v1/responses is relayed here or translated to chat completions; "auto" finds out.
    responses: str = "auto"
    kind: str | None = None  # configured; else detected (see `Catalog.dialect`)

    # Cached: the routes name the host in every error and pass it down every stream.
    @cached_property
    def host(self) -> str:
        return httpx.URL(self.base_url).host or self.base_url

    @cached_property
    def address(self) -> str:
        """`host` with the port when the base URL names one: which local server is down matters."""
        url = httpx.URL(self.base_url)
        return f"{self.host}:{url.port}" if url.port is not None else self.host

    @cached_property
    def secrets(self) -> Secrets:
        """What this upstream is sent that none of its words may carry back (see `masking`)."""
        return Secrets.of_upstream(self.api_key, self.headers)

    @cached_property
    def host_kind(self) -> str | None:
        """The kind of server its host or local port gives away (see translate/dialects.py)."""
        return kind_from_host(self.host, httpx.URL(self.base_url).port)

    @cached_property
    def auth_header(self) -> str:
        """Azure's OpenAI service takes the key as `api-key`; every other upstream as a bearer token."""
        return "api-key" if (self.kind or self.host_kind) == "azure" else "authorization"

    def url(self, path: str) -> str:
        """The URL of `path` on this upstream; a base URL's query (Azure's `?api-version=…`) stays on it."""
        base, _, query = self.base_url.partition("?")
        return f"{base.rstrip('/')}{path}?{query}" if query else base + path

    @cached_property
    def origin(self) -> str:
        url = httpx.URL(self.base_url)
        return f"{url.scheme}://{url.netloc.decode()}"


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
        return _deadline_error(self.target, self._deadline.seconds)

    def _broken_off(self, exc: httpx.HTTPError) -> UpstreamError:
        error = _mid_stream_error(self.target, exc, self._read_timeout)
        error.message = self.secrets.mask(error.message)
        return error

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
        try:
            body = await self.read(ERROR_BODY_LIMIT)
        except UpstreamError:
            body = b""  # the status says what went wrong; a body that broke off adds nothing
        message = message_from_body(self.status, body, self._response.reason_phrase)
        # The body was masked as it was read; a key the upstream wrote JSON-escaped is unescaped only now.
        raise UpstreamError(self.secrets.mask(message), status=self.status, headers=error_headers(self.headers))


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
            raise _deadline_error(target, request_timeout or 0) from None
        except httpx.TimeoutException as exc:
            raise _timeout_error(target, exc, self._read_timeout) from None
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as exc:
            cause = secrets.mask(_cause(exc))
            raise UpstreamError(f"cannot reach upstream {target.address}: {cause}", status=502) from None
        except httpx.HTTPError as exc:
            # A parser's complaint quotes the upstream's bytes, which may echo what it was sent.
            cause = secrets.mask(_cause(exc))
            raise UpstreamError(f"upstream {target.address} failed to answer: {cause}", status=502) from None
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
            request = _redirected(target, request, response)
        raise UpstreamError(f"upstream {target.address} redirected more than {MAX_REDIRECTS} times", status=502)

    async def get_json(self, target: Target, path: str) -> Any:
        response = await self.send(target, "GET", path)
        await response.raise_for_error()
        return await response.json()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _redirected(target: Target, request: httpx.Request, response: httpx.Response) -> httpx.Request:
    """The request a redirect within the same origin (scheme, host and port) asks for."""
    try:
        url = request.url.join(response.headers["location"])
    except httpx.InvalidURL:
        raise UpstreamError(f"upstream {target.address} redirected to an invalid address", status=502) from None
    if _origin(url) != _origin(request.url):
        # Only the origin is named: a path or query may carry a signed token.
        scheme, host, port = _origin(url)
        raise UpstreamError(
            f"upstream {target.address} redirected to another origin ({scheme}://{host}:{port}); "
            "oai2ollama does not follow it, so that the key, headers and conversation go nowhere else "
            "(point the base URL at the new address if the upstream has moved)",
            status=502,
        )
    method, content = request.method, request.content
    headers = request.headers.copy()
    # As browsers (and httpx) do: a 303 asks for a GET, and so do 301 and 302 after a POST.
    if (response.status_code == 303 and method != "HEAD") or (response.status_code in (301, 302) and method == "POST"):
        method, content = "GET", b""
        for name in ("content-type", "content-length", "transfer-encoding"):
            headers.pop(name, None)
    return httpx.Request(method, url, headers=headers, content=content or None, extensions=request.extensions)


def _cause(exc: BaseException) -> str:
    """Why a transport failed, in a few words.

    An OS error anywhere in the chain says it best (httpx's own transport nests it, often under
    an empty message); otherwise the outermost non-empty message, which our transport words.
    """
    chain: list[BaseException] = []
    inner: BaseException | None = exc
    while inner is not None and inner not in chain:
        chain.append(inner)
        inner = inner.__cause__ or inner.__context__
    failures = [link for link in chain if isinstance(link, OSError)]
    if failures:
        # The innermost with an errno is the socket's own; outer ones only summarise it.
        numbered = [link for link in failures if link.errno is not None]
        return describe_os_error(numbered[-1] if numbered else failures[0])
    return next((" ".join(str(link).split()) for link in chain if str(link).strip()), type(exc).__name__)


def _timeout_error(target: Target, exc: httpx.TimeoutException, read_timeout: float) -> UpstreamError:
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamError(f"upstream {target.address} did not accept a connection in time", status=504)
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamError(f"no free connection to upstream {target.address} in time", status=504)
    if isinstance(exc, httpx.WriteTimeout):
        return UpstreamError(
            f"upstream {target.address} stopped reading the request for {read_timeout:g} s", status=504
        )
    return UpstreamError(f"upstream {target.address} did not answer within {read_timeout:g} s", status=504)


def _deadline_error(target: Target, seconds: float) -> UpstreamError:
    return UpstreamError(f"the request timeout of {seconds:g} s passed before upstream {target.address} finished", 504)


def _mid_stream_error(target: Target, exc: httpx.HTTPError, read_timeout: float | None) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        within = f" (over {read_timeout:g} s)" if read_timeout is not None else ""
        return UpstreamError(f"upstream {target.host} stopped sending for too long{within}", status=504)
    return UpstreamError(f"upstream {target.host} broke off the answer: {_cause(exc)}", status=502)


def _preview(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("…" if len(body) > limit else "")
