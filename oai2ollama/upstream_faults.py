"""How upstream failures are told: transport errors in a few words naming the upstream (never
its key), timeouts by phase, and the redirect policy: within the upstream's own origin only."""

from __future__ import annotations

import httpx

from .errors import UpstreamError
from .records import ErrorKind
from .target import Target
from .transport import describe_os_error

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TIMEOUT = ErrorKind.TIMEOUT


def origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def redirected(target: Target, request: httpx.Request, response: httpx.Response) -> httpx.Request:
    """The request a redirect within the same origin (scheme, host and port) asks for."""
    try:
        url = request.url.join(response.headers["location"])
    except httpx.InvalidURL:
        raise UpstreamError(
            f"upstream {target.address} redirected to an invalid address", status=502, kind=ErrorKind.UNREACHABLE
        ) from None
    if origin_of(url) != origin_of(request.url):
        # Only the origin is named: a path or query may carry a signed token.
        scheme, host, port = origin_of(url)
        raise UpstreamError(
            f"upstream {target.address} redirected to another origin ({scheme}://{host}:{port}); "
            "oai2ollama does not follow it, so that the key, headers and conversation go nowhere else "
            "(point the base URL at the new address if the upstream has moved)",
            status=502,
            kind=ErrorKind.UNREACHABLE,
        )
    method, content = request.method, request.content
    headers = request.headers.copy()
    # As browsers (and httpx) do: a 303 asks for a GET, and so do 301 and 302 after a POST.
    if (response.status_code == 303 and method != "HEAD") or (response.status_code in (301, 302) and method == "POST"):
        method, content = "GET", b""
        for name in ("content-type", "content-length", "transfer-encoding"):
            headers.pop(name, None)
    return httpx.Request(method, url, headers=headers, content=content or None, extensions=request.extensions)


def cause(exc: BaseException) -> str:
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


def timeout_error(target: Target, exc: httpx.TimeoutException, read_timeout: float) -> UpstreamError:
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamError(f"upstream {target.address} did not accept a connection in time", 504, kind=_TIMEOUT)
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamError(f"no free connection to upstream {target.address} in time", 504, kind=_TIMEOUT)
    if isinstance(exc, httpx.WriteTimeout):
        return UpstreamError(
            f"upstream {target.address} stopped reading the request for {read_timeout:g} s", 504, kind=_TIMEOUT
        )
    return UpstreamError(f"upstream {target.address} did not answer within {read_timeout:g} s", 504, kind=_TIMEOUT)


def deadline_error(target: Target, seconds: float) -> UpstreamError:
    return UpstreamError(
        f"the request timeout of {seconds:g} s passed before upstream {target.address} finished", 504, kind=_TIMEOUT
    )


def mid_stream_error(target: Target, exc: httpx.HTTPError, read_timeout: float | None) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        within = f" (over {read_timeout:g} s)" if read_timeout is not None else ""
        return UpstreamError(f"upstream {target.host} stopped sending for too long{within}", 504, kind=_TIMEOUT)
    return UpstreamError(f"upstream {target.host} broke off the answer: {cause(exc)}", 502, kind=ErrorKind.UNREACHABLE)


def preview(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("…" if len(body) > limit else "")
