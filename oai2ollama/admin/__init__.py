"""The admin page at `/admin`: see and steer the gateway in a browser (issue 14).

`auth` (token, sessions, CSRF, failed logins) and `session` (the checks in front of every page)
decide who may open it; `pages` renders its pages from `templates/` with `static/` assets, reading
the ledger through `queries` (aggregated in the database, paged by index) and drawing `charts`;
`edits` keeps its edits to models, which every process applies. The guards run first, as for every
route: the admin page takes no API key, and no page of another origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.routing import BaseRoute, Route

from ..shared_state import SharedState
from . import edits, key_pages, pages, session
from .render import error_page
from .state import AdminState

__all__ = ["AdminState", "error_page", "install", "routes"]

routes: list[BaseRoute] = [
    Route("/admin", pages.overview, methods=["GET"]),
    Route("/admin/", pages.overview, methods=["GET"]),
    Route("/admin/login", session.login_form, methods=["GET"]),
    Route("/admin/login", session.login, methods=["POST"]),
    Route("/admin/logout", session.logout, methods=["POST"]),
    Route("/admin/models", pages.models, methods=["GET"]),
    Route("/admin/models/edit", pages.model_edit_form, methods=["GET"]),
    Route("/admin/models/edit", pages.model_edit, methods=["POST"]),
    Route("/admin/models/reset", pages.model_reset, methods=["POST"]),
    Route("/admin/models/refresh", pages.models_refresh, methods=["POST"]),
    Route("/admin/keys", key_pages.keys, methods=["GET"]),
    Route("/admin/keys", key_pages.key_create, methods=["POST"]),
    Route("/admin/keys/revoke", key_pages.key_revoke, methods=["POST"]),
    Route("/admin/usage", pages.usage, methods=["GET"]),
    Route("/admin/usage.csv", pages.usage_csv, methods=["GET"]),
    Route("/admin/settings", pages.settings, methods=["GET"]),
    Route("/admin/static/{name}", pages.static, methods=["GET"]),
    Route("/admin/{rest:path}", pages.not_found, methods=["GET", "POST"]),
]


def install(app: FastAPI, admin: AdminState, shared: SharedState | None) -> None:
    """Mount the pages and, with a database, keep every process's models in step with the edits."""
    app.state.admin = admin
    app.router.routes.extend(routes)
    if shared is not None:
        shared.watch(edits.TOPIC, _reapply(app))
        shared.watch(edits.REFRESH_TOPIC, _refresh(app))


def _refresh(app: FastAPI) -> Callable[[AsyncConnection], Awaitable[None]]:
    first = True  # the first poll reads every topic: start-up has just listed the upstreams

    async def reload(connection: AsyncConnection) -> None:
        nonlocal first
        catalog = getattr(app.state, "catalog", None)
        if catalog is not None and not first:
            catalog.refresh_in_background()  # the poll must not wait for the upstreams
        first = False

    return reload


def _reapply(app: FastAPI) -> Callable[[AsyncConnection], Awaitable[None]]:
    async def reload(connection: AsyncConnection) -> None:
        catalog = getattr(app.state, "catalog", None)
        if catalog is not None:
            catalog.apply_edits(await edits.load(connection))

    return reload
