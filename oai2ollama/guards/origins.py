"""Browser origins (CORS): like Ollama, refuse web pages from foreign origins, answer preflights,
and mark answers to allowed pages as readable by them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import Message, Send

from .refusal import Refusal

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
# Decisions are remembered, up to this many distinct Origin values.
_CACHE_SIZE = 256


def origin_pattern(extra: Iterable[str]) -> re.Pattern[str]:
    """One regular expression for the allowed origins: Ollama's own and `--origins` (`*` is a wildcard)."""
    parts: list[str] = list(_BUILTIN_ORIGINS)
    for origin in extra:
        origin = origin.strip().rstrip("/")
        if origin:
            parts.append(".*".join(re.escape(piece) for piece in origin.split("*")))
    return re.compile("|".join(f"(?:{part})" for part in parts), re.IGNORECASE | re.DOTALL)


class OriginCheck:
    def __init__(self, pattern: re.Pattern[str]):
        self.pattern = pattern
        self._decided: dict[bytes, bool] = {}

    def __call__(self, origin: bytes) -> Refusal | None:
        allowed = self._decided.get(origin)
        if allowed is None:
            allowed = self.pattern.fullmatch(origin.decode("latin-1").strip()) is not None
            if len(self._decided) < _CACHE_SIZE:
                self._decided[origin] = allowed
        if allowed:
            return None
        return Refusal(403, f"origin {origin.decode('latin-1')!r} is not allowed; add it to --origins (OLLAMA_ORIGINS)")


def same_origin(origin: bytes, host: bytes | None) -> Refusal | None:
    """Refuse a page whose origin is not the server's own (its `Host`): the admin page's rule."""
    text = origin.decode("latin-1").strip()
    scheme, found, rest = text.partition("://")
    own = host is not None and found and scheme.lower() in ("http", "https")
    if own and host is not None and rest.lower() == host.decode("latin-1").strip().lower():
        return None
    return Refusal(403, f"origin {text!r} may not use the admin page: only its own pages may")


def with_cors(send: Send, origin: bytes) -> Send:
    """`send` that marks the answer readable by the (allowed) origin's page."""
    extra = ((b"access-control-allow-origin", origin), (b"vary", b"Origin"))

    async def send_with_cors(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with_cors


async def preflight(send: Send, origin: bytes, request_headers: dict[bytes, bytes]) -> None:
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
