"""The guards in front of every route: DNS rebinding, browser origins (CORS), inbound API keys, body size.

The server holds a paid key on a well-known port, so, like Ollama, it refuses web pages from
foreign origins and, while it listens on loopback only, requests whose `Host` is a foreign name
(a DNS-rebinding page). A shared deployment can require its own keys, each optionally limited to
some models; which models the current request may use is kept in `access.caller_models`.

Each concern is its own small piece (`hosts`, `origins`, `keys`, `body_limit`); `Guards` runs them
in one pure ASGI middleware, so a request without an `Origin` header, on a server without keys,
costs one pass over its headers and a dictionary lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..access import caller_models
from ..config import DEFAULT_MAX_BODY_SIZE, Settings
from ..config_file import InboundKey
from ..http import HTTPMiddleware
from ..records import RequestState, state_of
from .body_limit import BodyLimit
from .hosts import HostCheck, allowed_names, is_loopback, one_host
from .keys import CREDENTIAL_HEADERS, KeyRing, RuntimeKey, unreadable_credentials
from .limits import Limits
from .origins import OriginCheck, origin_pattern, preflight, same_origin, with_cors
from .refusal import Refusal

__all__ = ["Guards", "Policy", "is_admin", "is_loopback", "open_to_all", "policy_from"]

Render = Callable[[str, int, str, dict[str, str] | None], Response]


@dataclass(frozen=True)
class Policy:
    """What the guards enforce, fixed at start-up."""

    origins: OriginCheck = field(default_factory=lambda: OriginCheck(origin_pattern(())))
    hosts: HostCheck = field(default_factory=lambda: HostCheck(None))
    keys: KeyRing = field(default_factory=lambda: KeyRing(()))
    body: BodyLimit = field(default_factory=lambda: BodyLimit(DEFAULT_MAX_BODY_SIZE))
    public_metrics: bool = False
    limits: Limits = field(default_factory=Limits)  # of the database's keys (see key_sync)


def policy_from(settings: Settings, keys: Sequence[InboundKey]) -> Policy:
    return Policy(
        origins=OriginCheck(origin_pattern(settings.origins)),
        hosts=HostCheck(allowed_names(settings.host, settings.allowed_hosts)),
        keys=KeyRing(keys),
        body=BodyLimit(settings.max_body_size),
        public_metrics=settings.metrics_public,
    )


def open_to_all(settings: Settings, policy: Policy) -> str | None:
    """A warning for a server reachable from other machines that takes no API key, or None."""
    if is_loopback(settings.host) or policy.keys:
        return None
    return (
        f"listening on {settings.host}:{settings.port} without an API key: anyone who can reach this port "
        "can use the upstream (and its key) through oai2ollama; set --server-api-key "
        "(env OAI2OLLAMA_SERVER_API_KEYS), [[keys]] in --config, or run `oai2ollama keys add NAME`"
    )


def is_admin(path: str) -> bool:
    """The admin page (`/admin`, `/admin/…`): it takes no API key, only its own session (see `admin`)."""
    return path == "/admin" or path.startswith("/admin/")


def _public(scope: Scope, policy: Policy) -> bool:
    """`GET /` answers "Ollama is running" to anyone, as health checks expect; `GET /metrics` too
    when asked (`--metrics-public`), for a scraper on a trusted network."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    return scope["path"] == "/" or (policy.public_metrics and scope["path"] == "/metrics")


class Guards(HTTPMiddleware):
    """The ASGI middleware. `render(path, status, message, headers)` answers in the route's dialect."""

    def __init__(self, app: ASGIApp, *, policy: Policy, render: Render):
        super().__init__(app)
        self.policy = policy
        self.render = render

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.policy
        headers = dict(scope["headers"])
        # DNS rebinding first: such a page is same-origin with us, so the Origin check cannot see it.
        refusal = policy.hosts(headers.get(b"host")) or one_host(scope["headers"])
        origin = headers.get(b"origin")
        admin = is_admin(scope["path"])
        if refusal is None and origin is not None and admin:
            # The admin page is for its own pages only: no other origin, however trusted, and no CORS.
            refusal = same_origin(origin, headers.get(b"host"))
        elif refusal is None and origin is not None:
            refusal = policy.origins(origin)
            if refusal is None:
                if scope["method"] == "OPTIONS":
                    await preflight(send, origin, headers)
                    return
                send = with_cors(send, origin)
        refusal = refusal or unreadable_credentials(headers)
        models = None
        if refusal is None and policy.keys and not admin and not _public(scope, policy):
            key = policy.keys.identify(headers)
            if isinstance(key, Refusal):
                refusal = key
            else:
                if key.name is not None:
                    state_of(scope)[RequestState.KEY_NAME] = key.name
                if isinstance(key, RuntimeKey):  # the database's: it may be revoked, expired, over a limit
                    now = time.time()
                    refusal = key.refusal(now) or policy.limits.admit(key, now)
                # The key is ours, not the upstream's: it must not be forwarded.
                scope["headers"] = [item for item in scope["headers"] if item[0] not in CREDENTIAL_HEADERS]
                models = key.models
        length = headers.get(b"content-length")
        if refusal is None:
            refusal = policy.body.check(length)
        if refusal is not None:
            state_of(scope)[RequestState.ERROR_KIND] = refusal.kind
            response = self.render(scope["path"], refusal.status, refusal.message, refusal.headers)
            await response(scope, receive, send)
            return
        token = caller_models.set(models) if models is not None else None
        try:
            await self.app(scope, policy.body.watch(scope["method"], length, receive), send)
        finally:
            if token is not None:
                caller_models.reset(token)
