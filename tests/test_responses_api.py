"""/v1/responses driven by the official `openai` SDK (and by a replay of Codex CLI's request):
relayed where the upstream has /responses, translated to chat completions where it has not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.routes.responses import route_missing
from oai2ollama.upstream import Upstreams

from .fakes import BASE_URL, chunk, dribble, openai_error, sse, sse_response, text_stream, tool_stream, usage_chunk

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


def answers(fake, *streams: list[dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    """The upstream's chat answers, one per request, in order."""
    queue = [sse(*chunks) for chunks in streams]
    fake.on("POST", "/chat/completions", lambda request: sse_response(queue.pop(0)))


def chat_messages(fake) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return fake.bodies("/chat/completions")[-1]["messages"]


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event line, data) of each frame."""
    frames = []
    for frame in body.decode().split("\n\n"):
        if frame.strip():
            fields = dict(line.split(": ", 1) for line in frame.split("\n"))
            frames.append((fields["event"], json.loads(fields["data"])))
    return frames


async def test_plain_text(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, text_stream("Hello", " there!"))
    response = await openai_client.responses.create(
        model="gpt-test:latest", instructions="Be brief.", input="Hi", max_output_tokens=64, temperature=0.3
    )
    assert response.id.startswith("resp_") and response.status == "completed" and response.model == "gpt-test:latest"
    assert response.output_text == "Hello there!"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (11, 7, 18)
    assert [r.url.path for r in fake.requests if r.method == "POST"] == ["/v1/responses", "/v1/chat/completions"]
    assert fake.bodies("/chat/completions")[-1] == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_streamed_with_reasoning(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, text_stream("4", "2", reasoning=["Six ", "times seven."]))
    async with openai_client.responses.stream(model="gpt-test", input="6 × 7?") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert deltas == ["Six ", "times seven."]
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["4", "2"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "42" and final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == "Six times seven."  # type: ignore[union-attr]


async def test_tool_round_trip_by_previous_response_id(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, tool_stream(("call_w1", "get_weather", {"city": "Paris"})), text_stream("18 °C in Paris."))
    first = await openai_client.responses.create(model="gpt-test", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    (call,) = first.output
    assert call.type == "function_call" and (call.call_id, call.name) == ("call_w1", "get_weather")
    assert json.loads(call.arguments) == {"city": "Paris"}
    sent_tools = fake.bodies("/chat/completions")[-1]["tools"]
    assert sent_tools == [
        {"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters")}}
    ]
    second = await openai_client.responses.create(
        model="gpt-test",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_w1", "output": "18 °C"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "18 °C in Paris." and second.previous_response_id == first.id
    assert chat_messages(fake) == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": call.arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": "18 °C"},
    ]


async def test_a_conversation_continued_twice(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, text_stream("Hi Ana!"), text_stream("Fine."), text_stream("Ana."))
    first = await openai_client.responses.create(model="gpt-test", instructions="Old rules.", input="I am Ana.")
    second = await openai_client.responses.create(model="gpt-test", previous_response_id=first.id, input="How are you?")
    await openai_client.responses.create(model="gpt-test", previous_response_id=second.id, input="Who am I?")
    assert chat_messages(fake) == [  # instructions are not carried over, as on OpenAI
        {"role": "user", "content": "I am Ana."},
        {"role": "assistant", "content": "Hi Ana!"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine."},
        {"role": "user", "content": "Who am I?"},
    ]
    kept = await openai_client.responses.retrieve(second.id)
    assert (kept.id, kept.output_text) == (second.id, "Fine.")


async def test_unknown_previous_response(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, text_stream("unused"))
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.responses.create(model="gpt-test", previous_response_id="resp_nope", input="Hi")
    assert caught.value.body == {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    assert fake.bodies("/chat/completions") == []


async def test_store_false_is_not_kept(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, text_stream("Hi"))
    response = await openai_client.responses.create(model="gpt-test", input="Hi", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError, match=f"Response with id '{response.id}' not found"):
        await openai_client.responses.retrieve(response.id)


async def test_built_in_tools_are_refused(fake, openai_client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="built-in tool 'web_search' cannot run here"):
        await openai_client.responses.create(model="gpt-test", input="News?", tools=[{"type": "web_search"}])
    assert fake.bodies("/chat/completions") == []


async def test_relayed_where_the_upstream_has_responses(fake, openai_client: openai.AsyncOpenAI) -> None:
    upstream_answer = {
        "id": "resp_up",
        "object": "response",
        "created_at": 1,
        "model": "gpt-test",
        "status": "completed",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    fake.on("POST", "/responses", httpx.Response(200, json=upstream_answer))
    response = await openai_client.responses.create(model="gpt-test:latest", input="Hi", store=False)
    assert response.id == "resp_up"
    assert fake.bodies("/responses") == [{"model": "gpt-test", "input": "Hi", "store": False}]
    assert fake.bodies("/chat/completions") == []


async def test_the_missing_route_is_learned_once(fake, openai_client: openai.AsyncOpenAI) -> None:
    answers(fake, text_stream("one"), text_stream("two"))
    assert (await openai_client.responses.create(model="gpt-test", input="1")).output_text == "one"
    assert (await openai_client.responses.create(model="gpt-test", input="2")).output_text == "two"
    assert len(fake.bodies("/responses")) == 1 and len(fake.bodies("/chat/completions")) == 2


async def test_a_model_404_is_relayed_not_learned(fake, openai_client: openai.AsyncOpenAI) -> None:
    message = "The model `gpt-test` does not exist or you do not have access to it."
    fake.on("POST", "/responses", openai_error(404, message, "invalid_request_error"))
    for _ in range(2):
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await openai_client.responses.create(model="gpt-test", input="Hi")
    assert len(fake.bodies("/responses")) == 2 and fake.bodies("/chat/completions") == []


@pytest.mark.parametrize(
    ("status", "body", "missing"),
    [
        (404, b'{"detail":"Not Found"}', True),
        (404, b'{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}', True),
        (404, b"<html><body>404 Not Found</body></html>", True),
        (404, b'{"error":"Unexpected endpoint or method. (POST /v1/responses)"}', True),
        (405, b'{"detail":"Method Not Allowed"}', True),
        (404, b'{"error":{"message":"The model `x` does not exist.","code":"model_not_found"}}', False),
        (404, b'{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError","code":404}', False),
        (404, b'{"error":"model \'x\' not found"}', False),
        (400, b'{"error":"bad request"}', False),
        (401, b'{"error":"no key"}', False),
    ],
)
def test_route_missing(status: int, body: bytes, missing: bool) -> None:
    assert route_missing(status, body) is missing


async def test_failure_mid_stream_is_a_failed_event(fake, openai_client: openai.AsyncOpenAI) -> None:
    head = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), done=False)
    fake.on("POST", "/responses", openai_error(404, "no route"))
    fake.on(
        "POST",
        "/chat/completions",
        lambda request: sse_response(dribble(head, error=httpx.ReadError("connection reset"))),
    )
    stream = await openai_client.responses.create(model="gpt-test", input="Hi", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events][-2:] == ["response.output_text.delta", "response.failed"]
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "server_error"
    assert "broke off the answer" in failed.error.message and "connection reset" in failed.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_failure_before_the_answer_keeps_its_status(fake, openai_client: openai.AsyncOpenAI) -> None:
    fake.on(
        "POST", "/chat/completions", openai_error(429, "Rate limit reached", "rate_limit_error", **{"retry-after": "7"})
    )
    with pytest.raises(openai.RateLimitError, match="Rate limit reached") as caught:
        await openai_client.with_options(max_retries=0).responses.create(model="gpt-test", input="Hi", stream=True)
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.fixture
async def configured(tmp_path: Path, fake) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client for an app whose one upstream comes from a config file with the given mode."""
    upstreams = Upstreams(transport=fake.transport())

    def client(mode: str) -> openai.AsyncOpenAI:
        path = tmp_path / "oai2ollama.toml"
        path.write_text(f'[[upstreams]]\nname = "up"\nbase_url = "{BASE_URL}"\nresponses = "{mode}"\n')
        app = create_app(Settings(_env_file=None, config=path), upstreams=upstreams)  # type: ignore[call-arg]
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app))
        return openai.AsyncOpenAI(base_url="http://127.0.0.1:11434/v1", api_key="k", http_client=http, max_retries=0)

    yield client
    await upstreams.aclose()


