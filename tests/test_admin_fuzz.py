"""Every admin route, given odd values in every field it reads, answers a page (never a 500 or a
traceback) and logs no error: what test_fuzz.py does for the API's routes."""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import pytest

from oai2ollama.admin import routes

from .admin_client import admin_settings, csrf_of, running, sign_in

pytestmark = pytest.mark.anyio

ODD = [
    "",
    " ",
    "-",
    "0",
    "-1",
    "99999999999999999999999",
    "1e309",
    "NaN",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "../../etc/passwd",
    "%00",
    "\x00",
    "\u2028",
    "é" * 300,
    "x" * 5000,
    "{",
    '{"temperature": 1e999}',
    '{"stop": [1, 2]}',
    "[]",
    "2026-13-45T99:99",
    "2026-12-01T10:30",
    "default/gpt-test",
    "tools",
]
FIELDS = {
    "/admin/login": ("token", "csrf", "next"),
    "/admin/models/edit": ("model", "alias", "hidden", "capabilities", "context_length", "options"),
    "/admin/models/reset": ("model",),
    "/admin/keys": ("name", "models", "expires", "tokens_per_day", "requests_per_minute"),
    "/admin/keys/revoke": ("name",),
    "/admin/usage": ("key", "model", "status", "since", "until", "before", "after"),
    "/admin/usage.csv": ("key", "model", "status", "since", "until"),
}


def admin_routes() -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in routes
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD" and "{" not in route.path
    }


async def test_every_admin_route_answers_odd_values_with_a_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(14)
    async with running(admin_settings(f"sqlite:///{tmp_path / 'a.db'}")) as (_, client):
        await sign_in(client)
        csrf = csrf_of((await client.get("/admin")).text)
        with caplog.at_level(logging.ERROR):
            for (method, path), round_ in itertools.product(sorted(admin_routes()), range(12)):
                if path in ("/admin/logout", "/admin/login") and method == "POST":
                    continue  # they end the session or are the sign-in: tested on their own
                values = {name: rng.choice(ODD) for name in FIELDS.get(path, ("x",))}
                if method == "GET":
                    answer = await client.get(path, params=values)
                else:
                    answer = await client.post(path, data={**values, "csrf": csrf if round_ % 4 else rng.choice(ODD)})
                assert answer.status_code < 500, (method, path, values, answer.text[-500:])
                assert "Traceback" not in answer.text and "internal error" not in answer.text
                assert answer.headers["content-security-policy"], (method, path)
            for path in ("/admin/static/%2e%2e%2fauth.py", "/admin/static/admin.py", "/admin/models/x/y", "/admin/%00"):
                assert (await client.get(path)).status_code == 404
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
