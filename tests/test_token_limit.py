"""OpenAI's own API takes `max_completion_tokens` (its reasoning models reject `max_tokens`);
every other OpenAI-compatible server gets `max_tokens`."""

from __future__ import annotations

import httpx
import pytest

from oai2ollama.config import Settings
from oai2ollama.translate.openai_request import with_token_limit
from oai2ollama.upstream import Target

from .conftest import ClientFor
from .fakes import completion, text_stream

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("base_url", "field"),
    [
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("https://my-resource.openai.azure.com/openai/v1", "max_completion_tokens"),
        ("https://openrouter.ai/api/v1", "max_tokens"),
        ("http://localhost:8000/v1", "max_tokens"),
    ],
)
def test_the_token_limit_field_follows_the_upstream(base_url: str, field: str) -> None:
    assert Target(base_url=base_url).token_limit_field == field


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ({"max_tokens": 5}, "max_completion_tokens", {"max_completion_tokens": 5}),
        ({"max_tokens": 5}, "max_tokens", {"max_tokens": 5}),
        ({"temperature": 1}, "max_completion_tokens", {"temperature": 1}),
    ],
)
def test_with_token_limit(body: dict, field: str, expected: dict) -> None:
    assert with_token_limit(body, field) == expected


@pytest.fixture
async def openai_hosted(client_for: ClientFor) -> httpx.AsyncClient:
    return await client_for(Settings(_env_file=None, base_url="https://api.openai.com/v1", api_key="sk-x"))  # type: ignore[call-arg]


async def test_native_chat_to_openai_sends_max_completion_tokens(openai_hosted, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 9}}
    assert (await openai_hosted.post("/api/chat", json={**request, "stream": False})).status_code == 200
    assert fake.last_body["max_completion_tokens"] == 9
    assert "max_tokens" not in fake.last_body


async def test_fill_in_the_middle_keeps_max_tokens(openai_hosted, fake):
    fake.on("POST", "/completions", text_stream("ok"))
    request = {"model": "gpt-test", "prompt": "def f(", "suffix": ")", "options": {"num_predict": 9}, "stream": False}
    assert (await openai_hosted.post("/api/generate", json=request)).status_code == 200
    assert fake.last_body["max_tokens"] == 9


async def test_anthropic_messages_to_openai_send_max_completion_tokens(openai_hosted, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    request = {"model": "gpt-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    assert (await openai_hosted.post("/v1/messages", json=request)).status_code == 200
    assert fake.last_body["max_completion_tokens"] == 100
    assert "max_tokens" not in fake.last_body


async def test_openai_relay_to_openai_renames_max_tokens(openai_hosted, fake):
    """A client's (or a model override's) `max_tokens` reaches OpenAI's API under the name all its models take."""
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
    assert (await openai_hosted.post("/v1/chat/completions", json=request)).status_code == 200
    assert fake.last_body["max_completion_tokens"] == 7
    assert "max_tokens" not in fake.last_body


async def test_openai_relay_elsewhere_keeps_max_tokens(client, fake):
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    assert fake.last_body["max_tokens"] == 7
