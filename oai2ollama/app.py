"""The FastAPI application: routers, error rendering per dialect, request logging, lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

from . import admin
from .catalog import Catalog
from .config import Settings
from .configuration import assemble
from .disconnect import CancelOnDisconnect
from .errors import ProxyError, anthropic_body, dialect, error_kind, ollama_body, openai_body
from .guards import Guards, is_admin, open_to_all, policy_from
from .http import InFlight, json_response
from .in_use import ModelsInUse
from .key_sync import KeySync
from .ledger import Ledger
from .ledger.costs import Prices
from .ledger.database import resolve_url
from .metrics import Metrics
from .records import ErrorKind, Observer, RequestRecord, RequestState
from .request_log import RequestLog, escaped
from .routes import anthropic, discovery, native, openai, responses
from .routes import metrics as metrics_route
from .shared_state import SharedState
from .upstream import Upstreams

log = logging.getLogger("oai2ollama")


def error_response(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if is_admin(path):
        return admin.error_page(status, message, headers)  # a page for a browser, not JSON
    kind = dialect(path)
    if kind == "anthropic":
        body: dict[str, Any] = anthropic_body(status, message)
    elif kind == "openai":
        body = openai_body(status, message)
    else:
        body = ollama_body(message)
    return json_response(body, status=status, headers=headers)


async def _proxy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    setattr(request.state, RequestState.ERROR_KIND, error_kind(exc))
    return error_response(request.url.path, exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    setattr(request.state, RequestState.ERROR_KIND, ErrorKind.BAD_REQUEST)
    message = exc.detail if exc.status_code != 404 else f"{request.method} {request.url.path} not found"
    if exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    return error_response(request.url.path, exc.status_code, str(message), dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, escaped(request.url.path))
    return error_response(request.url.path, 500, f"internal error in oai2ollama: {type(exc).__name__}")


def _not_admin(observe: Observer) -> Observer:
    """The ledger records what clients asked of the gateway, not the admin page's own views."""

    def observe_api(record: RequestRecord) -> None:
        if not is_admin(record.path):
            observe(record)

    return observe_api


def create_app(
    settings: Settings,
    *,
    upstreams: Upstreams | None = None,
    observers: Sequence[Observer] = (),
    metrics: Metrics | None = None,
) -> FastAPI:
    """Build the app. Tests pass their own `upstreams` (over a mock transport); otherwise the
    pooled client and the usage ledger (unless `--database-url none`) are opened when the app
    starts and closed when it stops. Each of `observers` gets every answered request's record
    (see `records`), and so does `metrics` (by default the process's own, see
    `metrics.Metrics.from_environment`), which /metrics shows."""
    # Read once, now: a bad config file stops the start-up (cli prints the ValueError, exits 2).
    configuration = assemble(settings)
    guard_policy = policy_from(settings, configuration.keys)
    routers = (openai, responses, native, anthropic, discovery, metrics_route)
    if metrics is None:
        metrics = Metrics.from_environment(route.path for module in routers for route in module.routes)
    ledger: Ledger | None = None
    shared: SharedState | None = None
    # Tests that bring their own upstreams get a database only when their settings name one.
    if upstreams is None or settings.database_url is not None:
        url = resolve_url(settings.database_url.get_secret_value() if settings.database_url else None)
        if url is not None:
            prices = Prices(configuration.catalog.sources, configuration.catalog.rules)
            ledger = Ledger(url, prices=prices, retention=settings.usage_retention)
            observers = [*observers, _not_admin(ledger.observe)]
            metrics.register_queue(ledger.queue_depth, lambda: ledger.dropped if ledger else 0)
            shared = SharedState(ledger.engine, ready=ledger.migrated.wait)
            KeySync(guard_policy.keys, guard_policy.limits).attach(shared)
            observers = [*observers, guard_policy.limits.observe]
    admin_state = admin.AdminState(settings, ledger=ledger, shared=shared)
    in_use = ModelsInUse()
    if ledger is not None and shared is not None:
        in_use.share(ledger.engine, shared, ready=ledger.migrated.wait)  # /api/ps the same in every process

    @asynccontextmanager
    async def database() -> AsyncIterator[None]:
        """The ledger's writer and the shared-state poller, for as long as the app runs."""
        await admin_state.start()  # the admin token: generated and printed where there is none
        if ledger is None or shared is None:
            yield
            return
        await ledger.start()  # the database is opened and migrated in the background
        # Serving begins once the database's keys are read (a moment), or after a wait for a
        # database that is away, refusing (503) requests that need a key until they are.
        await shared.start()
        await in_use.start()
        warning = open_to_all(settings, guard_policy)
        if warning is not None:
            log.warning("%s", warning)
        try:
            yield
        finally:
            try:
                await admin_state.aclose()
                await in_use.aclose()
                await shared.aclose()
            finally:
                await ledger.aclose()  # every answered request is over: write what is queued

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if upstreams is not None:
            try:
                async with database():
                    yield
            finally:
                metrics.close()
            return
        app.state.upstreams = owned = Upstreams(
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout, http2=settings.http2
        )
        app.state.catalog = _catalog(owned)
        # In the background: the server answers while a slow upstream is still being asked.
        announcing = asyncio.create_task(app.state.catalog.announce())
        async with database():
            try:
                yield
            finally:
                metrics.close()
                announcing.cancel()
                await app.state.catalog.aclose()
                await owned.aclose()

    def _catalog(client: Upstreams) -> Catalog:
        catalog = Catalog(client, configuration.catalog)
        metrics.bind_catalog(catalog)
        return catalog

    app = FastAPI(
        title="oai2ollama",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's built-in OpenTelemetry checks the global providers on every request;
        # the request log above is this server's telemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.configuration = configuration
    app.state.guards = guard_policy
    app.state.in_use = in_use
    app.state.metrics = metrics
    app.state.ledger = ledger
    app.state.shared = shared  # None without a database
    app.state.in_flight = InFlight()  # ended by the server when its shutdown grace is over (cli.py)
    if upstreams is not None:
        app.state.upstreams = upstreams
        app.state.catalog = _catalog(upstreams)
    # Routes are matched in order: the inference routes, which carry the load, come first.
    for module in routers:
        app.router.routes.extend(module.routes)
    admin.install(app, admin_state, shared)
    app.add_exception_handler(ProxyError, _proxy_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    # The last added runs outermost: the request log sees refused requests too, and the
    # disconnect watcher sits innermost, watching the connection once the body has been read.
    app.add_middleware(CancelOnDisconnect, in_flight=app.state.in_flight, render=error_response)
    app.add_middleware(Guards, policy=guard_policy, render=error_response)
    app.add_middleware(RequestLog, observers=[metrics.observe, *observers])
    return app
