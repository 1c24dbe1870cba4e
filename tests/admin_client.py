"""An app with its lifespan running (database, poller, admin token) and a client that can sign in to
its admin page: what the admin page's tests share."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.upstream import Upstreams

from .fakes import API_KEY, BASE_URL, FakeUpstream
from .polling import until

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ORIGIN = "http://127.0.0.1:11434"


def admin_settings(database_url: str | None = None, **values: Any) -> Settings:
    given: dict[str, Any] = {"base_url": BASE_URL, "api_key": API_KEY, "admin_token": ADMIN_TOKEN}
    if database_url is not None:
        given["database_url"] = database_url
    given.update(values)
    return Settings(_env_file=None, **given)  # type: ignore[call-arg]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    form = await client.get("/admin/login")
    assert form.status_code == 200, form.text
    return await client.post("/admin/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/admin"})


async def post(client: httpx.AsyncClient, path: str, data: dict[str, Any], *, page: str = "/admin") -> httpx.Response:
    """A change, with the CSRF token of a page the admin has open."""
    csrf = csrf_of((await client.get(page)).text)
    return await client.post(path, data={**data, "csrf": csrf})


@asynccontextmanager
async def running(
    settings: Settings, fake: FakeUpstream | None = None, *, base_url: str = ORIGIN
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan, and a client of it; returns once the admin page can sign in."""
    upstreams = Upstreams(transport=(fake or FakeUpstream()).transport())
    app = create_app(settings, upstreams=upstreams)
    try:
        async with app.router.lifespan_context(app):
            await until(lambda: app.state.admin.keyring is not None, 15)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url) as client:
                yield app, client
    finally:
        await upstreams.aclose()
