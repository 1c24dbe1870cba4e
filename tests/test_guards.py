"""Browser and network guards: the Origin allow-list with CORS, and the DNS-rebinding Host check."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from oai2ollama import cli
from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.guards.hosts import host_allowed, is_loopback, machine_names
from oai2ollama.guards.origins import origin_pattern

from .fakes import API_KEY, BASE_URL, isolate_settings, text_stream
from .loopback import serve

pytestmark = pytest.mark.anyio

ASK = [{"role": "user", "content": "Hi"}]


# ---- pure decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("app.localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_listen_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


NAMES = machine_names("Box.example.lan")


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("localhost", True),
        ("localhost:11434", True),
        ("LocalHost:11434", True),
        ("localhost.:11434", True),
        ("127.0.0.1:11434", True),
        ("127.0.0.2", True),
        ("[::1]:11434", True),
        ("[::1]", True),
        ("0.0.0.0:11434", True),
        ("ui.localhost:3000", True),
        ("box.example.lan:11434", True),
        ("box", True),
        ("box.local:11434", True),
        ("", True),
        ("evil.example:11434", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io:11434", False),
        ("box.evil.example", False),
        ("192.168.1.5:11434", False),
        ("[fe80::1]:11434", False),
        ("[::1", False),
    ],
)
def test_host_header_check(header: str, allowed: bool) -> None:
    assert host_allowed(header, NAMES) is allowed


@pytest.mark.parametrize(
    ("origin", "extra", "allowed"),
    [
        ("http://localhost", (), True),
        ("https://localhost:3000", (), True),
        ("http://127.0.0.1:8080", (), True),
        ("http://0.0.0.0:11434", (), True),
        ("http://[::1]:5173", (), True),
        ("app://obsidian.md", (), True),
        ("file://", (), True),
        ("tauri://localhost", (), True),
        ("vscode-webview://1abc", (), True),
        ("vscode-file://vscode-app", (), True),
        ("chrome-extension://abcdefghijklmnop", (), True),
        ("moz-extension://1234-5678", (), True),
        ("safari-web-extension://ABCD", (), True),
        ("https://evil.example", (), False),
        ("http://localhost.evil.example", (), False),
        ("http://localhost:3000.evil.example", (), False),
        ("http://127.0.0.1.nip.io", (), False),
        ("null", (), False),
        ("ftp://localhost", (), False),
        ("https://chat.example.com", ("https://chat.example.com",), True),
        ("https://chat.example.com", ("https://chat.example.com/",), True),
        ("https://CHAT.example.com", ("https://chat.example.com",), True),
        ("https://a.b.example.com", ("https://*.example.com",), True),
        ("https://example.com.evil.example", ("https://*.example.com",), False),
        ("http://chat.example.com", ("https://*.example.com",), False),
        ("https://chat.example.com:8443", ("https://chat.example.com:*",), True),
        ("https://anything.at.all", ("*",), True),
        ("null", ("null",), True),
    ],
)
def test_origin_allow_list(origin: str, extra: tuple[str, ...], allowed: bool) -> None:
    assert (origin_pattern(extra).fullmatch(origin) is not None) is allowed


# ---- origins through the app --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/api/tags", "ollama"), ("/v1/models", "openai"), ("/api/version", "ollama")],
)
async def test_foreign_origin_is_refused_in_the_routes_dialect(client: httpx.AsyncClient, path: str, shape: str):
    response = await client.get(path, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    error = response.json()["error"]
    message = error if shape == "ollama" else error["message"]
    assert "origin 'https://evil.example' is not allowed" in message and "--origins" in message
    assert "access-control-allow-origin" not in response.headers


async def test_foreign_origin_is_refused_on_inference_before_the_upstream_is_asked(client, fake) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    body = {"model": "gpt-test", "messages": ASK}
    response = await client.post("/api/chat", json=body, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    response = await client.post("/v1/messages", json=body, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == "permission_error"
    assert not [r for r in fake.requests if r.url.path.endswith("/chat/completions")]


async def test_no_origin_header_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tags")
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("origin", ["http://localhost:3000", "chrome-extension://abcdef", "app://obsidian.md"])
async def test_allowed_origin_gets_cors_headers(client: httpx.AsyncClient, origin: str) -> None:
    response = await client.get("/api/tags", headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert "Origin" in response.headers["vary"]


async def test_streamed_and_error_answers_carry_cors_headers_too(client: httpx.AsyncClient, fake) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello", " there"))
    origin = {"Origin": "http://localhost:5173"}
    async with client.stream("POST", "/api/chat", json={"model": "gpt-test", "messages": ASK}, headers=origin) as r:
        lines = [line async for line in r.aiter_lines()]
    assert r.status_code == 200 and len(lines) > 1
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
    missing = await client.post("/api/show", json={"model": "absent"}, headers=origin)
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == "http://localhost:5173"


@pytest.mark.parametrize(
    "settings_overrides", [{"origins": ["https://*.example.com", "https://chat.example.org"]}], indirect=True
)
async def test_configured_origins_with_wildcards(client: httpx.AsyncClient) -> None:
    for origin in ("https://ui.example.com", "https://chat.example.org", "http://localhost"):
        response = await client.get("/api/tags", headers={"Origin": origin})
        assert response.status_code == 200, origin
        assert response.headers["access-control-allow-origin"] == origin
    for origin in ("https://example.com.evil.example", "https://chat.example.org.evil.example"):
        assert (await client.get("/api/tags", headers={"Origin": origin})).status_code == 403, origin


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


@pytest.mark.parametrize("settings_overrides", [{"origins": ["*"]}], indirect=True)
async def test_star_allows_every_origin(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tags", headers={"Origin": "https://anywhere.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://anywhere.example"


PREFLIGHT = {
    "Origin": "http://localhost:3000",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os, x-stainless-brand-new",
}


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/v1/messages", "/api/tags"])
async def test_preflight_of_an_allowed_origin(client: httpx.AsyncClient, path: str) -> None:
    response = await client.options(path, headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "DELETE", "HEAD"} <= methods
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    wanted = {"authorization", "content-type", "user-agent", "accept", "x-requested-with", "openai-beta"}
    wanted |= {"x-api-key", "anthropic-version", "anthropic-beta", "x-stainless-os", "x-stainless-retry-count"}
    assert wanted <= allowed
    assert "x-stainless-brand-new" in allowed, "newer members of the x-stainless family are echoed"
    assert int(response.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize("settings_overrides", [{"origins": ["https://chat.example.com"]}], indirect=True)
async def test_preflight_from_an_allowed_public_page_may_reach_this_machine(client: httpx.AsyncClient) -> None:
    # Chrome's Private Network Access: a public page asks before calling a server on localhost.
    headers = {**PREFLIGHT, "Origin": "https://chat.example.com", "Access-Control-Request-Private-Network": "true"}
    response = await client.options("/v1/chat/completions", headers=headers)
    assert response.status_code == 204
    assert response.headers["access-control-allow-private-network"] == "true"
    assert "access-control-allow-private-network" not in (await client.options("/api/chat", headers=PREFLIGHT)).headers


async def test_preflight_of_a_foreign_origin_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/chat", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("settings_overrides", [{"server_api_key": ["team-key-1"]}], indirect=True)
async def test_preflight_needs_no_key(client: httpx.AsyncClient) -> None:
    # Browsers never send credentials with a preflight; the real request then carries the key.
    assert (await client.options("/api/chat", headers=PREFLIGHT)).status_code == 204
    origin = {"Origin": "http://localhost:3000"}
    refused = await client.get("/api/tags", headers=origin)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "http://localhost:3000", "the page can read why"
    accepted = await client.get("/api/tags", headers={**origin, "Authorization": "Bearer team-key-1"})
    assert accepted.status_code == 200


async def test_openai_client_sent_from_a_foreign_page_is_refused(app) -> None:  # type: ignore[no-untyped-def]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app))
    async with openai.AsyncOpenAI(
        base_url="http://127.0.0.1:11434/v1",
        api_key="k",
        http_client=http,
        max_retries=0,
        default_headers={"Origin": "https://evil.example"},
    ) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.models.list()
    assert "origin" in caught.value.message


# ---- DNS rebinding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:11434", "localhost.evil.example", "127.0.0.1.nip.io:11434", "192.168.1.5"],
)
async def test_loopback_server_refuses_foreign_host(client: httpx.AsyncClient, fake, host: str) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    for method, path, body in (("GET", "/api/tags", None), ("POST", "/api/chat", {"model": "gpt-test"})):
        response = await client.request(method, path, json=body, headers={"Host": host})
        assert response.status_code == 403, (host, path)
        assert "DNS rebinding" in response.json()["error"]
    # Even a preflight: the rebinding page is same-origin, but must learn nothing.
    preflight = await client.options("/api/chat", headers={**PREFLIGHT, "Host": host})
    assert preflight.status_code == 403
    assert not [r for r in fake.requests if r.url.path.endswith("/chat/completions")]


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:11434",
        "127.0.0.1:11434",
        "[::1]:11434",
        "ui.localhost:11434",
        socket.gethostname(),
        f"{socket.gethostname()}.local:11434",
    ],
)
async def test_loopback_server_accepts_local_names(client: httpx.AsyncClient, host: str) -> None:
    response = await client.get("/api/tags", headers={"Host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "settings_overrides", [{"host": "0.0.0.0"}, {"host": "192.168.1.5"}, {"host": "::"}], indirect=True
)
async def test_server_on_other_addresses_does_not_check_host(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tags", headers={"Host": "oai2ollama.lan.example:11434"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("settings_overrides", "host", "status"),
    [
        ({"host": "0.0.0.0", "allowed_hosts": "localhost"}, "evil.example:11434", 403),
        ({"host": "0.0.0.0", "allowed_hosts": "localhost"}, "localhost:11434", 200),
        ({"host": "0.0.0.0", "allowed_hosts": "localhost"}, "127.0.0.1:11434", 200),
        ({"host": "0.0.0.0", "allowed_hosts": "gw.example,*.corp.example"}, "GW.example", 200),
        ({"host": "0.0.0.0", "allowed_hosts": "gw.example,*.corp.example"}, "ai.corp.example:443", 200),
        ({"host": "0.0.0.0", "allowed_hosts": "gw.example,*.corp.example"}, "corp.example.evil.example", 403),
        ({"host": "localhost", "allowed_hosts": "gw.example"}, "gw.example", 200),
    ],
    indirect=["settings_overrides"],
)
async def test_allowed_hosts_keep_the_host_check_on_in_a_container(
    client: httpx.AsyncClient, host: str, status: int
) -> None:
    response = await client.get("/api/tags", headers={"Host": host})
    assert response.status_code == status, response.text


# ---- the start-up warning -----------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """cli.main runs up to cli.serve (uvicorn's start), which only records what it was asked."""
    isolate_settings(monkeypatch, tmp_path)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "serve", lambda app, **kwargs: calls.append(kwargs))
    return calls


