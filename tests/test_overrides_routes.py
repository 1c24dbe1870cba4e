"""A model's `options` from the config file reach the upstream on every route; the request wins."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from oai2ollama.config import Settings

from .conftest import ClientFor
from .fakes import API_KEY, BASE_URL, completion, text_stream

pytestmark = pytest.mark.anyio

CONFIG = """
[models."gpt-test"]
options = { temperature = 0.2, num_predict = 64, stop = ["END"] }
"""


@pytest.fixture
async def client(tmp_path: Path, client_for: ClientFor) -> httpx.AsyncClient:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(CONFIG)
    return await client_for(Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, config=path))  # type: ignore[call-arg]


CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def test_native_chat_gets_the_models_options(client, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    assert (await client.post("/api/chat", json=CHAT)).status_code == 200
    body = fake.last_body
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 64, ["END"])


async def test_what_the_native_request_says_wins(client, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    request = {**CHAT, "options": {"temperature": 0.9}}
    assert (await client.post("/api/chat", json=request)).status_code == 200
    assert fake.last_body["temperature"] == 0.9
    assert fake.last_body["max_tokens"] == 64


async def test_openai_route_gets_the_models_options_unless_set(client, fake):
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "temperature": 1.0}
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    assert fake.last_body["temperature"] == 1.0
    assert fake.last_body["max_tokens"] == 64


async def test_anthropic_route_gets_the_models_options(client, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    request = {"model": "gpt-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    assert (await client.post("/v1/messages", json=request)).status_code == 200
    assert fake.last_body["temperature"] == 0.2
    assert fake.last_body["max_tokens"] == 100, "Anthropic requires max_tokens: the client's value stays"
