"""Names as real upstreams and clients spell them: tagged ids, unlisted names, an upstream that is down."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import openai
import pytest

from oai2ollama.config import Settings
from oai2ollama.upstream import Upstreams

from .conftest import ClientFor
from .fakes import FakeUpstream, closed_port, completion, model_not_there, text_stream

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "hi"}]
TAGGED = [{"id": "tiny:latest", "object": "model", "owned_by": "library"}, {"id": "qwen3:8b", "object": "model"}]


@pytest.fixture
def tagged(fake: FakeUpstream) -> FakeUpstream:
    """An upstream whose ids carry tags, as Ollama's own /v1 or a gateway in front of it lists them."""
    fake.models[:] = TAGGED
    fake.on("POST", "/chat/completions", text_stream("hello"))
    return fake


@pytest.mark.parametrize(
    ("asked", "sent"),
    [("tiny", "tiny:latest"), ("tiny:latest", "tiny:latest"), ("TINY", "tiny:latest"), ("Qwen3:8B", "qwen3:8b")],
)
async def test_tagged_upstream_ids_answer_every_name_form(
    tagged: FakeUpstream, ollama_client: ollama.AsyncClient, openai_client: openai.AsyncOpenAI, asked: str, sent: str
) -> None:
    await ollama_client.chat(model=asked, messages=HI)
    assert (await ollama_client.show(asked)).capabilities
    tagged.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    await openai_client.chat.completions.create(model=asked, messages=HI)  # type: ignore[arg-type]
    assert [body["model"] for body in tagged.bodies("/chat/completions")] == [sent, sent]


async def test_an_untagged_name_goes_to_an_ollama_upstream_with_its_tag_kept(
    tagged: FakeUpstream, ollama_client: ollama.AsyncClient
) -> None:
    """`qwen3` is not listed; an Ollama upstream (known by `owned_by: library`) resolves it itself."""
    await ollama_client.chat(model="qwen3:14b", messages=HI)
    await ollama_client.chat(model="llama3.2:latest", messages=HI)
    assert [body["model"] for body in tagged.bodies("/chat/completions")] == ["qwen3:14b", "llama3.2:latest"]


async def test_a_model_used_by_an_unlisted_name_is_in_ps_and_stop_removes_it(
    fake: FakeUpstream, ollama_client: ollama.AsyncClient
) -> None:
    fake.on("POST", "/chat/completions", text_stream("hello"))
    await ollama_client.chat(model="deployment-7", messages=HI)
    await ollama_client.chat(model="gpt-test", messages=HI)
    assert {m.model for m in (await ollama_client.ps()).models} == {"deployment-7:latest", "gpt-test:latest"}
    await ollama_client.chat(model="gpt-test", messages=[], keep_alive=0)  # what `ollama stop gpt-test` sends
    assert [m.model for m in (await ollama_client.ps()).models] == ["deployment-7:latest"]


async def test_the_upstreams_404_keeps_its_words(fake: FakeUpstream, client: httpx.AsyncClient) -> None:
    fake.on("POST", "/chat/completions", model_not_there)
    response = await client.post("/api/chat", json={"model": "gpt-5-preview", "messages": HI})
    assert response.status_code == 404
    assert response.json() == {"error": "The model `gpt-5-preview` does not exist or you do not have access to it."}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/tags", None),
        ("GET", "/v1/models", None),
        ("POST", "/api/show", {"model": "anything"}),
        ("POST", "/api/pull", {"model": "anything", "stream": False}),
        ("GET", "/v1/models/anything", None),
    ],
)
async def test_while_the_upstream_is_down_discovery_says_so(
    client_for: ClientFor, method: str, path: str, body: Any
) -> None:
    port = closed_port()
    http = await client_for(
        Settings(_env_file=None, base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x"),  # type: ignore[call-arg]
        Upstreams(connect_timeout=2),
    )
    response = await http.request(method, path, json=body)
    assert response.status_code == 502, response.text
    text = response.text
    assert "upstream default (127.0.0.1)" in text and "refused" in text, text
    assert "sk-x" not in text