def test_warning_when_listening_on_all_interfaces_without_keys(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Without a database: the keys are all known before the server starts (see test_runtime_keys
    # for the warning once a database's keys are read).
    cli.main(["--base-url", "http://up/v1", "--host", "0.0.0.0", "--database-url", "none"])
    assert started and started[0]["host"] == "0.0.0.0"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("oai2ollama: warning: listening on 0.0.0.0:11434 without an API key")
    assert "--server-api-key" in lines[0] and "[[keys]]" in lines[0] and "oai2ollama keys add" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "0.0.0.0", "--server-api-key", "team-key-1"],
        ["--host", "127.0.0.1"],
        [],
    ],
)
def test_no_warning_with_keys_or_on_loopback(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    cli.main(["--base-url", "http://up/v1", "--database-url", "none", *args])
    assert started
    assert capsys.readouterr().err == ""


def test_keys_from_the_config_file_silence_the_warning(
    started: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text('[[keys]]\nkey = "team-key-1"\n')
    cli.main(["--base-url", "http://up/v1", "--host", "0.0.0.0", "--config", str(config), "--database-url", "none"])
    assert started
    assert capsys.readouterr().err == ""


# ---- a real server ------------------------------------------------------------------------------


async def test_guards_on_a_loopback_server() -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, server_api_key=["real-key-1"])  # type: ignore[call-arg]
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        key = {"Authorization": "Bearer real-key-1"}
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/api/version")).status_code == 401
        assert (await http.get("/api/version", headers=key)).status_code == 200
        assert (await http.get("/api/version", headers={**key, "Host": "evil.example"})).status_code == 403
        assert (await http.get("/api/version", headers={**key, "Origin": "https://evil.example"})).status_code == 403
        assert (await http.options("/api/chat", headers=PREFLIGHT)).status_code == 204
