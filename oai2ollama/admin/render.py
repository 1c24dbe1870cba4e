"""HTML out: the templates (Jinja2, every value escaped), the headers every admin answer carries,
and the admin page's error pages."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, Response

# Self only, no inline script or style; no framing; nothing leaks in a Referer; nothing is cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    # Not no-referrer: under it Chromium sends `Origin: null` with the page's own forms, which the
    # same-origin check must refuse. same-origin tells nothing to other sites either.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PACKAGE = resources.files("oai2ollama.admin")


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(PACKAGE / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = number
    env.filters["seconds"] = seconds
    return env


def number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def seconds(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def page(template: str, status: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def error_page(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error as an HTML page (the admin page's own, and the guards' refusals of it)."""
    return page("error.html", status=status, headers=headers, status_code=status, message=message)


@cache
def static_file(name: str) -> bytes | None:
    """A file of `static/` (scripts, styles), read once."""
    if "/" in name or name.startswith("."):
        return None
    path = PACKAGE / "static" / name
    return path.read_bytes() if path.is_file() else None