async def test_configured_translate_never_asks_for_responses(fake, configured) -> None:  # type: ignore[no-untyped-def]
    answers(fake, text_stream("Hi"))
    assert (await configured("translate").responses.create(model="gpt-test", input="Hi")).output_text == "Hi"
    assert fake.bodies("/responses") == []


async def test_configured_relay_never_translates(fake, configured) -> None:  # type: ignore[no-untyped-def]
    answers(fake, text_stream("unused"))
    with pytest.raises(openai.NotFoundError, match="no route POST /responses"):
        await configured("relay").responses.create(model="gpt-test", input="Hi")
    assert fake.bodies("/chat/completions") == []


# ---------------------------------------------------------------- Codex CLI
#
# The request as Codex CLI builds it (codex-rs `ResponsesApiRequest`: model, instructions, input of
# `ResponseItem`s, tools, tool_choice "auto", parallel_tool_calls, reasoning {effort, summary},
# store, stream, include, prompt_cache_key, text {verbosity}); its function tools say `strict:
# false`, its permissions arrive as a developer message, earlier turns come back as reasoning,
# function_call and function_call_output items.

CODEX_SHELL = {
    "type": "function",
    "name": "shell_command",
    "description": "Runs a shell command and returns its output.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"command": {"type": "string"}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}},
        "required": ["command"],
        "additionalProperties": False,
    },
}
CODEX_PLAN = {
    "type": "function",
    "name": "update_plan",
    "description": "Updates the task plan.",
    "strict": False,
    "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object"}}}},
}
CODEX_REQUEST: dict[str, Any] = {
    "model": "gpt-test",
    "instructions": "You are Codex, a coding agent running in the user's terminal.",
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions/>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is in this repo?"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Run ls."}], "encrypted_content": None},
        {"type": "function_call", "name": "shell_command", "arguments": '{"command":"ls"}', "call_id": "call_ls"},
        {"type": "function_call_output", "call_id": "call_ls", "output": "README.md\nsrc\n"},
    ],
    "tools": [CODEX_SHELL, CODEX_PLAN],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199a213-81c0-7800-8aa1-bbab2a035a53",
    "text": {"verbosity": "medium"},
}


