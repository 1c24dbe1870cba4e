"""The seed gateway's request controls through the official clients: `think`, OpenRouter's
`reasoning`, `exclude_reasoning` (in a request or as a model option) and Ollama `options` on
/v1/chat/completions and the native routes; and its legacy /anthropic/v1/messages path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from oai2ollama.config import Settings

from .conftest import PROXY_URL, ClientFor
from .fakes import API_KEY, BASE_URL, FakeUpstream, completion, openai_error, sse, sse_response, text_stream

pytestmark = pytest.mark.anyio

ASK = [{"role": "user", "content": "What is 2+2?"}]
THINKING = text_stream("4", reasoning=["2+2", " is 4"])
CONFIG = """
[models."gpt-test"]
options = { exclude_reasoning = true, think = "low" }
"""


def reasoning_stream(field: str = "reasoning_content") -> list[dict[str, Any]]:
    return text_stream("4", reasoning=["2+2", " is 4"], field=field)


@pytest.fixture
async def configured(tmp_path: Path, client_for: ClientFor) -> httpx.AsyncClient:
    """A client of an app whose gpt-test hides its reasoning and thinks a little, by configuration."""
    path = tmp_path / "oai2ollama.toml"
    path.write_text(CONFIG)
    return await client_for(Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, config=path))  # type: ignore[call-arg]


def said(body: bytes) -> tuple[str, str]:
    """The text and the reasoning of a relayed SSE body, as a client joins them."""
    deltas = [
        choice["delta"]
        for line in body.split(b"\n")
        if line.startswith(b"data: {")
        for choice in json.loads(line[6:])["choices"]
    ]
    text = "".join(d.get("content") or "" for d in deltas)
    return text, "".join(d.get("reasoning_content") or d.get("reasoning") or "" for d in deltas)


def streamed_reasoning(chunks: list[Any]) -> str:
    return "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)


# ---------------------------------------------------------------- /v1/chat/completions


@pytest.mark.parametrize(
    ("extra", "effort"),
    [
        ({"think": True}, "medium"),
        ({"think": "max"}, "high"),
        ({"reasoning": {"effort": "low"}}, "low"),
        ({"reasoning": {"max_tokens": 10000}}, "medium"),
    ],
)
async def test_think_and_reasoning_reach_the_upstream_as_its_field(
    fake: FakeUpstream, openai_client: openai.AsyncOpenAI, extra: dict[str, Any], effort: str
) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("4")))
    answer = await openai_client.chat.completions.create(model="gpt-test", messages=ASK, extra_body=extra)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "4"
    sent = fake.last_body
    assert sent["reasoning_effort"] == effort
    assert not {"think", "reasoning"} & sent.keys(), "strict upstreams reject fields they do not know"


async def test_an_invalid_control_is_an_openai_400(fake: FakeUpstream, openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client.chat.completions.create(model="gpt-test", messages=ASK, extra_body={"think": "hard"})  # type: ignore[arg-type]
    assert 'invalid think value: "hard"' in raised.value.message
    assert fake.bodies("/chat/completions") == []


async def test_exclude_reasoning_hides_it_from_the_stream(
    fake: FakeUpstream, openai_client: openai.AsyncOpenAI
) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream())
    stream = await openai_client.chat.completions.create(
        model="gpt-test",
        messages=ASK,  # type: ignore[arg-type]
        stream=True,
        extra_body={"exclude_reasoning": True, "think": "high"},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "4"
    assert streamed_reasoning(chunks) == ""
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    sent = fake.last_body
    assert sent["reasoning_effort"] == "high", "the model still thinks"
    assert "exclude_reasoning" not in sent


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openrouters_exclude_hides_it_too(fake: FakeUpstream, client: httpx.AsyncClient, field: str) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream(field))
    request = {"model": "gpt-test", "messages": ASK, "stream": True, "reasoning": {"effort": "low", "exclude": True}}
    answer = await client.post("/v1/chat/completions", json=request)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert said(answer.content) == ("4", "")
    assert b"reasoning_text" not in answer.content, "nor is it echoed for Copilot"
    assert answer.content.endswith(b"data: [DONE]\n\n")


async def test_exclude_reasoning_in_a_whole_answer(fake: FakeUpstream, openai_client: openai.AsyncOpenAI) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("4", reasoning_content="2+2")))
    answer = await openai_client.chat.completions.create(
        model="gpt-test",
        messages=ASK,  # type: ignore[arg-type]
        extra_body={"exclude_reasoning": True},
    )
    assert answer.choices[0].message.content == "4"
    assert "reasoning_content" not in answer.choices[0].message.model_dump()


async def test_without_exclusion_the_stream_is_the_plain_relay(fake: FakeUpstream, client: httpx.AsyncClient):
    body = sse(*text_stream("4"))
    fake.on("POST", "/chat/completions", lambda request: sse_response(body))
    request = {"model": "gpt-test", "messages": ASK, "stream": True, "think": True}
    assert (await client.post("/v1/chat/completions", json=request)).content == body
    fake.on("POST", "/chat/completions", reasoning_stream())
    assert said((await client.post("/v1/chat/completions", json=request)).content) == ("4", "2+2 is 4")


async def test_ollama_options_on_v1(fake: FakeUpstream, client: httpx.AsyncClient) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("4")))
    request = {
        "model": "gpt-test",
        "messages": ASK,
        "temperature": 1.0,
        "options": {"num_ctx": 32768, "num_predict": 256, "temperature": 0.1, "top_k": 40},
    }
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    sent = fake.last_body
    assert (sent["temperature"], sent["max_tokens"], sent["top_k"]) == (1.0, 256, 40)
    assert not {"options", "num_ctx"} & sent.keys()


async def test_invalid_options_on_v1_are_an_openai_400(fake: FakeUpstream, client: httpx.AsyncClient) -> None:
    request = {"model": "gpt-test", "messages": ASK, "options": {"num_predict": "many"}}
    answer = await client.post("/v1/chat/completions", json=request)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "options.num_predict must be an integer"


async def test_the_models_exclude_option_on_v1(fake: FakeUpstream, configured: httpx.AsyncClient) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream())
    request = {"model": "gpt-test", "messages": ASK, "stream": True}
    answer = await configured.post("/v1/chat/completions", json=request)
    assert said(answer.content) == ("4", "")
    assert fake.last_body["reasoning_effort"] == "low"
    shown = await configured.post("/v1/chat/completions", json={**request, "exclude_reasoning": False})
    assert said(shown.content) == ("4", "2+2 is 4"), "what the request says wins"


# ---------------------------------------------------------------- native routes


async def test_native_exclude_reasoning(fake: FakeUpstream, ollama_client: Any) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream())
    parts = [p async for p in await ollama_client.chat(model="gpt-test", messages=ASK, stream=True, think=True)]
    assert "".join(p.message.thinking or "" for p in parts) == "2+2 is 4", "shown unless asked"

    request = {"model": "gpt-test", "messages": ASK, "think": True, "exclude_reasoning": True}
    for stream in (True, False):
        fake.on("POST", "/chat/completions", reasoning_stream())
        answer = await ollama_client._client.post("/api/chat", json={**request, "stream": stream})
        lines = [json.loads(line) for line in answer.text.splitlines()]
        assert all("thinking" not in line["message"] for line in lines), lines
        assert "".join(line["message"]["content"] for line in lines) == "4"
        assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 7
        assert fake.last_body["reasoning_effort"] == "medium", "the model still thinks"


async def test_native_generate_exclude_reasoning(fake: FakeUpstream, ollama_client: Any) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream())
    answer = await ollama_client._client.post(
        "/api/generate", json={"model": "gpt-test", "prompt": "2+2?", "stream": False, "exclude_reasoning": True}
    )
    assert answer.json()["response"] == "4" and "thinking" not in answer.json()


async def test_the_models_exclude_option_on_the_native_route(fake: FakeUpstream, configured: httpx.AsyncClient):
    fake.on("POST", "/chat/completions", reasoning_stream())
    answer = await configured.post("/api/chat", json={"model": "gpt-test", "messages": ASK, "stream": False})
    assert answer.json()["message"] == {"role": "assistant", "content": "4"}
    assert fake.last_body["reasoning_effort"] == "low"
    fake.on("POST", "/chat/completions", reasoning_stream())
    request = {"model": "gpt-test", "messages": ASK, "stream": False, "exclude_reasoning": False}
    assert (await configured.post("/api/chat", json=request)).json()["message"]["thinking"] == "2+2 is 4"


async def test_native_exclude_reasoning_must_be_a_boolean(fake: FakeUpstream, client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/chat", json={"model": "gpt-test", "messages": ASK, "exclude_reasoning": "yes"})
    assert answer.status_code == 400 and answer.json() == {"error": "exclude_reasoning must be a boolean"}
    assert fake.bodies("/chat/completions") == []


async def test_the_exclude_option_is_not_a_modelfile_parameter(configured: httpx.AsyncClient) -> None:
    shown = (await configured.post("/api/show", json={"model": "gpt-test"})).json()
    assert "exclude_reasoning" not in shown["parameters"] and "exclude_reasoning" not in shown["modelfile"]


# ---------------------------------------------------------------- /anthropic/v1/messages


@pytest.fixture
def legacy_anthropic(app: Any) -> Callable[[], anthropic.AsyncAnthropic]:
    def make() -> anthropic.AsyncAnthropic:
        http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app))
        return anthropic.AsyncAnthropic(base_url=f"{PROXY_URL}/anthropic", api_key="k", http_client=http, max_retries=0)

    return make


async def test_the_legacy_anthropic_path_answers_like_v1_messages(
    fake: FakeUpstream, legacy_anthropic: Callable[[], anthropic.AsyncAnthropic], client: httpx.AsyncClient
) -> None:
    messages = legacy_anthropic().messages
    fake.on("POST", "/chat/completions", text_stream("Hello", " there"))
    message = await messages.create(model="gpt-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].type == "text" and message.content[0].text == "Hello there"
    assert message.model == "gpt-test" and message.stop_reason == "end_turn"

    fake.on("POST", "/chat/completions", text_stream("Hello", " there"))
    async with messages.stream(model="gpt-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        assert await s.get_final_text() == "Hello there"

    counted = await messages.count_tokens(model="gpt-test", messages=[{"role": "user", "content": "hi there"}])
    direct = await client.post(
        "/v1/messages/count_tokens", json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi there"}]}
    )
    assert counted.input_tokens == direct.json()["input_tokens"]


async def test_the_legacy_anthropic_path_errs_in_anthropics_shape(
    fake: FakeUpstream, legacy_anthropic: Callable[[], anthropic.AsyncAnthropic], client: httpx.AsyncClient
) -> None:
    messages = legacy_anthropic().messages
    fake.on("POST", "/chat/completions", openai_error(404, "The model `claude-opus-9` does not exist"))
    with pytest.raises(anthropic.NotFoundError, match="The model `claude-opus-9` does not exist") as caught:
        await messages.create(model="claude-opus-9", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        await messages.count_tokens(model="", messages=[{"role": "user", "content": "hi"}])
    for method, path in (("POST", "/anthropic/v1/messages/batches"), ("GET", "/anthropic/v1/messages")):
        answer = await client.request(method, path, json={})
        assert answer.status_code in (404, 405)
        assert answer.json()["type"] == "error" and isinstance(answer.json()["error"]["message"], str)


# ---------------------------------------------------------------- /v1/messages and /v1/responses


async def test_exclude_reasoning_on_v1_messages(fake: FakeUpstream, anthropic_client: anthropic.AsyncAnthropic) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream())
    shown = await anthropic_client.messages.create(model="gpt-test", max_tokens=64, messages=ASK)  # type: ignore[arg-type]
    assert [block.type for block in shown.content] == ["thinking", "text"]
    for stream in (False, True):
        fake.on("POST", "/chat/completions", reasoning_stream())
        if stream:
            async with anthropic_client.messages.stream(
                model="gpt-test", max_tokens=64, messages=ASK, extra_body={"exclude_reasoning": True}
            ) as events:
                hidden = await events.get_final_message()
        else:
            hidden = await anthropic_client.messages.create(
                model="gpt-test", max_tokens=64, messages=ASK, extra_body={"exclude_reasoning": True}
            )
        assert [block.type for block in hidden.content] == ["text"] and hidden.content[0].text == "4"  # type: ignore[union-attr]
        assert "exclude_reasoning" not in fake.last_body


async def test_the_models_exclude_option_on_v1_messages(fake: FakeUpstream, configured: httpx.AsyncClient) -> None:
    fake.on("POST", "/chat/completions", reasoning_stream())
    request = {"model": "gpt-test", "max_tokens": 64, "messages": ASK}
    answer = (await configured.post("/v1/messages", json=request)).json()
    assert [block["type"] for block in answer["content"]] == ["text"]
    fake.on("POST", "/chat/completions", reasoning_stream())
    answer = (await configured.post("/v1/messages", json={**request, "exclude_reasoning": False})).json()
    assert [block["type"] for block in answer["content"]] == ["thinking", "text"], "what the request says wins"


async def test_a_bad_exclude_reasoning_is_named_before_the_upstream_is_asked(
    fake: FakeUpstream, client: httpx.AsyncClient
) -> None:
    for path, request in (
        ("/v1/messages", {"model": "gpt-test", "max_tokens": 64, "messages": ASK}),
        ("/v1/responses", {"model": "gpt-test", "input": "2+2?"}),
    ):
        answer = await client.post(path, json={**request, "exclude_reasoning": "yes"})
        assert answer.status_code == 400 and "exclude_reasoning must be a boolean" in answer.text
    assert [r.method for r in fake.requests] == ["GET"], "only the model list was asked for"


async def test_exclude_reasoning_on_translated_responses(fake: FakeUpstream, openai_client: openai.AsyncOpenAI) -> None:
    for stream in (False, True):
        fake.on("POST", "/chat/completions", reasoning_stream())
        response = await openai_client.responses.create(
            model="gpt-test", input="2+2?", stream=stream, extra_body={"exclude_reasoning": True}
        )
        if stream:
            events = [event async for event in response]  # type: ignore[union-attr]
            assert not [e for e in events if "reasoning" in e.type]
            response = events[-1].response  # type: ignore[union-attr]
        assert [item.type for item in response.output] == ["message"]  # type: ignore[union-attr]
        assert response.output_text == "4"  # type: ignore[union-attr]
        assert "exclude_reasoning" not in fake.bodies("/chat/completions")[-1]


async def test_exclude_reasoning_on_relayed_responses_asks_for_no_summary(
    fake: FakeUpstream, client: httpx.AsyncClient
) -> None:
    fake.on("POST", "/responses", httpx.Response(200, json={"id": "resp_up", "object": "response", "output": []}))
    request = {"model": "gpt-test", "input": "2+2?", "reasoning": {"effort": "high", "summary": "auto"}}
    assert (await client.post("/v1/responses", json={**request, "exclude_reasoning": True})).status_code == 200
    assert fake.bodies("/responses")[-1] == {"model": "gpt-test", "input": "2+2?", "reasoning": {"effort": "high"}}
    assert (await client.post("/v1/responses", json=request)).status_code == 200
    assert fake.bodies("/responses")[-1] == request
