"""/api/chat, /api/generate, /api/embed and /api/embeddings as the official `ollama` client uses them,
with the fake OpenAI upstream sending real SSE bytes behind the app. The raw `client` checks what the
official client hides: framing, content types, the exact final line."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import httpx
import ollama
import pytest

from oai2ollama.translate.generate_context import Conversation, decode

from .fakes import (
    TRANSCRIPTS,
    chunk,
    completion,
    completions_stream,
    dribble,
    embeddings_response,
    model_not_there,
    openai_error,
    sse,
    sse_response,
    text_stream,
    tool_stream,
    transcript,
    usage_chunk,
)

pytestmark = pytest.mark.anyio

MODEL = "gpt-test"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
)
METRICS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")
BROKEN = "upstream upstream.test broke off the answer: connection reset by peer"


async def chat_stream(ollama_client: ollama.AsyncClient, **kwargs: Any) -> list[ollama.ChatResponse]:
    kwargs.setdefault("messages", ASK)
    return [part async for part in await ollama_client.chat(model=MODEL, stream=True, **kwargs)]


async def generate_stream(ollama_client: ollama.AsyncClient, **kwargs: Any) -> list[ollama.GenerateResponse]:
    return [part async for part in await ollama_client.generate(model=MODEL, stream=True, **kwargs)]


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"] == "application/x-ndjson"
    body = response.content
    assert body.endswith(b"\n")
    assert b"\n\n" not in body  # ollama-python parses every line: a blank one would crash it
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


def posts(fake: Any, path: str) -> list[dict[str, Any]]:
    return fake.bodies(path)


# ---------------------------------------------------------------- /api/chat text


async def test_chat_streamed(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("The weather", " is sunny."))
    parts = await chat_stream(ollama_client)
    assert "".join(p.message.content or "" for p in parts) == "The weather is sunny."
    assert [p.done for p in parts] == [False, False, True]
    final = parts[-1]
    assert (final.done_reason, final.prompt_eval_count, final.eval_count) == ("stop", 11, 7)
    assert all(isinstance(getattr(final, m), int) and getattr(final, m) >= 0 for m in METRICS)
    assert final.total_duration is not None and final.prompt_eval_duration is not None
    assert final.total_duration >= final.prompt_eval_duration
    assert posts(fake, "/chat/completions") == [
        {"model": MODEL, "messages": ASK, "stream": True, "stream_options": {"include_usage": True}}
    ]


async def test_chat_not_streamed(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("The weather", " is sunny."))
    answer = await ollama_client.chat(model=MODEL, messages=ASK, stream=False)
    assert answer.message.role == "assistant"
    assert answer.message.content == "The weather is sunny."
    assert answer.done and answer.done_reason == "stop"
    assert (answer.prompt_eval_count, answer.eval_count) == (11, 7)
    # The upstream is always asked to stream; the answer is collected from the same pipeline.
    assert fake.last_body["stream"] is True


async def test_chat_options_and_empty_tools(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    await ollama_client.chat(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, *ASK],
        tools=[],  # ollama-python sends `"tools": []` on every chat
        options={"temperature": 0.1, "top_p": 0.5, "num_predict": 20, "num_ctx": 4096, "top_k": 20, "stop": ["\n\n"]},
        format="json",
        keep_alive="10m",
        stream=False,
    )
    sent = fake.last_body
    assert "tools" not in sent
    assert {k: sent[k] for k in ("temperature", "top_p", "max_tokens", "top_k", "stop", "response_format")} == {
        "temperature": 0.1,
        "top_p": 0.5,
        "max_tokens": 20,
        "top_k": 20,
        "stop": ["\n\n"],
        "response_format": {"type": "json_object"},
    }
    assert "num_ctx" not in sent and "keep_alive" not in sent and "options" not in sent


async def test_chat_length_finish(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("cut", finish="length"))
    assert (await ollama_client.chat(model=MODEL, messages=ASK, stream=False)).done_reason == "length"
    assert (await chat_stream(ollama_client))[-1].done_reason == "length"


async def test_chat_upstream_that_ignores_stream_true(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("Hi there", reasoning="greet")))
    parts = await chat_stream(ollama_client)
    assert [(p.message.thinking, p.message.content) for p in parts[:-1]] == [("greet", "Hi there")]
    assert parts[-1].eval_count == 7


# ---------------------------------------------------------------- thinking


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_thinking_in_either_upstream_field(fake, ollama_client, field: str) -> None:
    fake.on("POST", "/chat/completions", text_stream("4", reasoning=["2+2", " is 4"], field=field))
    parts = await chat_stream(ollama_client, think=True)
    assert [p.message.thinking for p in parts[:2]] == ["2+2", " is 4"]
    assert parts[2].message.content == "4"
    answer = await ollama_client.chat(model=MODEL, messages=ASK, think=True, stream=False)
    assert (answer.message.thinking, answer.message.content) == ("2+2 is 4", "4")
    assert fake.last_body["reasoning_effort"] == "medium"


async def test_assistant_thinking_goes_back_upstream(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    history = [
        *ASK,
        {"role": "assistant", "content": "Sunny.", "thinking": "look it up"},
        {"role": "user", "content": "Sure?"},
    ]
    await ollama_client.chat(model=MODEL, messages=history, stream=False)
    assert fake.last_body["messages"][1] == {
        "role": "assistant",
        "content": "Sunny.",
        "reasoning_content": "look it up",
    }


@pytest.mark.parametrize(
    ("model", "effort"),
    [("gpt-test", None), ("reasoner", "none")],
)
async def test_think_false_reaches_only_thinking_models(fake, ollama_client, model: str, effort: str | None) -> None:
    # Zed sends think:false to every model.
    fake.models.append({"id": "reasoner", "object": "model", "supported_parameters": ["reasoning", "tools"]})
    fake.on("POST", "/chat/completions", text_stream("ok"))
    await ollama_client.chat(model=model, messages=ASK, think=False, stream=False)
    assert fake.last_body.get("reasoning_effort") == effort


@pytest.mark.parametrize(("think", "effort"), [("low", "low"), ("high", "high"), (True, "medium")])
async def test_think_levels(fake, ollama_client, think: Any, effort: str) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    await ollama_client.chat(model=MODEL, messages=ASK, think=think, stream=False)
    assert fake.last_body["reasoning_effort"] == effort


# ---------------------------------------------------------------- tools


async def test_tool_call_round_trip(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", tool_stream(("call_k3j2h1g0", "get_weather", {"city": "Paris"}), pieces=6))
    first = await ollama_client.chat(model=MODEL, messages=ASK, tools=[WEATHER_TOOL], stream=False)
    assert first.done_reason == "stop"  # a turn that ends in tool calls reports "stop"
    [call] = first.message.tool_calls or []
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert fake.last_body["tools"] == [WEATHER_TOOL]

    # ollama-python drops the call id and sends the result back with only `tool_name`.
    fake.on("POST", "/chat/completions", text_stream("It is sunny in Paris."))
    messages = [*ASK, first.message, {"role": "tool", "tool_name": "get_weather", "content": "sunny, 21 °C"}]
    second = await ollama_client.chat(model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=False)
    assert second.message.content == "It is sunny in Paris."
    assistant, tool = fake.last_body["messages"][1:]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert tool == {"role": "tool", "content": "sunny, 21 °C", "tool_call_id": assistant["tool_calls"][0]["id"]}


async def test_parallel_tool_calls_streamed_and_answered_out_of_order(fake, ollama_client) -> None:
    fake.on(
        "POST",
        "/chat/completions",
        tool_stream(("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"zone": "CET"})),
    )
    parts = await chat_stream(ollama_client, tools=[WEATHER_TOOL])
    calls = [call for p in parts for call in p.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "CET"}),
    ]
    assert all(len(p.message.tool_calls or []) <= 1 for p in parts)  # one call per chunk, as Zed needs

    fake.on("POST", "/chat/completions", text_stream("done"))
    assistant = {"role": "assistant", "content": "", "tool_calls": calls}
    results = [
        {"role": "tool", "tool_name": "get_time", "content": "12:00"},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
    ]
    await ollama_client.chat(model=MODEL, messages=[*ASK, assistant, *results], stream=False)
    sent = fake.last_body["messages"]
    ids = {c["function"]["name"]: c["id"] for c in sent[1]["tool_calls"]}
    assert [(m["content"], m["tool_call_id"]) for m in sent[2:]] == [
        ("12:00", ids["get_time"]),
        ("sunny", ids["get_weather"]),
    ]


async def test_tool_call_lines_carry_id_and_index(fake, client) -> None:
    fake.on("POST", "/chat/completions", tool_stream(("call_k3j2h1g0", "get_weather", {"city": "Paris"})))
    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK, "tools": [WEATHER_TOOL]})
    lines = ndjson(response)
    assert lines[0]["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_k3j2h1g0", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
        ],
    }
    assert lines[1]["done"] is True


# ---------------------------------------------------------------- images


async def test_images(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("A red dot."))
    messages = [{"role": "user", "content": "What is this?", "images": [PNG_BYTES]}]
    await ollama_client.chat(model=MODEL, messages=messages, stream=False)
    url = f"data:image/png;base64,{base64.b64encode(PNG_BYTES).decode()}"
    assert fake.last_body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]


async def test_image_data_url_from_a_lenient_client(fake, client) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    url = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
    body = {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "", "images": [url]}]}
    assert (await client.post("/api/chat", json=body)).status_code == 200
    assert fake.last_body["messages"][0]["content"] == [{"type": "image_url", "image_url": {"url": url}}]


# ---------------------------------------------------------------- /api/generate


async def test_generate(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Rayleigh", " scattering."))
    answer = await ollama_client.generate(model=MODEL, prompt="Why is the sky blue?", system="Be brief.", stream=False)
    assert answer.response == "Rayleigh scattering."
    assert (answer.done, answer.done_reason, answer.eval_count) == (True, "stop", 7)
    assert decode(answer.context) == Conversation("Be brief.", (("Why is the sky blue?", "Rayleigh scattering."),))
    assert fake.last_body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    parts = await generate_stream(ollama_client, prompt="Why is the sky blue?")
    assert [p.response for p in parts] == ["Rayleigh", " scattering.", ""]
    assert decode(parts[-1].context) == Conversation("", (("Why is the sky blue?", "Rayleigh scattering."),))
    assert parts[-1].prompt_eval_count == 11


async def test_generate_thinking_and_images(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("A dot.", reasoning=["tiny image"], field="reasoning"))
    answer = await ollama_client.generate(model=MODEL, prompt="Describe", images=[PNG_BYTES], think=True, stream=False)
    assert (answer.thinking, answer.response) == ("tiny image", "A dot.")
    content = fake.last_body["messages"][0]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("stream", [True, False])
async def test_fill_in_the_middle(fake, ollama_client, stream: bool) -> None:
    fake.on("POST", "/completions", completions_stream("return", " a + b"))
    prompt, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))"
    if stream:
        parts = await generate_stream(ollama_client, prompt=prompt, suffix=suffix, options={"num_predict": 16})
        text, final = "".join(p.response or "" for p in parts), parts[-1]
    else:
        final = await ollama_client.generate(model=MODEL, prompt=prompt, suffix=suffix, options={"num_predict": 16})
        text = final.response
    assert text == "return a + b"
    assert (final.done_reason, final.eval_count) == ("stop", 7)
    assert posts(fake, "/completions") == [
        {
            "model": MODEL,
            "prompt": prompt,
            "suffix": suffix,
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ]
    assert posts(fake, "/chat/completions") == []


async def test_raw_prompt_goes_to_completions(fake, ollama_client) -> None:
    fake.on("POST", "/completions", completions_stream("Paris."))
    answer = await ollama_client.generate(model=MODEL, prompt="Q: capital of France?\nA:", raw=True)
    assert answer.response == "Paris."
    assert fake.last_body["prompt"] == "Q: capital of France?\nA:"


# ---------------------------------------------------------------- load and unload


async def test_empty_chat_loads_without_calling_the_upstream(fake, ollama_client) -> None:
    answer = await ollama_client.chat(model=MODEL, messages=[])
    assert (answer.done, answer.done_reason, answer.message.content) == (True, "load", "")
    unloaded = await ollama_client.chat(model=MODEL, messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert [r.method for r in fake.requests] == ["GET"]  # only the model list


async def test_empty_generate_loads_and_unloads(fake, ollama_client) -> None:
    assert (await ollama_client.generate(model=MODEL)).done_reason == "load"
    assert (await ollama_client.generate(model=MODEL, keep_alive="0s")).done_reason == "unload"
    assert (await ollama_client.generate(model=MODEL, keep_alive="5m")).done_reason == "load"
    assert [r.method for r in fake.requests] == ["GET"]


@pytest.mark.parametrize(
    ("keep_alive", "reason"), [(0, "unload"), ("0", "unload"), ("0m0s", "unload"), (-1, "load"), ("5m", "load")]
)
async def test_load_answer_is_one_object_even_when_streaming(fake, client, keep_alive: Any, reason: str) -> None:
    response = await client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": keep_alive})
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert RFC3339_UTC.fullmatch(answer.pop("created_at"))
    assert answer == {
        "model": MODEL,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
    }


async def test_a_long_run_of_zeros_in_keep_alive_is_read_in_linear_time(fake, client) -> None:
    """`(0+…)+` backtracked on this, twice as long with each zero: ~5 s here, for ever at 40 zeros,
    with the event loop (every other request) held all the while."""
    started = time.perf_counter()
    for keep_alive, reason in [("0" * 25 + "!", "load"), ("0" * 100_000 + "s", "unload"), ("0s" * 50_000, "unload")]:
        response = await client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": keep_alive})
        assert response.json()["done_reason"] == reason
    assert time.perf_counter() - started < 1.0


async def test_an_unlisted_model_reaches_the_upstream_and_its_404_the_client(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", model_not_there)
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.chat(model="nope", messages=ASK)
    assert caught.value.status_code == 404
    assert caught.value.error == "The model `nope` does not exist or you do not have access to it."


# ---------------------------------------------------------------- embeddings


async def test_embed(fake, ollama_client) -> None:
    fake.on("POST", "/embeddings", embeddings_response([0.1, 0.2], [0.3, 0.4], [0.5, 0.6], order=[2, 0, 1]))
    answer = await ollama_client.embed(model="text-embedding-test", input=["a", "b", "c"], dimensions=2, truncate=True)
    assert answer.embeddings == [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    assert answer.model == "text-embedding-test"
    assert answer.prompt_eval_count == 5 and answer.total_duration and answer.total_duration > 0
    assert fake.last_body == {
        "model": "text-embedding-test",
        "input": ["a", "b", "c"],
        "encoding_format": "float",
        "dimensions": 2,
    }


async def test_embed_one_string(fake, ollama_client) -> None:
    fake.on("POST", "/embeddings", embeddings_response([1.0, 0.0]))
    answer = await ollama_client.embed(model="text-embedding-test", input="hello")
    assert answer.embeddings == [[1.0, 0.0]]
    assert fake.last_body["input"] == ["hello"]


async def test_embed_nothing_calls_no_upstream(fake, client) -> None:
    response = await client.post("/api/embed", json={"model": "text-embedding-test", "input": []})
    assert response.json() == {"model": "text-embedding-test", "embeddings": []}
    assert posts(fake, "/embeddings") == []


async def test_embed_wrong_count_from_upstream(fake, ollama_client) -> None:
    fake.on("POST", "/embeddings", embeddings_response([1.0]))
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.embed(model="text-embedding-test", input=["a", "b"])
    assert caught.value.status_code == 502
    assert "returned 1 embeddings for 2 inputs" in caught.value.error


async def test_legacy_embeddings(fake, ollama_client) -> None:
    fake.on("POST", "/embeddings", embeddings_response([0.25, 0.75]))
    answer = await ollama_client.embeddings(model="text-embedding-test", prompt="hello")
    assert list(answer.embedding) == [0.25, 0.75]
    assert fake.last_body["input"] == ["hello"]


async def test_legacy_embeddings_raw_shape_and_empty_prompt(fake, client) -> None:
    fake.on("POST", "/embeddings", embeddings_response([0.5]))
    answer = await client.post("/api/embeddings", json={"model": "text-embedding-test", "prompt": "x"})
    assert answer.json() == {"embedding": [0.5]}
    empty = await client.post("/api/embeddings", json={"model": "text-embedding-test", "prompt": ""})
    assert empty.json() == {"embedding": []}
    assert len(posts(fake, "/embeddings")) == 1


async def test_embed_upstream_error_keeps_status(fake, ollama_client) -> None:
    fake.on("POST", "/embeddings", openai_error(400, "This model's maximum context length is 8192 tokens"))
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.embed(model="text-embedding-test", input="long")
    assert (caught.value.status_code, caught.value.error) == (400, "This model's maximum context length is 8192 tokens")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "Incorrect API key provided: sk-bad. You can find your API key at https://platform.openai.com."),
        (404, "The model `gpt-test` does not exist or you do not have access to it."),
        (429, "Rate limit reached for gpt-test in organization org-x on tokens per min."),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_upstream_errors_keep_status_and_message(
    fake, ollama_client, status: int, message: str, stream: bool
) -> None:
    fake.on("POST", "/chat/completions", openai_error(status, message))
    with pytest.raises(ollama.ResponseError) as caught:
        if stream:
            await chat_stream(ollama_client)
        else:
            await ollama_client.chat(model=MODEL, messages=ASK, stream=False)
    assert (caught.value.status_code, caught.value.error) == (status, message)


async def test_rate_limit_keeps_retry_after(fake, client) -> None:
    fake.on("POST", "/chat/completions", openai_error(429, "slow down", "rate_limit_error", **{"retry-after": "7"}))
    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK})
    assert (response.status_code, response.json(), response.headers["retry-after"]) == (
        429,
        {"error": "slow down"},
        "7",
    )


def _dying(*parts: bytes) -> Any:
    return lambda request: sse_response(dribble(*parts, error=httpx.ReadError("connection reset by peer")))


async def test_upstream_dying_mid_stream_ends_with_an_error_line(fake, ollama_client, client) -> None:
    fake.on("POST", "/chat/completions", _dying(sse(*text_stream("Hel", "lo")[:3], done=False)))
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError) as caught:
        async for part in await ollama_client.chat(model=MODEL, messages=ASK, stream=True):
            seen.append(part.message.content or "")
    assert "".join(seen) == "Hello"
    assert caught.value.error == BROKEN

    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK})
    assert response.status_code == 200
    lines = ndjson(response)
    assert [line.get("message", {}).get("content") for line in lines[:-1]] == ["Hel", "lo"]
    assert lines[-1] == {"error": BROKEN}  # no done:true line after an error, as Ollama does


async def test_upstream_dying_before_any_output_is_a_502(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", _dying(b": keep-alive\n\n"))
    with pytest.raises(ollama.ResponseError) as caught:
        await chat_stream(ollama_client)
    assert (caught.value.status_code, caught.value.error) == (502, BROKEN)
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.chat(model=MODEL, messages=ASK, stream=False)
    assert caught.value.status_code == 502


async def test_upstream_dying_during_a_non_streamed_answer(fake, ollama_client) -> None:
    fake.on("POST", "/chat/completions", _dying(sse(*text_stream("Hel", "lo")[:3], done=False)))
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.chat(model=MODEL, messages=ASK, stream=False)
    assert (caught.value.status_code, caught.value.error) == (502, BROKEN)


async def test_malformed_chunk_after_content_is_an_error_line(fake, client, ollama_client) -> None:
    fake.on("POST", "/chat/completions", lambda r: sse_response(sse(chunk({"content": "ok"}), "{oops", usage_chunk())))
    lines = ndjson(await client.post("/api/chat", json={"model": MODEL, "messages": ASK}))
    assert lines[0]["message"]["content"] == "ok"
    assert lines[-1] == {"error": "upstream upstream.test sent a malformed stream chunk: {oops"}
    with pytest.raises(ollama.ResponseError, match="malformed stream chunk"):
        await chat_stream(ollama_client)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"data: {oops\n\n", "text/event-stream", "upstream upstream.test sent a malformed stream chunk: {oops"),
        (
            b"<html><body>Bad gateway</body></html>",
            "text/html",
            "upstream upstream.test sent a body that is not an event stream: <html><body>Bad gateway",
        ),
        (b"", "text/event-stream", "upstream upstream.test ended the stream without sending anything"),
    ],
)
async def test_unusable_upstream_body_before_any_output(
    fake, client, body: bytes, content_type: str, message: str
) -> None:
    fake.on(
        "POST", "/chat/completions", lambda r: httpx.Response(200, content=body, headers={"content-type": content_type})
    )
    for stream in (True, False):
        response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK, "stream": stream})
        assert response.status_code == 502
        assert response.json()["error"].startswith(message)


async def test_in_stream_error_event_from_the_upstream(fake, ollama_client) -> None:
    error = {"error": {"message": "Requests rate limit exceeded", "type": "rate_limit", "code": 429}}
    fake.on("POST", "/chat/completions", lambda r: sse_response(sse(error)))
    with pytest.raises(ollama.ResponseError) as caught:
        await chat_stream(ollama_client)
    assert (caught.value.status_code, caught.value.error) == (429, "Requests rate limit exceeded")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/chat", {"messages": ASK, "think": "extreme"}, 'invalid think value: "extreme"'),
        ("/api/chat", {"messages": "hi"}, "messages must be a list"),
        ("/api/chat", {"messages": {"role": "user"}}, "messages must be a list"),
        (
            "/api/chat",
            {"messages": [{"role": "user", "content": "?", "images": ["not base64!"]}]},
            "messages[0].images[0] is not valid base64",
        ),
        ("/api/chat", {"messages": ASK, "options": {"temperature": "warm"}}, "options.temperature must be a number"),
        ("/api/chat", {"messages": ASK, "top_logprobs": 30, "logprobs": True}, "top_logprobs must be between 0 and 20"),
        ("/api/chat", {"messages": ASK, "format": "yaml"}, 'invalid format: "yaml"'),
        ("/api/generate", {"prompt": "x", "images": ["@@@"]}, "images[0] is not valid base64"),
        ("/api/generate", {"prompt": 5}, "prompt must be a string"),
        ("/api/embed", {"input": 5}, "invalid input type"),
        ("/api/embed", {"input": "x", "truncate": "yes"}, "truncate must be a boolean"),
        ("/api/embed", {"input": "x", "dimensions": -1}, "dimensions must be a positive integer"),
        ("/api/embeddings", {"prompt": ["x"]}, "prompt must be a string"),
    ],
)
async def test_invalid_requests_are_400_naming_the_field(fake, client, path: str, body: dict[str, Any], message: str):
    model = "text-embedding-test" if "embed" in path else MODEL
    response = await client.post(path, json={"model": model, **body})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert [r.method for r in fake.requests if r.method == "POST"] == []


async def test_invalid_think_through_the_official_client(ollama_client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.chat(model=MODEL, messages=ASK, think="extreme")  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert "invalid think value" in caught.value.error


# ---------------------------------------------------------------- framing


async def test_stream_defaults_to_true_and_the_final_line_is_complete(fake, client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hi"))
    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK})
    lines = ndjson(response)
    for line in lines:
        assert set(line) >= {"model", "created_at", "message", "done"}
        assert RFC3339_UTC.fullmatch(line["created_at"])
        assert isinstance(line["message"]["content"], str)
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert {
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    } <= set(final)
    assert all(isinstance(final[m], int) for m in METRICS)
    assert (final["prompt_eval_count"], final["eval_count"]) == (11, 7)


async def test_non_streamed_answer_is_json(fake, client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hi"))
    response = await client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json()["response"] == "Hi"


async def test_line_separators_are_escaped(fake, client, ollama_client) -> None:
    # ollama-python splits lines with str.splitlines, which also breaks on U+2028 and U+0085.
    tokens = ("one\u2028two", "\u2029three\u0085")
    fake.on("POST", "/chat/completions", text_stream(*tokens))
    raw = (await client.post("/api/chat", json={"model": MODEL, "messages": ASK})).content
    assert "\u2028".encode() not in raw and "\u2029".encode() not in raw
    assert b"\\u2028" in raw and b"\\u2029" in raw
    parts = await chat_stream(ollama_client)
    assert "".join(p.message.content or "" for p in parts) == "".join(tokens)


# ---------------------------------------------------------------- recorded upstream transcripts


def _normalized(line: dict[str, Any]) -> dict[str, Any]:
    line = dict(line)
    if "created_at" in line:
        assert RFC3339_UTC.fullmatch(line.pop("created_at"))
    if line.get("done"):
        for metric in METRICS:
            assert isinstance(line.pop(metric), int)
    return line


TRANSCRIPT_NAMES = sorted(p.stem for p in TRANSCRIPTS.glob("native_*.sse"))


@pytest.mark.parametrize("name", TRANSCRIPT_NAMES)
async def test_recorded_transcripts(fake, client, name: str) -> None:
    expected = json.loads((TRANSCRIPTS / f"{name}.json").read_text())
    raw = transcript(f"{name}.sse")
    # Sent in small, uneven reads so that events and multi-byte characters straddle them.
    reads = [raw[i : i + 37] for i in range(0, len(raw), 37)]
    fake.on("POST", "/chat/completions", lambda request: sse_response(dribble(*reads)))
    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK})
    assert response.status_code == expected["status"]
    assert [_normalized(line) for line in ndjson(response)] == expected["stream"]

    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK, "stream": False})
    assert response.status_code == expected["collected_status"]
    assert _normalized(response.json()) == expected["collected"]
