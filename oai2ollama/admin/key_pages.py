"""The Keys page: runtime API keys (made, limited, revoked here; kept by `key_store`) and their usage."""

from __future__ import annotations

import importlib
import logging
import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..request_log import escaped
from . import queries
from .auth import Session
from .pages import engine_of, utc_time
from .render import error_page, page
from .session import Form, change, client_of, context, field, redirect, signed_in

log = logging.getLogger("oai2ollama.admin")


def _key_store() -> Any:
    """The runtime key store, where this build has it."""
    try:
        return importlib.import_module("oai2ollama.key_store")
    except ImportError:
        return None


async def _keys_page(request: Request, session: Session, status: int = 200, **extra: Any) -> Response:
    engine = engine_of(request)
    store = _key_store()
    listed: list[Any] = []
    now = queries.now()
    if engine is not None and store is not None:
        async with engine.connect() as connection:
            listed = await store.list_keys(connection, now=now)
    configured = request.app.state.configuration.keys
    values = context(
        request, session, "keys", title="Keys", keys=listed, now=now, configured=configured,
        available=store is not None, ledger=engine is not None, notice=request.query_params.get("done", ""), **extra,
    )  # fmt: skip
    return page("keys.html", status=status, **values)


@signed_in
async def keys(request: Request, session: Session) -> Response:
    return await _keys_page(request, session)


def _number(form: Form, name: str, what: str) -> int | None:
    text = field(form, name).strip().replace(",", "").replace("_", "")
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**62:
        raise ValueError(f"{what} must be a positive whole number")
    return int(text)


@change
async def key_create(request: Request, session: Session, form: Form) -> Response:
    engine = engine_of(request)
    store = _key_store()
    if engine is None or store is None:
        return error_page(409, "Runtime keys are kept in the database, and this server has none.")
    name = field(form, "name").strip()
    globs = [part.strip() for part in re.split(r"[,\s]+", field(form, "models")) if part.strip()]
    try:
        expires = utc_time(field(form, "expires")) if field(form, "expires").strip() else None
        if field(form, "expires").strip() and expires is None:
            raise ValueError("expires: give a date and time, e.g. 2027-01-31T00:00")
        limits = {
            "tokens_per_day": _number(form, "tokens_per_day", "tokens per day"),
            "requests_per_minute": _number(form, "requests_per_minute", "requests per minute"),
        }
        async with engine.begin() as connection:
            key = await store.add_key(connection, name, models=globs or None, expires_at=expires, **limits)
    except ValueError as exc:  # KeyStoreError is one
        submitted = {
            name: field(form, name) for name in ("name", "models", "expires", "tokens_per_day", "requests_per_minute")
        }
        return await _keys_page(request, session, 400, error=str(exc), submitted=submitted)
    log.info("admin: created key %s from %s", escaped(name), escaped(client_of(request)))
    return await _keys_page(request, session, created={"name": name, "key": key})


@change
async def key_revoke(request: Request, session: Session, form: Form) -> Response:
    engine = engine_of(request)
    store = _key_store()
    if engine is None or store is None:
        return error_page(409, "Runtime keys are kept in the database, and this server has none.")
    name = field(form, "name")
    try:
        async with engine.begin() as connection:
            await store.revoke_key(connection, name)
    except ValueError as exc:
        return error_page(404, str(exc))
    log.info("admin: revoked key %s from %s", escaped(name), escaped(client_of(request)))
    return redirect("/admin/keys?" + urlencode({"done": f"Revoked {name}: it is refused from now on."}))
