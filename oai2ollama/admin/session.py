"""Signing in and out, and the checks in front of every admin page: a session for each page, and a
CSRF token for each change (POST only). Forms are read here too (URL-encoded, bounded)."""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..request_log import escaped
from .auth import SESSION_SECONDS, Session
from .render import SECURITY_HEADERS, error_page, page
from .state import AdminState

log = logging.getLogger("oai2ollama.admin")

COOKIE = "oai2ollama_admin"
LOGIN_COOKIE = "oai2ollama_admin_login"
PATH = "/admin"
MAX_FORM = 256 * 1024

Form = dict[str, list[str]]
Page = Callable[[Request, Session], Awaitable[Response]]
Change = Callable[[Request, Session, Form], Awaitable[Response]]


def state_of(request: Request) -> AdminState:
    return request.app.state.admin  # type: ignore[no-any-return]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def read_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise ValueError("form too large")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)


def field(form: Form, name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or state_of(request).settings.admin_secure_cookie


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def current(request: Request) -> Session | None:
    keyring = state_of(request).keyring
    return keyring.session(request.cookies.get(COOKIE)) if keyring is not None else None


def _not_ready() -> Response:
    return error_page(503, "The admin page is starting: it waits for its database. Try again in a moment.")


def signed_in(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page that needs a session; without one, the login page (which comes back here)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        session = current(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect(f"{PATH}/login?next={quote(target, safe='/')}")
        return await handler(request, session)

    return endpoint


def change(handler: Change) -> Callable[[Request], Awaitable[Response]]:
    """A change: a POST with a session and that session's CSRF token (field `csrf` or header
    `X-CSRF-Token`), else 403."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        session = current(request)
        if session is None:
            return error_page(403, "Your session has ended: sign in again, then repeat the change.")
        try:
            form = await read_form(request)
        except ValueError:
            return error_page(413, "The form is too large.")
        presented = request.headers.get("x-csrf-token") or field(form, "csrf")
        if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
            log.warning("admin: refused a change without a valid CSRF token from %s", escaped(client_of(request)))
            return error_page(403, "This form has expired or did not come from this page (CSRF check): reload it.")
        return await handler(request, session, form)

    return endpoint


def _next(value: str) -> str:
    """Where to go after signing in: an admin page of ours, nothing else."""
    if value.startswith(PATH) and not value.startswith("//") and "\\" not in value and "\n" not in value:
        return value
    return PATH


def _login_page(request: Request, status: int = 200, message: str = "", next_page: str = PATH) -> Response:
    keyring = state_of(request).keyring
    if keyring is None:
        return _not_ready()
    nonce = secrets.token_urlsafe(16)
    response = page(
        "login.html",
        status=status,
        title="Sign in",
        csrf=keyring.login_csrf(nonce),
        message=message,
        next_page=_next(next_page),
    )
    set_cookie(response, request, LOGIN_COOKIE, nonce, 3600)
    return response


async def login_form(request: Request) -> Response:
    if current(request) is not None:
        return redirect(_next(request.query_params.get("next", PATH)))
    return _login_page(request, next_page=request.query_params.get("next", PATH))


async def login(request: Request) -> Response:
    admin = state_of(request)
    keyring = admin.keyring
    if keyring is None:
        return _not_ready()
    try:
        form = await read_form(request)
    except ValueError:
        return error_page(413, "The form is too large.")
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    presented = field(form, "csrf")
    if not nonce or not hmac.compare_digest(presented.encode(), keyring.login_csrf(nonce).encode()):
        return error_page(403, "This sign-in form has expired or did not come from this page (CSRF check): reload it.")
    client = client_of(request)
    wait = admin.logins.wait(client)
    if wait > 0:
        log.warning("admin: sign-in refused for %s: too many failed attempts", escaped(client))
        headers = {"Retry-After": str(int(wait) + 1)}
        return error_page(429, f"Too many failed sign-ins: wait {int(wait) + 1} s, then try again.", headers)
    if not keyring.check(field(form, "token").strip()):
        admin.logins.failed(client)
        log.warning("admin: failed sign-in from %s", escaped(client))
        return _login_page(request, 401, "That is not the admin token.", field(form, "next"))
    log.info("admin: signed in from %s", escaped(client))
    response = redirect(_next(field(form, "next")))
    set_cookie(response, request, COOKIE, keyring.issue(), SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    return response


@change
async def logout(request: Request, session: Session, form: Form) -> Response:
    await state_of(request).sign_out(session)
    log.info("admin: signed out from %s", escaped(client_of(request)))
    response = redirect(f"{PATH}/login")
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    return response


def context(request: Request, session: Session, active: str, **values: Any) -> dict[str, Any]:
    """What every signed-in page's template gets."""
    return {"csrf": session.csrf, "active": active, "path": request.url.path, **values}