def codex_reads_item(item: dict[str, Any]) -> None:
    """What Codex's `ResponseItem` needs to deserialize an output item (it skips one it cannot)."""
    if item["type"] == "message":
        assert isinstance(item["role"], str)
        assert all(part["type"] == "output_text" and isinstance(part["text"], str) for part in item["content"])
    elif item["type"] == "reasoning":
        assert all(part["type"] == "summary_text" and isinstance(part["text"], str) for part in item["summary"])
        assert item.get("encrypted_content") is None or isinstance(item["encrypted_content"], str)
    else:
        assert item["type"] == "function_call"
        assert all(isinstance(item[key], str) for key in ("name", "arguments", "call_id"))


def codex_reads(frames: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Check every event the way Codex's SSE reader reads it; return what it would have gathered."""
    seen: dict[str, Any] = {"items": [], "text": "", "summary": ""}
    for name, event in frames:
        assert name == event["type"] and isinstance(event["sequence_number"], int)
        kind = event["type"]
        if kind in ("response.output_item.added", "response.output_item.done"):
            codex_reads_item(event["item"])
            if kind.endswith("done"):
                seen["items"].append(event["item"])
        elif kind == "response.output_text.delta":
            seen["text"] += event["delta"]
        elif kind == "response.reasoning_summary_text.delta":
            assert isinstance(event["summary_index"], int)
            seen["summary"] += event["delta"]
        elif kind == "response.reasoning_summary_part.added":
            assert isinstance(event["summary_index"], int)
        elif kind == "response.created":
            assert isinstance(event["response"], dict)
        elif kind == "response.completed":
            response = event["response"]
            assert isinstance(response["id"], str)
            usage = response["usage"]
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                assert isinstance(usage[key], int)
            assert isinstance(usage["input_tokens_details"]["cached_tokens"], int)
            assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
            seen["completed"] = response
        elif kind == "response.failed":
            error = event["response"]["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
            seen["failed"] = error
    return seen


async def test_codex_turn(fake, client: httpx.AsyncClient) -> None:
    answer = [
        chunk({"role": "assistant", "content": "", "reasoning_content": "Two entries; "}),
        chunk({"reasoning_content": "now plan."}),
        chunk({"content": "A README "}),
        chunk({"content": "and src."}),
        *tool_stream(("call_plan", "update_plan", {"plan": []}))[1:-2],
        chunk({}, "tool_calls"),
        {**usage_chunk(120, 30), "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                                           "prompt_tokens_details": {"cached_tokens": 96},
                                           "completion_tokens_details": {"reasoning_tokens": 12}}},
    ]  # fmt: skip
    answers(fake, answer)
    response = await client.post("/v1/responses", json=CODEX_REQUEST)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = sse_events(response.content)
    seen = codex_reads(frames)
    assert frames[-1][0] == "response.completed"  # Codex fails a stream that closes without it
    assert seen["summary"] == "Two entries; now plan." and seen["text"] == "A README and src."
    reasoning, message, call = seen["items"]
    assert reasoning["type"] == "reasoning" and message["content"][0]["text"] == "A README and src."
    assert (call["name"], call["call_id"], json.loads(call["arguments"])) == ("update_plan", "call_plan", {"plan": []})
    assert seen["completed"]["usage"] == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 96, "cache_write_tokens": 0},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 150,
    }
    assert fake.bodies("/chat/completions")[-1] == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": CODEX_REQUEST["instructions"]},
            {"role": "system", "content": "<permissions/>"},
            {"role": "user", "content": "<environment_context/>"},
            {"role": "user", "content": "What is in this repo?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Run ls.",
                "tool_calls": [
                    {
                        "id": "call_ls",
                        "type": "function",
                        "function": {"name": "shell_command", "arguments": '{"command":"ls"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_ls", "content": "README.md\nsrc\n"},
        ],
        "tools": [
            {"type": "function", "function": {k: tool[k] for k in ("name", "description", "parameters")}}
            for tool in (CODEX_SHELL, CODEX_PLAN)
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # store: false, as Codex sends it: nothing is kept to continue from.
    assert (await client.get(f"/v1/responses/{seen['completed']['id']}")).status_code == 404


async def test_codex_sees_a_failure(fake, client: httpx.AsyncClient) -> None:
    head = sse(chunk({"role": "assistant", "content": "Partial"}), done=False)
    fake.on("POST", "/chat/completions", lambda request: sse_response(dribble(head, error=httpx.ReadTimeout("slow"))))
    response = await client.post("/v1/responses", json=CODEX_REQUEST)
    frames = sse_events(response.content)
    seen = codex_reads(frames)
    assert frames[-1][0] == "response.failed" and "completed" not in seen
    assert seen["failed"]["code"] == "server_error" and "stopped sending" in seen["failed"]["message"]
