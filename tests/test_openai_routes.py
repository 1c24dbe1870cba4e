"""The /v1 routes: relayed to the upstream as sent, through the official `openai` client and raw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import openai
import pytest

from oai2ollama.config import Settings
from oai2ollama.upstream import Upstreams

from .conftest import ClientFor
from .fakes import (
    API_KEY,
    BASE_URL,
    FakeUpstream,
    asgi_messages,
    chunk,
    closed_port,
    completion,
    dribble,
    model_not_there,
    openai_error,
    sse,
    sse_response,
    text_stream,
)

pytestmark = pytest.mark.anyio

SLASHED = "org/model:free"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fake() -> FakeUpstream:
    upstream = FakeUpstream()
    upstream.models.append({"id": SLASHED, "object": "model", "created": 1700000002, "owned_by": "org"})
    return upstream


def upstream_posts(fake: FakeUpstream, path: str) -> list[dict[str, Any]]:
    return fake.bodies(path)


# ---- chat completions ---------------------------------------------------------------------------


async def test_chat_not_streamed(openai_client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("Hello there")))
    answer = await openai_client.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Hello there"
    assert answer.usage is not None and answer.usage.total_tokens == 18
    assert fake.last_body["model"] == "gpt-test" and fake.last_body["messages"] == HELLO


async def test_chat_streamed(openai_client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hel", "lo", reasoning=["hmm"]))
    stream = await openai_client.chat.completions.create(
        model="gpt-test:latest", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )  # type: ignore[call-overload]
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    # Fields the proxy does not know about are relayed too.
    assert any(getattr(c.choices[0].delta, "reasoning_content", None) == "hmm" for c in chunks if c.choices)
    assert fake.last_body["stream"] is True and fake.last_body["stream_options"] == {"include_usage": True}


async def test_stream_bytes_relayed_unchanged(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    # Upstream framing quirks (comments, CRLF, no [DONE]) are the client's to read, not ours to fix.
    raw = b": keep-alive\r\n\r\n" + sse(*text_stream("a", "b"), done=False) + b"data: [DONE]\r\n\r\n"
    fake.on("POST", "/chat/completions", sse_response(raw))
    body = {"model": "gpt-test", "stream": True, "messages": HELLO}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == raw


async def test_each_upstream_chunk_is_sent_as_it_arrives(app: Any, fake: FakeUpstream) -> None:
    gates = [asyncio.Event() for _ in range(3)]
    parts = [sse(chunk({"content": f"part{i}"}), done=i == 2) for i in range(3)]

    async def body() -> AsyncIterator[bytes]:
        for gate, part in zip(gates, parts, strict=True):
            await gate.wait()
            yield part

    fake.on("POST", "/chat/completions", lambda request: sse_response(body()))
    request = json.dumps({"model": "gpt-test", "stream": True, "messages": HELLO}).encode()
    gates[0].set()
    received: list[bytes] = []
    # The upstream produces its next chunk only once the previous one has reached the client,
    # so a proxy that buffered anything would wait here forever.
    with anyio.fail_after(5):
        async with aclosing(asgi_messages(app, "POST", "/v1/chat/completions", request)) as messages:
            async for message in messages:
                if message["type"] == "http.response.start":
                    assert message["status"] == 200
                elif message.get("body"):
                    received.append(message["body"])
                    if len(received) < len(gates):
                        gates[len(received)].set()
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    break
    assert received == parts


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
async def test_root_alias_for_chat(client: httpx.AsyncClient, fake: FakeUpstream, path: str) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("via alias")))
    response = await client.post(path, json={"model": "gpt-test", "messages": HELLO})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "via alias"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (openai_error(400, "Invalid 'messages[0].role': unknown role"), 400),
        (openai_error(401, "Incorrect API key provided", "authentication_error"), 401),
        (httpx.Response(422, json={"detail": [{"loc": ["body", "x"], "msg": "extra"}]}), 422),
        (openai_error(500, "The server had an error", "server_error"), 500),
    ],
)
async def test_upstream_errors_arrive_byte_identical(
    client: httpx.AsyncClient, fake: FakeUpstream, answer: httpx.Response, status: int
) -> None:
    fake.on("POST", "/chat/completions", answer)
    response = await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO, "stream": True})
    assert response.status_code == status
    assert response.headers["content-type"] == answer.headers["content-type"]
    assert response.content == answer.content


async def test_upstream_error_through_the_official_client(
    openai_client: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.on("POST", "/chat/completions", openai_error(400, "context length exceeded"))
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 400 and "context length exceeded" in caught.value.message


async def test_rate_limit_headers_relayed(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    limited = openai_error(429, "slow down", "rate_limit_error", **{"retry-after": "3", "x-ratelimit-remaining": "0"})
    fake.on("POST", "/chat/completions", limited)
    response = await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3" and response.headers["x-ratelimit-remaining"] == "0"


async def test_html_error_page_becomes_an_openai_error(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    fake.on("POST", "/chat/completions", httpx.Response(502, html=page))
    response = await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["message"] == "upstream answered 502 Bad Gateway"


async def test_key_quoted_in_an_upstream_error_is_masked(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", openai_error(401, f"Incorrect API key provided: {API_KEY}"))
    response = await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert response.status_code == 401
    assert API_KEY not in response.text and "***" in response.text


async def test_mid_stream_failure_ends_with_an_error_event(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    body = dribble(sse(*text_stream("partial")[:2], done=False), error=httpx.ReadError("connection reset by peer"))
    fake.on("POST", "/chat/completions", sse_response(body))
    response = await client.post("/v1/chat/completions", json={"model": "gpt-test", "stream": True, "messages": HELLO})
    assert response.status_code == 200
    frames = [f for f in response.content.split(b"\n\n") if f]
    assert b"partial" in frames[-2]
    last = json.loads(frames[-1].removeprefix(b"data: "))
    assert last["error"]["type"] == "api_error"
    assert "upstream.test" in last["error"]["message"] and "connection reset" in last["error"]["message"]


async def test_mid_stream_failure_through_the_official_client(
    openai_client: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    body = dribble(sse(*text_stream("partial")[:2], done=False), error=httpx.ReadError("reset"))
    fake.on("POST", "/chat/completions", sse_response(body))
    stream = await openai_client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True)  # type: ignore[call-overload]
    received = []
    with pytest.raises(openai.APIError):
        async for part in stream:
            received.append(part)
    assert received and received[-1].choices[0].delta.content == "partial"


async def test_unreachable_upstream_is_502_openai_shaped(settings: Settings, client_for: ClientFor) -> None:
    settings = settings.model_copy(update={"base_url": f"http://127.0.0.1:{closed_port()}/v1"})
    http = await client_for(settings, Upstreams(connect_timeout=2))
    response = await http.post("/v1/chat/completions", json={"model": "anything", "messages": HELLO})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "api_error" and "127.0.0.1" in error["message"]


# ---- request fixups -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "upstream"),
    [
        ("gpt-test", "gpt-test"),
        ("gpt-test:latest", "gpt-test"),
        ("GPT-TEST:latest", "gpt-test"),
        (SLASHED, SLASHED),
    ],
)
async def test_model_resolved_to_the_upstream_id(
    client: httpx.AsyncClient, fake: FakeUpstream, sent: str, upstream: str
) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    assert (await client.post("/v1/chat/completions", json={"model": sent, "messages": HELLO})).status_code == 200
    assert fake.last_body["model"] == upstream


async def test_an_unlisted_model_gets_the_upstreams_own_404(
    openai_client: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.on("POST", "/chat/completions", model_not_there)
    with pytest.raises(openai.NotFoundError) as caught:
        await openai_client.chat.completions.create(model="nope", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.body == {  # type: ignore[comparison-overlap]
        "message": "The model `nope` does not exist or you do not have access to it.",
        "type": "model_not_found",
        "param": None,
        "code": None,
    }
    assert fake.last_body["model"] == "nope"


async def test_any_model_passes_when_the_upstream_cannot_list(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("GET", "/models", openai_error(404, "no such route"))
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    response = await client.post("/v1/chat/completions", json={"model": "unlisted:latest", "messages": HELLO})
    assert response.status_code == 200
    assert fake.last_body["model"] == "unlisted"


async def test_copilot_private_fields_dropped(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    image = {"url": "data:image/png;base64,AAAA", "detail": "auto", "media_type": "image/png"}
    request = {
        "model": "gpt-test",
        "stream": True,
        "messages": [
            {"role": "system", "content": "be brief", "copilot_cache_control": {"type": "ephemeral"}},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look", "copilot_cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": image},
                ],
                "copilot_references": [{"type": "file"}],
            },
            {"role": "assistant", "content": "thought", "cot_id": "c1", "cot_summary": "s"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "now", "description": "time"}},
            {"type": "function", "function": {"name": "nothing", "parameters": None}},
            {
                "type": "function",
                "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {}}}},
            },
        ],
        "tool_choice": "auto",
        "temperature": 0.2,
    }
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    sent = fake.last_body
    text = json.dumps(sent)
    for private in ("copilot_cache_control", "copilot_references", "cot_id", "cot_summary", "media_type"):
        assert private not in text
    assert sent["messages"][1]["content"][1]["image_url"] == {"url": "data:image/png;base64,AAAA", "detail": "auto"}
    assert [t["function"]["parameters"] for t in sent["tools"]] == [
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"a": {}}},
    ]
    assert sent["tool_choice"] == "auto" and sent["temperature"] == 0.2


async def test_empty_tools_dropped_with_their_choice(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    request = {"model": "gpt-test", "messages": HELLO, "tools": [], "tool_choice": "auto"}
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    assert "tools" not in fake.last_body and "tool_choice" not in fake.last_body


# ---- authentication on the relay ----------------------------------------------------------------


async def test_configured_key_replaces_the_clients(openai_client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    await openai_client.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert fake.requests[-1].headers.get_list("authorization") == [f"Bearer {API_KEY}"]


@pytest.mark.parametrize("settings_overrides", [{"api_key": None}])
async def test_client_key_forwarded_without_a_configured_one(
    openai_client: openai.AsyncOpenAI, fake: FakeUpstream
) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    await openai_client.chat.completions.create(model="gpt-test", messages=HELLO)  # type: ignore[arg-type]
    assert fake.requests[-1].headers.get_list("authorization") == ["Bearer client-key"]


# ---- the other relayed routes -------------------------------------------------------------------


async def test_completions(openai_client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "text": "def f():", "finish_reason": "stop", "logprobs": None}],
    }
    fake.on("POST", "/completions", httpx.Response(200, json=answer))
    result = await openai_client.completions.create(model="gpt-test:latest", prompt="# f", suffix="\n")
    assert result.choices[0].text == "def f():"
    assert fake.bodies("/completions")[-1] == {"model": "gpt-test", "prompt": "# f", "suffix": "\n"}


async def test_embeddings(openai_client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    answer = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "text-embedding-test",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    fake.on("POST", "/embeddings", httpx.Response(200, json=answer))
    result = await openai_client.embeddings.create(model="text-embedding-test", input="hello", encoding_format="float")
    assert result.data[0].embedding == [0.5, -0.25]
    assert fake.bodies("/embeddings")[-1]["input"] == "hello"


async def test_responses_relayed(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    events = (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0}\n\n'
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n'
    )
    fake.on("POST", "/responses", sse_response(events))
    request = {"model": "gpt-test:latest", "input": "hello", "stream": True, "instructions": "be brief"}
    response = await client.post("/v1/responses", json=request)
    assert response.status_code == 200 and response.content == events
    assert fake.bodies("/responses")[-1] == {**request, "model": "gpt-test"}


# ---- models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
async def test_models_list(client: httpx.AsyncClient, path: str) -> None:
    listing = (await client.get(path)).json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["gpt-test:latest", "text-embedding-test:latest", SLASHED]
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in listing["data"])


async def test_models_through_the_official_client(openai_client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in openai_client.models.list()]
    assert "gpt-test:latest" in ids and SLASHED in ids


@pytest.mark.parametrize("name", [SLASHED, "gpt-test:latest", "gpt-test"])
async def test_model_retrieve_with_slash_and_colon(openai_client: openai.AsyncOpenAI, name: str) -> None:
    model = await openai_client.models.retrieve(name)
    assert model.id == name and model.object == "model"


async def test_model_retrieve_unknown_is_404(openai_client: openai.AsyncOpenAI, client: httpx.AsyncClient) -> None:
    with pytest.raises(openai.NotFoundError):
        await openai_client.models.retrieve("org/absent:free")
    response = await client.get("/v1/models/org/absent:free")
    assert response.json()["error"]["message"] == "model 'org/absent:free' not found"


async def test_models_include_extras_when_upstream_fails(
    fake: FakeUpstream, settings: Settings, client_for: ClientFor
) -> None:
    fake.on("GET", "/models", openai_error(503, "down"))
    http = await client_for(settings.model_copy(update={"extra_models": ["mine"]}))
    listing = (await http.get("/v1/models")).json()
    assert [m["id"] for m in listing["data"]] == ["mine:latest"]


async def test_base_url_trailing_slash_makes_no_double_slash(fake: FakeUpstream, client_for: ClientFor) -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL + "/", api_key=API_KEY)  # type: ignore[call-arg]
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion()))
    http = await client_for(settings)
    await http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": HELLO})
    assert [r.url.path for r in fake.requests] == ["/v1/models", "/v1/chat/completions"]
