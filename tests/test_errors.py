"""Errors are answers: the right status, in the shape of the route's dialect, never a bare 500."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from oai2ollama.errors import (
    BadRequest,
    NotFound,
    ProxyError,
    UpstreamError,
    anthropic_body,
    message_from_body,
    model_not_found,
    ollama_body,
    openai_body,
)
from oai2ollama.http import encode_stream

from .fakes import API_KEY, FakeUpstream, openai_error, text_stream

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "hi"}]
OLLAMA_POSTS = ["/api/chat", "/api/generate", "/api/show", "/api/pull", "/api/embed"]
OPENAI_POSTS = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]


def is_ollama_error(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    return body["error"]


def is_openai_error(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)
    return error["message"]


def check(path: str, response: httpx.Response) -> str:
    return is_openai_error(response) if path.startswith(("/v1", "/chat", "/models")) else is_ollama_error(response)


@pytest.mark.parametrize("path", OLLAMA_POSTS + OPENAI_POSTS)
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"model": "gpt-test",', "invalid JSON"),
        (b"", "missing request body"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
    ],
    ids=["garbage", "truncated", "empty", "array", "string"],
)
async def test_malformed_body_is_400(client: httpx.AsyncClient, fake: FakeUpstream, path: str, body: bytes, words: str):
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert words in check(path, response)
    assert not [r for r in fake.requests if r.method == "POST"], "nothing reaches the upstream"


@pytest.mark.parametrize("path", OLLAMA_POSTS + OPENAI_POSTS)
@pytest.mark.parametrize(
    ("number", "words"),
    [
        (b"NaN", "options.temperature: NaN is not JSON"),
        (b"Infinity", "options.temperature: Infinity is not JSON"),
        (b"[1, -Infinity]", "options.temperature[1]: -Infinity is not JSON"),
        (b"1e400", "options.temperature: number out of range"),
        (b"-1.5e309", "options.temperature: number out of range"),
    ],
)
async def test_numbers_json_does_not_have_are_400(
    client: httpx.AsyncClient, fake: FakeUpstream, path: str, number: bytes, words: str
) -> None:
    """NaN and ±Infinity are not JSON, and a number beyond a double (1e400) would go upstream as
    `Infinity`: refused, naming the field, rather than passed on as a body that is not JSON."""
    body = b'{"model": "gpt-test", "messages": [], "prompt": "x", "input": "x", "options": {"temperature": %s}}'
    response = await client.post(path, content=body % number, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert words in check(path, response)
    assert not [r for r in fake.requests if r.method == "POST"], "nothing reaches the upstream"


async def test_numbers_within_range_pass(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json={"id": "chatcmpl-1", "choices": []}))
    body = b'{"model": "gpt-test", "messages": [], "temperature": 1.7976931348623157e308, "seed": %d, "x": 1e-400}'
    response = await client.post("/v1/chat/completions", content=body % 2**70)
    assert response.status_code == 200, response.text
    assert fake.last_body["temperature"] == 1.7976931348623157e308 and fake.last_body["seed"] == 2**70


@pytest.mark.parametrize("path", OLLAMA_POSTS + OPENAI_POSTS)
@pytest.mark.parametrize("body", [{}, {"model": ""}, {"model": None}, {"model": 7}])
async def test_missing_model_is_400(client: httpx.AsyncClient, path: str, body: dict[str, Any]):
    response = await client.post(path, json={**body, "messages": HELLO, "prompt": "x", "input": "x"})
    assert response.status_code == 400
    assert "model" in check(path, response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nothing"),
        ("POST", "/api/nothing"),
        ("GET", "/nothing"),
        ("GET", "/v1/nothing"),
        ("POST", "/v1/audio/nothing"),
    ],
)
async def test_unknown_route_is_404(client: httpx.AsyncClient, method: str, path: str):
    response = await client.request(method, path)
    assert response.status_code == 404
    assert path in check(path, response)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/chat"),
        ("GET", "/api/show"),
        ("POST", "/api/tags"),
        ("DELETE", "/api/version"),
        ("PUT", "/"),
        ("GET", "/v1/chat/completions"),
        ("GET", "/chat/completions"),
        ("POST", "/v1/models"),
        ("DELETE", "/models"),
    ],
)
async def test_wrong_method_is_405(client: httpx.AsyncClient, method: str, path: str):
    response = await client.request(method, path)
    assert response.status_code == 405
    assert method in check(path, response)


@pytest.mark.parametrize("path", ["/api/tags", "/v1/models", "/models"])
async def test_unexpected_failure_is_still_an_answer(app: Any, monkeypatch: pytest.MonkeyPatch, path: str):
    async def broken() -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(app.state.catalog, "cards", broken)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:11434") as http:
        response = await http.get(path)
    assert response.status_code == 500
    assert "RuntimeError" in check(path, response)


async def test_upstream_error_keeps_status_on_native_routes(client: httpx.AsyncClient, fake: FakeUpstream):
    fake.on("POST", "/chat/completions", openai_error(429, "slow down", "rate_limit_error", **{"retry-after": "9"}))
    response = await client.post("/api/chat", json={"model": "gpt-test", "messages": HELLO})
    assert response.status_code == 429
    assert is_ollama_error(response) == "slow down"
    assert response.headers["retry-after"] == "9"


async def test_key_never_in_an_error_answer(client: httpx.AsyncClient, fake: FakeUpstream):
    fake.on("POST", "/chat/completions", openai_error(401, f"Incorrect API key provided: {API_KEY}"))
    for path in ("/api/chat", "/v1/chat/completions"):
        response = await client.post(path, json={"model": "gpt-test", "messages": HELLO, "stream": False})
        assert response.status_code == 401
        assert API_KEY not in response.text


# ---- logging ------------------------------------------------------------------------------------


async def test_one_log_line_per_request(
    client: httpx.AsyncClient, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
):
    fake.on("POST", "/chat/completions", text_stream("hi"))
    await client.get("/api/tags")
    with caplog.at_level(logging.INFO, logger="oai2ollama"):
        await client.post("/v1/chat/completions", json={"model": "gpt-test:latest", "messages": HELLO, "stream": True})
        await client.post("/api/show", json={"model": "absent"})
    lines = [r.getMessage() for r in caplog.records if r.name == "oai2ollama"]
    assert len(lines) == 2, lines
    assert re.fullmatch(r"POST /v1/chat/completions\b.*\bgpt-test:latest\b.* 200 [\d.]+ ?ms", lines[0])
    assert re.fullmatch(r"POST /api/show\b.*\babsent\b.* 404 [\d.]+ ?ms", lines[1])


async def test_key_never_logged(client: httpx.AsyncClient, fake: FakeUpstream, caplog: pytest.LogCaptureFixture):
    fake.on("POST", "/chat/completions", text_stream("hi"))
    fake.on("POST", "/embeddings", openai_error(401, f"Incorrect API key provided: {API_KEY}"))
    fake.on("GET", "/models", openai_error(401, f"bad key {API_KEY}"))
    with caplog.at_level(logging.DEBUG):
        await client.get("/api/tags")
        await client.post("/api/chat", json={"model": "gpt-test", "messages": HELLO})
        await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
        await client.post("/api/embed", json={"model": "text-embedding-test", "input": "x"})
        await client.post("/v1/embeddings", json={"model": "text-embedding-test", "input": "x"})
    assert caplog.records, "something was logged"
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in repr(record.args)
    assert API_KEY not in caplog.text


# ---- the pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequest("x"), 400),
        (NotFound("x"), 404),
        (UpstreamError("x"), 502),
        (UpstreamError("x", status=504), 504),
        (ProxyError("x"), 500),
        (model_not_found("m:latest"), 404),
    ],
)
def test_error_statuses(error: ProxyError, status: int) -> None:
    assert error.status == status


def test_model_not_found_message() -> None:
    assert model_not_found("llama3:8b").message == "model 'llama3:8b' not found"


@pytest.mark.parametrize(
    ("status", "openai_type", "anthropic_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (405, "invalid_request_error", "invalid_request_error"),
        (413, "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "api_error"),
        (502, "api_error", "api_error"),
        (529, "api_error", "overloaded_error"),
    ],
)
def test_dialect_bodies(status: int, openai_type: str, anthropic_type: str) -> None:
    assert ollama_body("boom") == {"error": "boom"}
    assert openai_body(status, "boom") == {
        "error": {"message": "boom", "type": openai_type, "param": None, "code": None}
    }
    assert anthropic_body(status, "boom") == {"type": "error", "error": {"type": anthropic_type, "message": "boom"}}


@pytest.mark.parametrize(
    ("status", "body", "reason", "message"),
    [
        (400, b'{"error": {"message": "bad role", "type": "invalid_request_error"}}', "", "bad role"),
        (400, b'{"error": "plain string"}', "", "plain string"),
        (500, b'{"message": "top-level message"}', "", "top-level message"),
        (422, b'{"detail": "fastapi detail"}', "", "fastapi detail"),
        (422, b'{"detail": [{"msg": "field required"}]}', "", '[{"msg":"field required"}]'),
        (503, b"overloaded", "", "overloaded"),
        (502, b"<html><body>Bad Gateway</body></html>", "Bad Gateway", "upstream answered 502 Bad Gateway"),
        (504, b"  <!DOCTYPE html><html></html>", "", "upstream answered 504 Gateway Timeout"),
        (500, b"", "Internal Server Error", "upstream answered 500 Internal Server Error"),
        (599, b"", "", "upstream answered 599"),
    ],
)
def test_message_from_body(status: int, body: bytes, reason: str, message: str) -> None:
    assert message_from_body(status, body, reason) == message


def test_long_plain_error_is_cut() -> None:
    message = message_from_body(500, b"x" * 5000)
    assert 400 < len(message) < 600 and message.endswith("…")


async def items(*values: Any, error: BaseException | None = None) -> AsyncIterator[Any]:
    for value in values:
        yield value
    if error is not None:
        raise error


@pytest.mark.parametrize(
    ("error", "last"),
    [
        (UpstreamError("upstream broke off", status=502), b"E:upstream broke off"),
        (RuntimeError("bug"), b"E:internal error in oai2ollama: RuntimeError"),
        (None, b"2"),
    ],
)
async def test_encode_stream_ends_with_one_error_item(error: BaseException | None, last: bytes) -> None:
    stream = encode_stream(items(1, 2, error=error), lambda v: str(v).encode(), lambda e: b"E:" + e.message.encode())
    assert [part async for part in stream] == [b"1", b"2", last] if error else [b"1", b"2"]
