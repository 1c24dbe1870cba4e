"""The guards in front of every route: browser origins (CORS), DNS rebinding, inbound API keys, body size.

The server holds a paid key on a well-known port, so, like Ollama, it refuses web pages from
foreign origins and, while it listens on loopback only, requests whose `Host` is a foreign name
(a DNS-rebinding page). A shared deployment can require its own keys, each optionally limited to
some models; which models the current request may use is kept in `caller_models` for the catalog
to enforce, so that every route is covered without knowing about keys.

One pure ASGI middleware; a request without an `Origin` header, on a server without keys, costs
one pass over its headers and a dictionary lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import config_file
from .config import DEFAULT_MAX_BODY_SIZE, Settings, describe_bytes
from .config_file import Globs, InboundKey
from .errors import ProxyError

# The model globs the current request's key may use; None: any model (no key, or an unrestricted one).
caller_models: ContextVar[Globs | None] = ContextVar("caller_models", default=None)

Render = Callable[[str, int, str, dict[str, str] | None], Response]

# Ollama's own list: local pages, desktop and editor apps, browser extensions (any port, any path).
_BUILTIN_ORIGINS = (
    r"https?://(?:localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0)(?::\d+)?",
    r"(?:app|file|tauri|vscode-webview|vscode-file|chrome-extension|moz-extension|safari-web-extension"
    r"|safari-extension|ms-browser-extension)://.*",
)
_ALLOWED_METHODS = b"GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
# What the official SDKs send from a browser. `x-stainless-*` is a family: requested members are
# echoed back in the preflight answer, since a browser does not expand wildcards in this list.
_ALLOWED_HEADERS = (
    "authorization, content-type, user-agent, accept, x-requested-with, openai-beta, openai-organization, "
    "openai-project, x-api-key, anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access, "
    "x-stainless-arch, x-stainless-async, x-stainless-custom-poll-interval, x-stainless-helper-method, "
    "x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-poll-helper, "
    "x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout"
)
_LISTED_HEADERS = frozenset(_ALLOWED_HEADERS.split(", "))
_PREFLIGHT_MAX_AGE = b"43200"  # seconds a browser may cache the answer (12 h, as Ollama)
_CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")
_BODYLESS = ("GET", "HEAD", "OPTIONS")
# Decisions about Origin and Host values are remembered, up to this many distinct values.
_CACHE_SIZE = 256


def is_loopback(host: str) -> bool:
    """Whether a listen address (`--host`) reaches this machine only."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def machine_names(hostname: str | None = None) -> frozenset[str]:
    """This machine's names as a browser on it may spell them: `box`, `box.local`, `box.lan`…"""
    full = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
    short = full.split(".", 1)[0]
    names = {full, short, f"{full}.local", f"{short}.local"}
    names.discard("")
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a `Host` header, without port, brackets or trailing dot, lower-cased."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:  # name:port; a bare IPv6 address has several colons
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_allowed(header: str, names: frozenset[str]) -> bool:
    """Whether a loopback-bound server may answer a request for this `Host`.

    A DNS-rebinding page reaches us under its own domain name; loopback and unspecified IPs,
    `localhost`, `*.localhost` and the machine's own names cannot be such a page.
    """
    name = host_name(header)
    if not name or name == "localhost" or name.endswith(".localhost") or name in names:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def origin_pattern(extra: Iterable[str]) -> re.Pattern[str]:
    """One regular expression for the allowed origins: Ollama's own and `--origins` (`*` is a wildcard)."""
    parts: list[str] = list(_BUILTIN_ORIGINS)
    for origin in extra:
        origin = origin.strip().rstrip("/")
        if origin:
            parts.append(".*".join(re.escape(piece) for piece in origin.split("*")))
    return re.compile("|".join(f"(?:{part})" for part in parts), re.IGNORECASE | re.DOTALL)


class KeyRing:
    """The inbound keys. Only SHA-256 digests are kept, compared in constant time (the length of a
    presented key does not show either), and every key is compared, whichever matches."""

    def __init__(self, keys: Sequence[InboundKey]):
        self._keys = tuple((_digest(key.key.encode()), key) for key in keys)

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, presented: Iterable[bytes]) -> InboundKey | None:
        found = None
        for candidate in presented:
            digest = _digest(candidate)
            for known, key in self._keys:
                if hmac.compare_digest(digest, known) and found is None:
                    found = key
        return found


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def presented_keys(authorization: bytes | None, api_key: bytes | None) -> list[bytes]:
    """The credentials a request carries: `Authorization: Bearer <key>` (OpenAI, Ollama clients)
    and `x-api-key: <key>` (Anthropic clients). Copilot's empty `Bearer ` is no credential."""
    keys = []
    if authorization:
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            keys.append(token.strip())
    if api_key and api_key.strip():
        keys.append(api_key.strip())
    return keys


@dataclass(frozen=True)
class Policy:
    """What the guards enforce, fixed at start-up."""

    origins: re.Pattern[str] = field(default_factory=lambda: origin_pattern(()))
    hosts: frozenset[str] | None = None  # the machine's names when bound to loopback; None: no Host check
    keys: KeyRing = field(default_factory=lambda: KeyRing(()))
    max_body_size: int = DEFAULT_MAX_BODY_SIZE


