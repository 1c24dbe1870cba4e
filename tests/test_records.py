"""The record each answered request leaves, route by route, driven by the official clients: usage
(the upstream's, or estimated where it sent none), streamed or not, the key's name, the error kind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from oai2ollama import request_log
from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.records import ErrorKind, RequestRecord, Usage
from oai2ollama.upstream import Upstreams

from .conftest import PROXY_URL
from .fakes import (
    BASE_URL,
    FakeUpstream,
    chunk,
    completion,
    dribble,
    embeddings_response,
    hosts_transport,
    openai_error,
    sse,
    sse_response,
    text_stream,
    usage_chunk,
)

pytestmark = pytest.mark.anyio

PROMPT = "x" * 40  # 10 tokens by the estimate
EXACT = Usage(input_tokens=11, output_tokens=7)
# The anthropic client sends "k" (the first key, `key-1`), the openai client "client-key" (`key-2`).
KEYS = ["k", "client-key"]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"server_api_key": KEYS}


@pytest.fixture
def records() -> list[RequestRecord]:
    return []


@pytest.fixture
def app(settings: Settings, upstreams: Upstreams, records: list[RequestRecord]):  # type: ignore[no-untyped-def]
    return create_app(settings, upstreams=upstreams, observers=[records.append])


@pytest.fixture
def ollama_client(app: Any) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=PROXY_URL, transport=httpx.ASGITransport(app), headers={"Authorization": "Bearer k"})


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "Bearer client-key"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL, headers=headers) as client:
        yield client


def no_usage(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in chunks if "usage" not in c]


def only(records: list[RequestRecord]) -> RequestRecord:
    (record,) = records
    return record


# ---------------------------------------------------------------- native


async def test_native_stream(ollama_client: ollama.AsyncClient, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello", " there!"))
    async for _ in await ollama_client.chat(
        model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stream=True
    ):
        pass
    record = only(records)
    assert (record.status, record.streamed, record.error_kind, record.key_name) == (200, True, None, "key-1")
    assert record.usage == EXACT
    assert (record.upstream, record.upstream_model, record.model) == ("default", "gpt-test", "gpt-test")
    assert record.upstream_duration is not None and 0 < record.upstream_duration <= record.duration


async def test_native_without_usage_is_estimated(
    ollama_client: ollama.AsyncClient, fake: FakeUpstream, records: list
) -> None:
    fake.on("POST", "/chat/completions", no_usage(text_stream("Hello", " there!")))  # 12 characters
    await ollama_client.chat(model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stream=False)
    record = only(records)
    assert record.streamed is False
    assert record.usage == Usage(input_tokens=10, output_tokens=3, estimated=True)


async def test_native_mid_stream_failure(ollama_client: ollama.AsyncClient, fake: FakeUpstream, records: list) -> None:
    head = sse(*text_stream("partial answer")[:2], done=False)
    fake.on("POST", "/chat/completions", lambda r: sse_response(dribble(head, error=httpx.ReadError("reset"))))
    with pytest.raises(ollama.ResponseError):
        async for _ in await ollama_client.chat(
            model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            pass
    record = only(records)
    assert (record.status, record.streamed, record.error_kind) == (200, True, ErrorKind.MID_STREAM)
    assert record.usage == Usage(input_tokens=10, output_tokens=4, estimated=True)  # "partial answer": 14 characters


async def test_native_embed(ollama_client: ollama.AsyncClient, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/embeddings", embeddings_response([0.1, 0.2], prompt_tokens=5))
    await ollama_client.embed(model="text-embedding-test", input="hello")
    record = only(records)
    assert (record.status, record.streamed, record.usage) == (200, False, Usage(input_tokens=5))


async def test_native_upstream_error(ollama_client: ollama.AsyncClient, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/chat/completions", openai_error(503, "overloaded"))
    with pytest.raises(ollama.ResponseError):
        await ollama_client.chat(model="gpt-test", messages=[{"role": "user", "content": "Hi"}])
    record = only(records)
    assert (record.status, record.error_kind, record.usage) == (503, ErrorKind.UPSTREAM_5XX, None)


async def test_unreachable_upstream(settings: Settings, records: list) -> None:
    upstreams = Upstreams(transport=hosts_transport({}))  # every host refuses the connection
    app = create_app(settings, upstreams=upstreams, observers=[records.append])
    headers = {"Authorization": "Bearer k"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL, headers=headers) as client:
        answer = await client.post(
            "/api/chat", json={"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}
        )
    await upstreams.aclose()
    assert answer.status_code == 502
    assert (records[-1].status, records[-1].error_kind) == (502, ErrorKind.UNREACHABLE)
    assert (records[-1].upstream, records[-1].upstream_model) == ("default", "gpt-test"), "which upstream failed"


# ---------------------------------------------------------------- /v1 byte relay


async def test_relay_stream_with_usage(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    usage = usage_chunk(20, 9)
    usage["usage"]["prompt_tokens_details"] = {"cached_tokens": 16}
    usage["usage"]["completion_tokens_details"] = {"reasoning_tokens": 4}
    fake.on("POST", "/chat/completions", [*text_stream("Hi")[:-1], usage])
    stream = await openai_client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    record = only(records)
    assert (record.status, record.streamed, record.error_kind, record.key_name) == (200, True, None, "key-2")
    assert record.usage == Usage(input_tokens=20, output_tokens=9, reasoning_tokens=4, cached_tokens=16)


async def test_relay_usage_split_across_reads(http: httpx.AsyncClient, fake: FakeUpstream, records: list) -> None:
    """OpenAI sends `"usage": null` on every chunk when asked for usage; the real one comes last,
    here cut into reads in the middle of its name and of its object."""
    chunks = [{**c, "usage": None} for c in text_stream("Hi")[:-1]]
    body = sse(*chunks, usage_chunk(20, 9))
    at = body.index(b'"usage": {"prompt')
    reads = (body[: at + 3], body[at + 3 : at + 20], body[at + 20 : -10], body[-10:])
    fake.on("POST", "/chat/completions", lambda request: sse_response(dribble(*reads)))
    answer = await http.post("/v1/chat/completions", json={"model": "gpt-test", "messages": [], "stream": True})
    assert answer.content == body  # still a byte relay
    assert only(records).usage == Usage(input_tokens=20, output_tokens=9)


async def test_relay_stream_without_usage_is_estimated(
    openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list
) -> None:
    fake.on("POST", "/chat/completions", no_usage(text_stream("Hello", " there!")))
    stream = await openai_client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    async for _ in stream:
        pass
    # A stream without usage is measured by its deltas (role, two texts, finish): servers send
    # about one token each.
    assert only(records).usage == Usage(input_tokens=10, output_tokens=4, estimated=True)


async def test_relay_document(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("Hello!")))
    await openai_client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "Hi"}])
    record = only(records)
    assert (record.streamed, record.usage) == (False, EXACT)


async def test_relay_document_without_usage(http: httpx.AsyncClient, fake: FakeUpstream, records: list) -> None:
    document = completion("Hello there!")
    del document["usage"]
    fake.on("POST", "/chat/completions", httpx.Response(200, json=document))
    await http.post(
        "/v1/chat/completions", json={"model": "gpt-test", "messages": [{"role": "user", "content": PROMPT}]}
    )
    assert only(records).usage == Usage(input_tokens=10, output_tokens=3, estimated=True)  # 12 characters


async def test_relay_embeddings(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/embeddings", embeddings_response([0.5, 0.25], prompt_tokens=3))
    await openai_client.embeddings.create(model="text-embedding-test", input="hello")
    assert only(records).usage == Usage(input_tokens=3)


async def test_relay_mid_stream_failure(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    body = dribble(sse(*text_stream("partial")[:2], done=False), error=httpx.ReadError("connection reset by peer"))
    fake.on("POST", "/chat/completions", sse_response(body))
    with pytest.raises(openai.APIError):
        stream = await openai_client.chat.completions.create(model="gpt-test", messages=[], stream=True)
        async for _ in stream:
            pass
    record = only(records)
    assert (record.status, record.streamed, record.error_kind) == (200, True, ErrorKind.MID_STREAM)


async def test_relay_upstream_error(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/chat/completions", openai_error(429, "slow down", "rate_limit_error"))
    with pytest.raises(openai.RateLimitError):
        await openai_client.chat.completions.create(model="gpt-test", messages=[])
    record = only(records)
    assert (record.status, record.error_kind, record.usage) == (429, ErrorKind.UPSTREAM_4XX, None)


# ---------------------------------------------------------------- anthropic


async def test_anthropic_stream(anthropic_client: anthropic.AsyncAnthropic, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    async with anthropic_client.messages.stream(
        model="gpt-test", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        await stream.get_final_message()
    record = only(records)
    assert (record.status, record.streamed, record.error_kind, record.key_name) == (200, True, None, "key-1")
    assert record.usage == EXACT


async def test_anthropic_without_usage_is_estimated(
    anthropic_client: anthropic.AsyncAnthropic, fake: FakeUpstream, records: list
) -> None:
    fake.on("POST", "/chat/completions", no_usage(text_stream("Hello there!")))
    await anthropic_client.messages.create(
        model="gpt-test", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    )
    record = only(records)
    assert (record.streamed, record.usage) == (False, Usage(input_tokens=10, output_tokens=3, estimated=True))


async def test_anthropic_mid_stream_failure(
    anthropic_client: anthropic.AsyncAnthropic, fake: FakeUpstream, records: list
) -> None:
    head = sse(chunk({"role": "assistant", "content": "Hel"}), done=False)
    fake.on("POST", "/chat/completions", lambda r: sse_response(dribble(head, error=httpx.ReadError("reset"))))
    with pytest.raises(anthropic.APIError):
        async with anthropic_client.messages.stream(
            model="gpt-test", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            await stream.get_final_message()
    assert only(records).error_kind == ErrorKind.MID_STREAM


# ---------------------------------------------------------------- responses


async def test_responses_translated(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    fake.on("POST", "/responses", openai_error(404, "Not Found", "not_found_error"))
    fake.on("POST", "/chat/completions", text_stream("42"))
    async with openai_client.responses.stream(model="gpt-test", input="6 × 7?") as stream:
        await stream.get_final_response()
    record = only(records)
    assert (record.status, record.streamed, record.error_kind, record.usage) == (200, True, None, EXACT)


async def test_responses_relayed(openai_client: openai.AsyncOpenAI, fake: FakeUpstream, records: list) -> None:
    usage = {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 12}
    usage["output_tokens_details"] = {"reasoning_tokens": 5}
    response = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-test", "output": []}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {**response, "usage": None}},
        {"type": "response.completed", "sequence_number": 1, "response": {**response, "usage": usage}},
    ]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    fake.on("POST", "/responses", sse_response(body))
    async with openai_client.responses.stream(model="gpt-test", input="Hi") as stream:
        async for _ in stream:
            pass
    assert only(records).usage == Usage(input_tokens=30, output_tokens=12, reasoning_tokens=5, cached_tokens=8)


# ---------------------------------------------------------------- refusals and names


async def test_refused_and_bad_requests(app: Any, records: list) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL) as client:
        await client.post("/api/chat", json={"model": "gpt-test"}, headers={"Authorization": "Bearer wrong"})
        await client.post("/api/chat", content=b"{", headers={"Authorization": "Bearer k"})
        await client.get("/api/nothing-here", headers={"Authorization": "Bearer k"})
    assert [(r.status, r.error_kind, r.key_name) for r in records] == [
        (401, ErrorKind.REFUSED, None),
        (400, ErrorKind.BAD_REQUEST, "key-1"),
        (404, ErrorKind.BAD_REQUEST, "key-1"),
    ]


async def test_key_names_from_the_config_file(tmp_path: Path, fake: FakeUpstream, records: list) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text('[[keys]]\nkey = "team-key"\nname = "team"\n\n[[keys]]\nkey = "other-key"\n')
    settings = Settings(_env_file=None, base_url=BASE_URL, config=config, server_api_key=["flag"])  # type: ignore[call-arg]
    upstreams = Upstreams(transport=fake.transport())
    app = create_app(settings, upstreams=upstreams, observers=[records.append])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL) as client:
        for key in ("flag", "team-key", "other-key"):
            await client.get("/api/version", headers={"Authorization": f"Bearer {key}"})
    await upstreams.aclose()
    assert [r.key_name for r in records] == ["key-1", "team", "file-key-2"]


async def test_a_key_name_is_given_once(tmp_path: Path) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text('[[keys]]\nkey = "team-key"\nname = "key-1"\n')
    settings = Settings(_env_file=None, base_url=BASE_URL, config=config, server_api_key=["flag"])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="'key-1' is the name of a --server-api-key key"):
        create_app(settings)


@pytest.mark.parametrize(
    ("noted", "recorded"),
    [
        (None, None),
        ("gpt-4o", "gpt-4o"),
        (42, "42"),
        ({"name": "x"}, '{"name": "x"}'),
        (list(range(500)), json.dumps(list(range(500)))[:200]),  # cut as the log line and the column are
        (float("nan"), "NaN"),
    ],
)
def test_a_model_noted_as_the_body_gave_it_is_recorded_as_text(noted: object, recorded: str | None) -> None:
    assert request_log._as_text(noted) == recorded


def test_a_model_nested_past_what_json_encodes_is_recorded_by_its_kind() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert request_log._as_text(deep) == "<list>"
