"""The request-body limit: 413 with a message naming the limit, from Content-Length before anything is
read, and while a chunked body arrives (never more than one chunk past the limit is held)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from oai2ollama.app import create_app
from oai2ollama.config import DEFAULT_MAX_BODY_SIZE, Settings, parse_bytes

from .fakes import API_KEY, BASE_URL, FakeUpstream, isolate_settings, text_stream
from .loopback import serve

pytestmark = pytest.mark.anyio

LIMIT = 4096
ASK = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_body_size": "4k"}


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with spaces to exactly `size` bytes."""
    encoded = json.dumps(body).encode()
    assert len(encoded) <= size
    return encoded + b" " * (size - len(encoded))


async def pieces(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ---- the setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("64m", 64 * 1024 * 1024),
        ("64MiB", 64 * 1024 * 1024),
        ("64 mb", 64 * 1024 * 1024),
        ("1g", 1024**3),
        ("100b", 100),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_bytes(text) == size
    assert Settings(_env_file=None, max_body_size=text).max_body_size == size  # type: ignore[call-arg]


@pytest.mark.parametrize("text", ["", "lots", "64x", "-1", "1.5m", "0"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, max_body_size=text)  # type: ignore[call-arg]
    assert caught.value.errors()[0]["loc"][0] == "max_body_size"


def test_default_fits_several_images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)
    assert Settings(_env_file=None).max_body_size == DEFAULT_MAX_BODY_SIZE == 64 * 1024 * 1024  # type: ignore[call-arg]
    # Four 10 MB photos, base64-encoded, in one request.
    assert DEFAULT_MAX_BODY_SIZE > 4 * 10_000_000 * 4 / 3
    settings = CliApp.run(Settings, cli_args=["--base-url", "http://up/v1", "--max-body-size", "512k"])
    assert settings.max_body_size == 512 * 1024
    monkeypatch.setenv("MAX_BODY_SIZE", "2m")
    assert CliApp.run(Settings, cli_args=[]).max_body_size == 2 * 1024 * 1024


# ---- Content-Length -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"model": "gpt-test", "messages": ASK}),
        ("/v1/chat/completions", {"model": "gpt-test", "messages": ASK}),
        ("/v1/messages", {"model": "gpt-test", "max_tokens": 9, "messages": ASK}),
    ],
)
async def test_a_body_at_the_limit_passes_one_byte_more_is_413(
    client: httpx.AsyncClient, fake: FakeUpstream, path: str, body: dict[str, Any]
) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    headers = {"content-type": "application/json"}
    assert (await client.post(path, content=padded(body, LIMIT), headers=headers)).status_code == 200
    response = await client.post(path, content=padded(body, LIMIT + 1), headers=headers)
    assert response.status_code == 413
    data = response.json()
    if path == "/api/chat":
        message = data["error"]
    elif path == "/v1/messages":
        assert data["type"] == "error" and data["error"]["type"] == "request_too_large"
        message = data["error"]["message"]
    else:
        assert data["error"]["type"] == "invalid_request_error"
        message = data["error"]["message"]
    assert message == "request body too large: 4097 bytes, the limit is 4 KiB"
    assert len([r for r in fake.requests if r.url.path.endswith("/chat/completions")]) == 1


async def test_content_length_is_judged_before_the_body_is_read(app: Any) -> None:
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": received < 10}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = asgi_scope("/api/chat", [(b"content-length", b"104857600")])
    await app(scope, receive, send)
    assert received == 0
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"error": "request body too large: 104857600 bytes, the limit is 4 KiB"}


async def test_an_invalid_content_length_is_400(app: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(asgi_scope("/api/chat", [(b"content-length", b"12abc")]), receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"]) == {"error": "invalid Content-Length header"}


def asgi_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:11434"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 11434),
    }


# ---- chunked bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/v1/messages"])
async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, fake, path: str) -> None:  # type: ignore[no-untyped-def]
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    body = {"model": "gpt-test", "max_tokens": 9, "messages": ASK}
    small = await client.post(path, content=pieces(padded(body, LIMIT)))
    assert small.status_code == 200
    assert "content-length" not in small.request.headers
    response = await client.post(path, content=pieces(padded(body, LIMIT + 1)))
    assert response.status_code == 413
    assert "the limit is 4 KiB" in response.text


async def test_a_chunked_body_is_not_read_past_the_limit(app: Any) -> None:
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b" " * 1000, "more_body": received < 100}  # 100 kB in all

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(asgi_scope("/api/chat", [(b"transfer-encoding", b"chunked")]), receive, send)
    assert received == 5, "4 KiB is 4.1 pieces of 1000 bytes: the fifth one crosses the limit"
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"error": "request body too large: the limit is 4 KiB"}


# ---- the official clients -----------------------------------------------------------------------

BIG_IMAGE = base64.b64encode(b"\x89PNG" + b"\0" * 8000).decode()


async def test_clients_get_413_naming_the_limit(app: Any, ollama_client: ollama.AsyncClient, fake) -> None:  # type: ignore[no-untyped-def]
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    with pytest.raises(ollama.ResponseError) as refused:
        await ollama_client.chat(model="gpt-test", messages=[{"role": "user", "content": "?", "images": [BIG_IMAGE]}])
    assert refused.value.status_code == 413 and "the limit is 4 KiB" in refused.value.error
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app))
    async with openai.AsyncOpenAI(
        base_url="http://127.0.0.1:11434/v1", api_key="k", http_client=http, max_retries=0
    ) as client:
        with pytest.raises(openai.APIStatusError) as too_large:
            await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x" * LIMIT}])
    assert too_large.value.status_code == 413 and "the limit is 4 KiB" in too_large.value.message
    async with anthropic.AsyncAnthropic(
        base_url="http://127.0.0.1:11434",
        api_key="k",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app)),
        max_retries=0,
    ) as claude:
        with pytest.raises(anthropic.APIStatusError) as refused_too:
            await claude.messages.create(
                model="gpt-test", max_tokens=9, messages=[{"role": "user", "content": "x" * LIMIT}]
            )
    assert refused_too.value.status_code == 413
    assert not [r for r in fake.requests if r.url.path.endswith("/chat/completions")]


# ---- a real server ------------------------------------------------------------------------------


async def test_loopback_server_answers_413_for_both_kinds_of_body() -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, max_body_size=LIMIT)  # type: ignore[call-arg]
    body = padded({"model": "gpt-test", "messages": ASK}, 3 * LIMIT)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        declared = await http.post("/api/chat", content=body, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json() == {"error": "request body too large: 12288 bytes, the limit is 4 KiB"}
        chunked = await http.post("/api/chat", content=pieces(body))
        assert chunked.status_code == 413
        assert chunked.json() == {"error": "request body too large: the limit is 4 KiB"}
        # The server is still well: a small request is answered normally.
        assert (await http.get("/api/version")).status_code == 200
