"""What a hostile or careless client sends: forged log lines, non-ASCII credentials, two Host headers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.request_log import escaped

from .conftest import ClientFor
from .fakes import API_KEY, BASE_URL, completion
from .loopback import serve

pytestmark = pytest.mark.anyio

FORGED = "gpt-test\n2026-11-30 INFO oai2ollama: GET /admin 200 0.1 ms"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("gpt-4o:latest", "gpt-4o:latest"),
        ("a\nb", "a\\nb"),
        ("a\r\x1b[31mred", "a\\r\\x1b[31mred"),
        ("a\u2028b", "a\\u2028b"),
        ("back\\slash", "back\\\\slash"),
        ("ünïcode", "ünïcode"),  # printable text stays readable
    ],
)
def test_escaped_is_one_printable_line(value: str, shown: str) -> None:
    assert escaped(value) == shown


def test_a_long_value_is_cut_and_its_length_said() -> None:
    shown = escaped("x" * 10_000)
    assert shown.endswith("… (10000 characters)") and len(shown) < 250


async def test_a_model_name_cannot_forge_a_log_line(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="oai2ollama"):
        response = await client.post("/api/show", json={"model": FORGED})
        await client.get("/api/version%0aINFO%20forged")
    assert response.status_code == 404
    lines = [record.getMessage() for record in caplog.records if record.name == "oai2ollama"]
    assert any("model=gpt-test\\n2026-11-30 INFO" in line for line in lines), lines
    assert any("/api/version\\nINFO forged" in line for line in lines), lines
    assert all("\n" not in line for line in lines)


CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/api/chat", lambda body: body["error"]),
        ("/v1/chat/completions", lambda body: body["error"]["message"]),
        ("/v1/messages", lambda body: body["error"]["message"]),
    ],
)
@pytest.mark.parametrize("keys", [[], ["server-key"]], ids=["forwarded", "with-keys"])
@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_a_non_ascii_credential_is_a_clear_400(
    client_for: ClientFor, fake: Any, path: str, error: Any, keys: list[str], header: str
) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    settings = Settings(_env_file=None, base_url=BASE_URL, api_key=None, server_api_key=keys)  # type: ignore[call-arg]
    http = await client_for(settings)
    value = ("Bearer " if header == "authorization" else "") + "clé-€"
    response = await http.post(path, json=CHAT, headers=[(header.encode(), value.encode())])
    assert response.status_code == 400
    assert error(response.json()) == f"the {header} header must be ASCII (an API key is)"
    assert not [r for r in fake.requests if r.method == "POST"]


async def raw_request(url: str, head: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode("latin-1"))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=5)
    writer.close()
    return answer


@pytest.mark.parametrize("hosts", [("evil.example", "localhost"), ("localhost", "localhost")])
async def test_two_host_headers_are_refused(hosts: tuple[str, str]) -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY)  # type: ignore[call-arg]
    async with serve(create_app(settings)) as url:
        head = "".join(f"Host: {host}\r\n" for host in hosts)
        answer = await raw_request(url, f"GET /api/version HTTP/1.1\r\n{head}Connection: close\r\n\r\n")
        single = await raw_request(url, "GET /api/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b'{"error":"more than one Host header"}' in answer
    assert single.startswith(b"HTTP/1.1 200 ")


async def test_every_answered_request_makes_one_record(fake: Any, upstreams: Any, settings: Settings) -> None:
    from oai2ollama.records import RequestRecord

    records: list[RequestRecord] = []
    app = create_app(settings, upstreams=upstreams, observers=[records.append])
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost:11434") as http:
        await http.post("/v1/chat/completions", json=CHAT, headers={"user-agent": "probe/1"})
        await http.get("/api/version")
    chat, version = records
    assert (chat.method, chat.path, chat.dialect, chat.status, chat.model) == (
        "POST",
        "/v1/chat/completions",
        "openai",
        200,
        "gpt-test",
    )
    assert (chat.upstream, chat.upstream_model, chat.client) == ("default", "gpt-test", "probe/1")
    assert chat.first_byte is not None and 0 < chat.first_byte <= chat.duration
    assert (version.path, version.dialect, version.model, version.upstream) == ("/api/version", "ollama", None, None)