def policy_from(settings: Settings) -> Policy:
    """The guards' policy from flags, environment and the config file's `[[keys]]`; a problem raises
    a ValueError naming it (the key itself is never shown)."""
    file_keys = config_file.load(settings.config).keys if settings.config else ()
    flag_keys = [InboundKey(secret.get_secret_value().strip()) for secret in settings.server_api_key]
    if len({key.key for key in flag_keys}) < len(flag_keys):
        raise ValueError("server-api-key: the same key is given twice")
    for number, key in enumerate(file_keys, 1):
        if any(key.key == flag.key for flag in flag_keys):
            raise ValueError(
                f"{settings.config}: [[keys]] #{number}: the same key is given by --server-api-key; give it once"
            )
    return Policy(
        origins=origin_pattern(settings.origins),
        hosts=machine_names() if is_loopback(settings.host) else None,
        keys=KeyRing([*flag_keys, *file_keys]),
        max_body_size=settings.max_body_size,
    )


class BodyTooLarge(ProxyError):
    status = 413


class Guards:
    """The ASGI middleware. `render(path, status, message, headers)` answers in the route's dialect."""

    def __init__(self, app: ASGIApp, *, policy: Policy, render: Render):
        self.app = app
        self.policy = policy
        self.render = render
        self._origins: dict[bytes, bool] = {}
        self._hosts: dict[bytes, bool] = {}
        self._limit = describe_bytes(policy.max_body_size)
        self._too_large = f"request body too large: the limit is {self._limit}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        headers = dict(scope["headers"])
        # DNS rebinding first: such a page is same-origin with us, so the Origin check cannot see it.
        host = headers.get(b"host")
        if policy.hosts is not None and host is not None and not self._host_ok(host):
            name = host_name(host.decode("latin-1"))
            message = f"host {name!r} is not allowed while oai2ollama listens on loopback only (DNS rebinding guard)"
            await self._refuse(scope, receive, send, 403, message)
            return
        origin = headers.get(b"origin")
        if origin is not None:
            if not self._origin_ok(origin):
                message = f"origin {origin.decode('latin-1')!r} is not allowed; add it to --origins (OLLAMA_ORIGINS)"
                await self._refuse(scope, receive, send, 403, message)
                return
            if scope["method"] == "OPTIONS":
                await _preflight(send, origin, headers)
                return
            send = _with_cors(send, origin)
        token = None
        if policy.keys and not (scope["path"] == "/" and scope["method"] in ("GET", "HEAD")):
            key = policy.keys.find(presented_keys(headers.get(b"authorization"), headers.get(b"x-api-key")))
            if key is None:
                missing = b"authorization" not in headers and b"x-api-key" not in headers
                message = (
                    "an API key is required: send Authorization: Bearer <key> or x-api-key: <key>"
                    if missing
                    else "invalid API key"
                )
                await self._refuse(scope, receive, send, 401, message, {"WWW-Authenticate": "Bearer"})
                return
            # The key is ours, not the upstream's: it must not be forwarded.
            scope["headers"] = [item for item in scope["headers"] if item[0] not in _CREDENTIAL_HEADERS]
            if key.models is not None:
                token = caller_models.set(key.models)
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await self._refuse(scope, receive, send, 400, "invalid Content-Length header")
                return
            if int(length) > policy.max_body_size:
                message = f"request body too large: {int(length)} bytes, the limit is {self._limit}"
                await self._refuse(scope, receive, send, 413, message)
                return
        elif scope["method"] not in _BODYLESS:
            receive = _limited(receive, policy.max_body_size, self._too_large)
        try:
            await self.app(scope, receive, send)
        finally:
            if token is not None:
                caller_models.reset(token)

    def _host_ok(self, host: bytes) -> bool:
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed = host_allowed(host.decode("latin-1"), self.policy.hosts or frozenset())
            if len(self._hosts) < _CACHE_SIZE:
                self._hosts[host] = allowed
        return allowed

    def _origin_ok(self, origin: bytes) -> bool:
        allowed = self._origins.get(origin)
        if allowed is None:
            allowed = self.policy.origins.fullmatch(origin.decode("latin-1").strip()) is not None
            if len(self._origins) < _CACHE_SIZE:
                self._origins[origin] = allowed
        return allowed

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        response = self.render(scope["path"], status, message, headers)
        await response(scope, receive, send)


def _with_cors(send: Send, origin: bytes) -> Send:
    """`send` that marks the answer readable by the (allowed) origin's page."""
    extra = ((b"access-control-allow-origin", origin), (b"vary", b"Origin"))

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with_cors


async def _preflight(send: Send, origin: bytes, request_headers: dict[bytes, bytes]) -> None:
    """204 for a browser's preflight from an allowed origin; it carries no credentials, so no key is asked."""
    allowed = _ALLOWED_HEADERS
    requested = request_headers.get(b"access-control-request-headers")
    if requested:
        # Echo the requested `x-stainless-*` headers: newer SDKs add members of the family.
        family = [
            name
            for name in (part.strip().lower() for part in requested.decode("latin-1").split(","))
            if name.startswith("x-stainless-") and name not in _LISTED_HEADERS
        ]
        if family:
            allowed = ", ".join((allowed, *family))
    headers = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", _ALLOWED_METHODS),
        (b"access-control-allow-headers", allowed.encode("latin-1")),
        (b"access-control-max-age", _PREFLIGHT_MAX_AGE),
        (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]
    if b"access-control-request-private-network" in request_headers:
        # Chrome asks before a public page (an allowed one, here) may call a server on this machine.
        headers.append((b"access-control-allow-private-network", b"true"))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _limited(receive: Receive, limit: int, message: str) -> Callable[[], Awaitable[Message]]:
    """`receive` that fails with 413 as soon as a body without Content-Length (chunked) grows past
    `limit`, so no more than one chunk beyond it is ever held."""
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
