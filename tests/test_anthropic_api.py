"""/v1/messages and /v1/messages/count_tokens, driven by the official `anthropic` SDK (and by a
recorded Claude Code request), with the fake OpenAI upstream behind the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from .fakes import (
    chunk,
    dribble,
    model_not_there,
    openai_error,
    sse,
    sse_response,
    text_stream,
    tool_stream,
    usage_chunk,
)

pytestmark = pytest.mark.anyio

TRANSCRIPTS = Path(__file__).parent / "transcripts"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def upstream_messages(fake) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return fake.bodies("/chat/completions")[-1]["messages"]


async def test_plain_text(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello", " there!"))
    message = await anthropic_client.messages.create(
        model="gpt-test", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == "gpt-test"
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello there!")]  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    sent = fake.last_body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 64 and sent["messages"] == [{"role": "user", "content": "Hi"}]


async def test_system_prompt(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Ahoy"))
    await anthropic_client.messages.create(
        model="gpt-test",
        max_tokens=64,
        system=[{"type": "text", "text": "Talk like a pirate.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert upstream_messages(fake) == [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "Hi"},
    ]


async def test_images(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Two dots."))
    message = await anthropic_client.messages.create(
        model="gpt-test",
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/dot.png"}},
                    {"type": "text", "text": "What do you see?"},
                ],
            }
        ],
    )
    assert message.content[0].text == "Two dots."  # type: ignore[union-attr]
    assert upstream_messages(fake)[0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dot.png"}},
        {"type": "text", "text": "What do you see?"},
    ]


def _tool_answer_then_text(fake) -> None:  # type: ignore[no-untyped-def]
    """First call: the model asks for the weather (in fragments). Second call: it answers."""
    answers = [
        sse(*tool_stream(("call_w1", "get_weather", {"city": "Paris"}), pieces=4)),
        sse(*text_stream("It is 18 °C in Paris.")),
    ]

    def respond(request: httpx.Request) -> httpx.Response:
        return sse_response(answers.pop(0))

    fake.on("POST", "/chat/completions", respond)


def _assert_second_turn(fake, first_call_id: str) -> None:  # type: ignore[no-untyped-def]
    call = {
        "id": first_call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    assert upstream_messages(fake) == [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": first_call_id, "content": "18 °C, sunny"},
    ]
    first = fake.bodies("/chat/completions")[0]
    assert first["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]


async def test_tool_use_loop_streamed(fake, anthropic_client) -> None:
    _tool_answer_then_text(fake)
    async with anthropic_client.messages.stream(
        model="gpt-test", max_tokens=256, tools=[WEATHER_TOOL], messages=ASK
    ) as stream:
        raw = [event async for event in stream if event.type in ("content_block_start", "content_block_delta")]
        first = await stream.get_final_message()
    assert raw[0].type == "content_block_start"
    fragments = [e.delta.partial_json for e in raw if e.type == "content_block_delta"]  # type: ignore[union-attr]
    # The upstream sent the arguments in several fragments; the client sees each as it came.
    assert len(fragments) > 1 and "".join(fragments) == '{"city": "Paris"}'
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert (use.type, use.id, use.name, use.input) == ("tool_use", "call_w1", "get_weather", {"city": "Paris"})  # type: ignore[union-attr]

    result = {"type": "tool_result", "tool_use_id": use.id, "content": "18 °C, sunny"}  # type: ignore[union-attr]
    messages = [*ASK, first.to_param(), {"role": "user", "content": [result]}]
    async with anthropic_client.messages.stream(
        model="gpt-test", max_tokens=256, tools=[WEATHER_TOOL], messages=messages
    ) as stream:
        answer = await stream.get_final_message()
    assert answer.content[0].text == "It is 18 °C in Paris." and answer.stop_reason == "end_turn"  # type: ignore[union-attr]
    _assert_second_turn(fake, "call_w1")


async def test_tool_use_loop_not_streamed(fake, anthropic_client) -> None:
    _tool_answer_then_text(fake)
    first = await anthropic_client.messages.create(model="gpt-test", max_tokens=256, tools=[WEATHER_TOOL], messages=ASK)
    assert first.stop_reason == "tool_use"
    assert [(b.type, b.input) for b in first.content] == [("tool_use", {"city": "Paris"})]  # type: ignore[union-attr]
    result = {"type": "tool_result", "tool_use_id": first.content[0].id, "content": "18 °C, sunny"}  # type: ignore[union-attr]
    answer = await anthropic_client.messages.create(
        model="gpt-test",
        max_tokens=256,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "auto"},
        messages=[*ASK, first.to_param(), {"role": "user", "content": [result]}],
    )
    assert answer.content[0].text == "It is 18 °C in Paris."  # type: ignore[union-attr]
    _assert_second_turn(fake, "call_w1")
    assert fake.last_body["tool_choice"] == "auto"


async def test_thinking(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("42", reasoning=["Six ", "times seven."]))
    async with anthropic_client.messages.stream(
        model="gpt-test",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "6*7?"}],
    ) as stream:
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert "thinking" in kinds  # the SDK's convenience event for thinking_delta
    assert fake.last_body["reasoning_effort"] == "low"
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Six times seven."  # type: ignore[union-attr]

    await anthropic_client.messages.create(
        model="gpt-test",
        max_tokens=2048,
        messages=[{"role": "user", "content": "6*7?"}, message.to_param(), {"role": "user", "content": "Sure?"}],
    )
    assert upstream_messages(fake)[1] == {"role": "assistant", "content": "42", "reasoning_content": "Six times seven."}


async def test_stop_sequences(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("1, 2, 3"))
    message = await anthropic_client.messages.create(
        model="gpt-test", max_tokens=64, stop_sequences=[", 4"], messages=[{"role": "user", "content": "Count"}]
    )
    assert fake.last_body["stop"] == [", 4"]
    # OpenAI's "stop" does not say whether a stop string matched, so no match is claimed.
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


async def test_max_tokens_stop(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("Once upon a", finish="length"))
    async with anthropic_client.messages.stream(
        model="gpt-test", max_tokens=3, messages=[{"role": "user", "content": "A story"}]
    ) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "max_tokens" and message.content[0].text == "Once upon a"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors(
    fake, anthropic_client, status: int, error_class: type, error_type: str, stream: bool
) -> None:
    fake.on("POST", "/chat/completions", openai_error(status, f"upstream says {status}"))
    with pytest.raises(error_class) as caught:
        await anthropic_client.messages.create(
            model="gpt-test", max_tokens=8, stream=stream, messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == status
    assert caught.value.body == {"type": "error", "error": {"type": error_type, "message": f"upstream says {status}"}}


async def test_an_unlisted_model_gets_the_upstreams_own_404(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", model_not_there)
    with pytest.raises(anthropic.NotFoundError, match="The model `claude-opus-9` does not exist"):
        await anthropic_client.messages.create(
            model="claude-opus-9", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        )
    assert fake.last_body["model"] == "claude-opus-9"


async def test_max_tokens_required(fake, client) -> None:
    response = await client.post(
        "/v1/messages", json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
    assert fake.bodies("/chat/completions") == []


async def test_error_chunk_before_any_answer_keeps_its_status(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", sse_response(sse({"error": {"message": "slow down", "code": 429}})))
    with pytest.raises(anthropic.RateLimitError, match="slow down"):
        async with anthropic_client.messages.stream(
            model="gpt-test", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            await stream.get_final_message()


def _dying_upstream(fake) -> None:  # type: ignore[no-untyped-def]
    head = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Half an ans"}), done=False)
    fake.on(
        "POST",
        "/chat/completions",
        lambda request: sse_response(dribble(head, error=httpx.ReadError("connection reset"))),
    )


async def test_mid_stream_failure_reaches_the_sdk(fake, anthropic_client) -> None:
    _dying_upstream(fake)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with anthropic_client.messages.stream(
            model="gpt-test", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            async for event in stream:
                seen.append(event.type)
    assert "text" in seen  # the answer had begun before it broke
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "broke off the answer" in caught.value.body["error"]["message"]  # type: ignore[index]


async def test_mid_stream_failure_is_an_error_event(fake, client) -> None:
    _dying_upstream(fake)
    body = {"model": "gpt-test", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.strip().split("\n\n")
    assert frames[0].startswith("event: message_start\ndata: ")
    event, data = frames[-1].split("\n")
    assert event == "event: error"
    assert json.loads(data.removeprefix("data: "))["error"]["type"] == "api_error"
    assert "message_stop" not in response.text


@pytest.mark.parametrize("settings_overrides", [{"api_key": None}])
async def test_client_key_is_forwarded_when_no_key_is_configured(fake, anthropic_client) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    await anthropic_client.messages.create(model="gpt-test", max_tokens=8, messages=[{"role": "user", "content": "Hi"}])
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == "Bearer k"


async def test_count_tokens(fake, anthropic_client) -> None:
    counted = await anthropic_client.messages.count_tokens(
        model="claude-anything",
        system="s" * 40,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "u" * 40}],
    )
    tool_chars = len(json.dumps(WEATHER_TOOL, separators=(",", ":")))
    assert counted.input_tokens == -(-(80 + tool_chars) // 4)
    assert fake.bodies("/chat/completions") == []  # estimated here, no upstream call


async def test_count_tokens_needs_messages(client) -> None:
    response = await client.post("/v1/messages/count_tokens", json={"model": "m"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


async def test_recorded_claude_code_request_replays(fake, client) -> None:
    recorded = json.loads((TRANSCRIPTS / "claude_code_request.json").read_text())
    fake.models.append({"id": "deepseek-chat", "object": "model", "created": 1700000000, "owned_by": "test"})
    edit = {"file_path": "/home/dev/calc/calc.py", "old_string": "a - b", "new_string": "a + b"}
    answer = tool_stream(("call_e1", "Edit", edit), pieces=5)
    answer[1:1] = [chunk({"reasoning_content": "The sign is wrong."}), chunk({"content": "`add` subtracts."})]
    answer[-1] = usage_chunk(prompt=1200, completion=60)
    fake.on("POST", "/chat/completions", answer)

    response = await client.post(recorded["path"], headers=recorded["headers"], json=recorded["body"])
    assert response.status_code == 200, response.text
    assert fake.last_body == json.loads((TRANSCRIPTS / "claude_code_upstream.json").read_text())
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-test-secret-0123456789"  # the configured key

    events = [json.loads(frame.split("\ndata: ")[1]) for frame in response.text.strip().split("\n\n")]
    assert [e["type"] for e in events if e["type"] != "content_block_delta"] == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    blocks = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use"]
    assert (blocks[2]["id"], blocks[2]["name"]) == ("call_e1", "Edit")
    partial = [e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert len(partial) > 1 and json.loads("".join(partial)) == edit
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"] == {"input_tokens": 1200, "output_tokens": 60}
    # Before the real count arrives, message_start carries the same estimate count_tokens gives.
    counted = await client.post("/v1/messages/count_tokens", headers=recorded["headers"], json=recorded["body"])
    assert events[0]["message"]["usage"]["input_tokens"] == counted.json()["input_tokens"] == 970
