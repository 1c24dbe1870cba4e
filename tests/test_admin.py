"""The admin page: who may open it (token, session cookie, CSRF, origins, API keys), the generated
token, its pages with data, and that nothing secret or unescaped reaches them."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from oai2ollama.ledger import tables

from .admin_client import ADMIN_TOKEN, ORIGIN, admin_settings, csrf_of, post, running, sign_in
from .fakes import API_KEY, FakeUpstream, text_stream
from .polling import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'admin.db'}"


async def test_without_a_session_every_page_leads_to_the_login_page(sqlite_url: str) -> None:
    async with running(admin_settings(sqlite_url)) as (_, client):
        for path in ("/admin", "/admin/models", "/admin/usage?model=x", "/admin/settings", "/admin/usage.csv"):
            answer = await client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/admin/login?next=/admin")
        assert (await client.get("/")).text == "Ollama is running"


async def test_signing_in_sets_a_strict_http_only_cookie_and_signing_out_ends_it(sqlite_url: str) -> None:
    async with running(admin_settings(sqlite_url)) as (_, client):
        answer = await sign_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin"
        cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith("oai2ollama_admin="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
        assert "Max-Age=43200" in cookie and "Secure" not in cookie  # plain HTTP here
        page = await client.get("/admin")
        assert page.status_code == 200 and "Overview" in page.text
        out = await client.post("/admin/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/admin/login"
        assert (await client.get("/admin")).status_code == 303


async def test_signing_out_ends_every_session_on_every_process_even_a_copied_cookie(database_url: str) -> None:
    settings = admin_settings(database_url)
    async with running(settings) as (app, client), running(settings) as (other_app, other):
        await sign_in(client)
        copied = client.cookies["oai2ollama_admin"]
        await sign_in(other)  # another admin, on another process
        for browser in (client, other):
            assert (await browser.get("/admin")).status_code == 200
        thief = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ORIGIN)
        thief.cookies.set("oai2ollama_admin", copied, domain="127.0.0.1", path="/admin")
        assert (await thief.get("/admin")).status_code == 200
        out = await post(client, "/admin/logout", {})
        assert out.status_code == 303 and out.headers["location"] == "/admin/login"
        assert (await thief.get("/admin")).status_code == 303  # at once, on the process signed out of
        await other_app.state.shared.poll()  # what its poller does within a second
        assert (await other.get("/admin")).status_code == 303
        other.cookies.set("oai2ollama_admin", copied, domain="127.0.0.1", path="/admin")
        assert (await other.get("/admin")).status_code == 303
        await thief.aclose()
        other.cookies.clear()
        assert (await sign_in(other)).status_code == 303  # signing in again works everywhere
        client.cookies.set("oai2ollama_admin", other.cookies["oai2ollama_admin"], domain="127.0.0.1", path="/admin")
        assert (await client.get("/admin")).status_code == 200


async def test_without_a_database_signing_out_ends_that_session_and_no_other() -> None:
    async with running(admin_settings("none")) as (app, client):
        await sign_in(client)
        copied = client.cookies["oai2ollama_admin"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=ORIGIN) as other:
            await sign_in(other)
            assert (await post(client, "/admin/logout", {})).status_code == 303
            client.cookies.set("oai2ollama_admin", copied, domain="127.0.0.1", path="/admin")
            assert (await client.get("/admin")).status_code == 303
            assert (await other.get("/admin")).status_code == 200


async def test_the_cookie_is_secure_over_https_or_when_told(sqlite_url: str) -> None:
    async with running(admin_settings(sqlite_url), base_url="https://127.0.0.1:11434") as (_, client):
        answer = await sign_in(client)
        assert "Secure" in answer.headers["set-cookie"]
    async with running(admin_settings(sqlite_url, admin_secure_cookie=True)) as (_, client):
        assert "Secure" in (await client.get("/admin/login")).headers["set-cookie"]


async def test_a_wrong_token_is_refused_and_repeated_failures_wait(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(admin_settings(sqlite_url)) as (_, client):
        with caplog.at_level(logging.INFO, logger="oai2ollama.admin"):
            answer = await sign_in(client, "not-the-admin-token-at-all")
            assert answer.status_code == 401 and "not the admin token" in answer.text
            assert "oai2ollama_admin=" not in answer.headers.get("set-cookie", "").replace("_login=", "")
            for _ in range(4):
                await sign_in(client, "not-the-admin-token-at-all")
            limited = await sign_in(client, ADMIN_TOKEN)  # even the right one, while the client waits
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        assert "failed sign-in" in caplog.text and "not-the-admin-token" not in caplog.text
        assert ADMIN_TOKEN not in caplog.text


async def test_changes_need_the_sessions_csrf_token(sqlite_url: str) -> None:
    async with running(admin_settings(sqlite_url)) as (_, client):
        form = await client.get("/admin/login")
        no_csrf = await client.post("/admin/login", data={"token": ADMIN_TOKEN})
        assert no_csrf.status_code == 403 and "text/html" in no_csrf.headers["content-type"]
        assert csrf_of(form.text)
        await sign_in(client)
        for data in ({}, {"csrf": "forged"}, {"csrf": ""}):
            refused = await client.post("/admin/models/refresh", data=data)
            assert refused.status_code == 403, data
            assert (await client.post("/admin/logout", data=data)).status_code == 403
        assert (await post(client, "/admin/models/refresh", {})).status_code == 303
        assert (await client.get("/admin/logout")).status_code == 404  # changes are POSTs only
        assert (await client.get("/admin")).status_code == 200


async def test_another_origin_is_refused_even_one_the_api_allows(sqlite_url: str) -> None:
    settings = admin_settings(sqlite_url, origins=["https://app.example.com"])
    async with running(settings) as (_, client):
        await sign_in(client)
        csrf = csrf_of((await client.get("/admin")).text)
        for origin in ("https://evil.example", "https://app.example.com", "http://localhost:3000", "null"):
            answer = await client.post("/admin/models/refresh", data={"csrf": csrf}, headers={"origin": origin})
            assert answer.status_code == 403, origin
            assert "text/html" in answer.headers["content-type"]
            assert "access-control-allow-origin" not in answer.headers
        same = await client.post("/admin/models/refresh", data={"csrf": csrf}, headers={"origin": ORIGIN})
        assert same.status_code == 303
        # A DNS-rebinding page (another Host) is refused before anything else.
        assert (await client.get("/admin/login", headers={"host": "evil.example"})).status_code == 403


async def test_api_keys_do_not_open_the_admin_page_and_the_admin_token_is_no_api_key(sqlite_url: str) -> None:
    async with running(admin_settings(sqlite_url, server_api_key=["client-key-0123456789"])) as (_, client):
        with_key = await client.get("/admin", headers={"authorization": "Bearer client-key-0123456789"})
        assert with_key.status_code == 303  # to the login page: a key is not a session
        login = await client.get("/admin/login")  # no key needed to reach the login page
        assert login.status_code == 200
        as_key = await client.get("/api/tags", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert as_key.status_code == 401
        bearer = await client.get("/admin", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert bearer.status_code == 303  # nor is the token as a header: only the cookie opens it


async def test_pages_carry_security_headers_and_errors_are_pages(sqlite_url: str) -> None:
    async with running(admin_settings(sqlite_url)) as (_, client):
        await sign_in(client)
        for path in ("/admin", "/admin/login", "/admin/nowhere", "/admin/static/admin.css"):
            answer = await client.get(path)
            headers = answer.headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert "'unsafe-inline'" not in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "same-origin"
        missing = await client.get("/admin/nowhere")
        assert missing.status_code == 404 and missing.text.startswith("<!doctype html>")
        assert (await client.get("/admin")).headers["cache-control"] == "no-store"
        page = (await client.get("/admin")).text
        assert "<script>" not in page and "style=" not in page  # no inline script or style (the CSP)
        assert (await client.get("/admin/static/admin.js")).headers["content-type"].startswith("text/javascript")
        assert (await client.get("/admin/static/..%2Fauth.py")).status_code == 404


async def test_a_generated_token_is_printed_once_and_stored_hashed(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = admin_settings(database_url, admin_token=None)
    with caplog.at_level(logging.INFO, logger="oai2ollama.admin"):
        async with running(settings) as (app, client):
            printed = re.findall(r"generated admin token \(stored hashed, shown only this once\): (\S+)", caplog.text)
            assert len(printed) == 1 and "http://localhost:11434/admin" in caplog.text
            token = printed[0]
            async with app.state.ledger.engine.connect() as connection:
                stored = (await connection.execute(sa.select(tables.secrets))).mappings().all()
            digest = next(row["digest"] for row in stored if row["name"] == "admin_token")
            assert digest.startswith("scrypt$") and token not in digest
            assert (await sign_in(client, token)).status_code == 303
            session = client.cookies["oai2ollama_admin"]
        caplog.clear()
        async with running(settings) as (_, again):  # the next start, or another process
            assert "generated admin token" not in caplog.text and token not in caplog.text
            again.cookies.set("oai2ollama_admin", session, domain="127.0.0.1", path="/admin")
            assert (await again.get("/admin")).status_code == 200  # sessions hold across processes
            assert (await again.get("/admin/login")).status_code == 303  # signed in already
            again.cookies.clear()
            assert (await sign_in(again, token)).status_code == 303


async def test_without_a_database_a_token_is_generated_at_every_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="oai2ollama.admin"):
        async with running(admin_settings("none", admin_token=None)) as (_, client):
            token = re.findall(r"no database: a new one at every start\): (\S+)", caplog.text)[0]
            assert (await sign_in(client, token)).status_code == 303
            assert (await client.get("/admin/usage")).status_code == 200


async def test_the_cli_makes_a_new_token_which_ends_every_session(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from oai2ollama.cli import main

    async with running(admin_settings(sqlite_url, admin_token=None)) as (app, client):
        admin = app.state.admin
        old = admin.keyring
        await asyncio.to_thread(main, ["admin-token", "--database-url", sqlite_url])
        token = capsys.readouterr().out.strip()
        assert len(token) >= 40
        await app.state.shared.poll()
        assert admin.keyring is not old
        assert (await sign_in(client, token)).status_code == 303
        cookie = client.cookies["oai2ollama_admin"]
        assert admin.keyring.session(cookie) is not None and old.session(cookie) is None
        async with app.state.ledger.engine.connect() as connection:
            digests = [row.digest for row in await connection.execute(sa.select(tables.secrets.c.digest))]
        assert all(token not in digest for digest in digests)


async def test_settings_show_no_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    config = tmp_path / "oai2ollama.toml"
    config.write_text(
        '[[upstreams]]\nname = "other"\nbase_url = "https://user:hunter2-password@other.test/v1?key=query-secret-123"\n'
        'api_key = "sk-other-secret-999999"\nheaders = { "X-Custom-Auth" = "header-secret-777777" }\n'
        '[[keys]]\nkey = "file-key-secret-5555555"\nname = "ci"\n'
    )
    settings = admin_settings(url, server_api_key=["flag-key-secret-4444444"], config=config)
    async with running(settings) as (_, client):
        await sign_in(client)
        page = (await client.get("/admin/settings")).text
    for secret in (API_KEY, ADMIN_TOKEN, "hunter2-password", "query-secret-123", "sk-other-secret-999999",
                   "header-secret-777777", "file-key-secret-5555555", "flag-key-secret-4444444"):  # fmt: skip
        assert secret not in page, secret
    assert "X-Custom-Auth" in page and "other.test" in page and "ci" in page and "set (hidden)" in page


async def test_a_database_password_is_not_shown(postgres_server: object) -> None:
    from .databases import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    url = postgres_server.new_database()
    password = httpx.URL(url.replace("postgresql://", "http://")).password
    async with running(admin_settings(url)) as (_, client):
        await sign_in(client)
        page = (await client.get("/admin/settings")).text
    assert "postgresql" in page
    assert not password or password not in page


async def test_a_model_name_with_markup_is_shown_as_text(sqlite_url: str) -> None:
    fake = FakeUpstream()
    fake.models.append({"id": "<script>alert(1)</script>", "object": "model", "owned_by": "x"})
    fake.on("POST", "/chat/completions", text_stream("ok"))
    async with running(admin_settings(sqlite_url), fake) as (app, client):
        await sign_in(client)
        chat = {"model": "<script>alert(1)</script>", "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post("/api/chat", json=chat, headers={"user-agent": "<b>agent</b>"})).status_code == 200
        await until(lambda: app.state.ledger.written >= 1, 10)
        for path in ("/admin/models", "/admin/usage"):
            page = (await client.get(path)).text
            assert "<script>alert" not in page and "<b>agent" not in page, path
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "&lt;b&gt;agent&lt;/b&gt;" in page
