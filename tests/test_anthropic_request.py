"""Anthropic Messages requests → OpenAI chat-completions bodies, rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from oai2ollama.errors import BadRequest
from oai2ollama.translate.anthropic_request import messages_request, reasoning_effort
from oai2ollama.translate.anthropic_tokens import estimate_input_tokens

STREAM = {"stream": True, "stream_options": {"include_usage": True}}
USER_HI = {"role": "user", "content": "hi"}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER_TOOL = {"name": "weather", "description": "Weather in a city", "input_schema": SCHEMA}
WEATHER_FUNCTION = {
    "type": "function",
    "function": {"name": "weather", "description": "Weather in a city", "parameters": SCHEMA},
}


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [USER_HI], **fields}


def body(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return {"model": "up", "messages": messages or [USER_HI], "max_tokens": 100, **fields, **STREAM}


TOOL_TURN = {
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
}
TOOL_CALL = {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}

CASES = [
    pytest.param(request(), body(), id="string content; stream asked for even when the client did not"),
    pytest.param(
        request(system="Be brief.", stream=False),
        body([{"role": "system", "content": "Be brief."}, USER_HI]),
        id="system string",
    ),
    pytest.param(
        request(
            system=[
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Use tools."},
            ]
        ),
        body([{"role": "system", "content": "You are Claude Code.\n\nUse tools."}, USER_HI]),
        id="system blocks joined, cache_control dropped",
    ),
    pytest.param(
        request(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                        {"type": "text", "text": "question", "cache_control": {"type": "ephemeral"}},
                    ],
                }
            ]
        ),
        body([{"role": "user", "content": "<system-reminder>ctx</system-reminder>\n\nquestion"}]),
        id="text-only blocks become one string",
    ),
    pytest.param(
        request(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                    ],
                }
            ]
        ),
        body(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ]
        ),
        id="images: base64 to data URL, url as URL",
    ),
    pytest.param(
        request(
            messages=[
                USER_HI,
                TOOL_TURN,
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "thanks"},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C"},
                    ],
                },
            ]
        ),
        body(
            [
                USER_HI,
                {"role": "assistant", "content": "Let me look.", "tool_calls": [TOOL_CALL]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18 °C"},
                {"role": "user", "content": "thanks"},
            ]
        ),
        id="tool_use to tool_calls; tool results placed before the turn's text",
    ),
    pytest.param(
        request(
            messages=[
                USER_HI,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ls", "input": {}}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "is_error": True,
                            "content": [{"type": "text", "text": "permission denied"}],
                        }
                    ],
                },
            ]
        ),
        body(
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "Error: permission denied"},
            ]
        ),
        id="calls without text have null content; is_error kept in the result text",
    ),
    pytest.param(
        request(
            messages=[
                USER_HI,
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {"type": "text", "text": "screenshot:"},
                                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                            ],
                        },
                        {"type": "tool_result", "tool_use_id": "t2"},
                    ],
                },
            ]
        ),
        body(
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}],
                },
                {
                    "role": "tool",
                    "tool_call_id": "t1",
                    "content": "screenshot:\n\n[1 attachment(s) of this result follow in the next user message]",
                },
                {"role": "tool", "tool_call_id": "t2", "content": ""},
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
                },
            ]
        ),
        id="images of a tool result move to a user message",
    ),
    pytest.param(
        request(
            messages=[
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "User greets.", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "Hello!"},
                    ],
                },
                {"role": "user", "content": "again"},
            ]
        ),
        body(
            [
                USER_HI,
                {"role": "assistant", "content": "Hello!", "reasoning_content": "User greets."},
                {"role": "user", "content": "again"},
            ]
        ),
        id="earlier thinking to reasoning_content, never visible; redacted thinking dropped",
    ),
    pytest.param(
        request(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "title": "notes.txt", "source": {"type": "text", "data": "a\nb"}},
                        {"type": "text", "text": "Summarise"},
                    ],
                }
            ]
        ),
        body([{"role": "user", "content": "notes.txt\n\na\nb\n\nSummarise"}]),
        id="plain-text document as text",
    ),
    pytest.param(
        request(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                        }
                    ],
                }
            ]
        ),
        body(
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"},
                        }
                    ],
                }
            ]
        ),
        id="PDF document as an OpenAI file part",
    ),
    pytest.param(
        request(tools=[{**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}}, {"name": "now"}]),
        body(
            tools=[
                WEATHER_FUNCTION,
                {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
            ]
        ),
        id="tools to functions; a missing schema becomes an empty object schema",
    ),
    pytest.param(
        request(tools=[WEATHER_TOOL], tool_choice={"type": "auto"}),
        body(tools=[WEATHER_FUNCTION], tool_choice="auto"),
        id="tool_choice auto",
    ),
    pytest.param(
        request(tools=[WEATHER_TOOL], tool_choice={"type": "any", "disable_parallel_tool_use": True}),
        body(tools=[WEATHER_FUNCTION], tool_choice="required", parallel_tool_calls=False),
        id="tool_choice any to required; disable_parallel_tool_use",
    ),
    pytest.param(
        request(tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "weather"}),
        body(tools=[WEATHER_FUNCTION], tool_choice={"type": "function", "function": {"name": "weather"}}),
        id="tool_choice tool to a named function",
    ),
    pytest.param(
        request(tools=[WEATHER_TOOL], tool_choice={"type": "none"}),
        body(tools=[WEATHER_FUNCTION], tool_choice="none"),
        id="tool_choice none",
    ),
    pytest.param(request(tool_choice={"type": "auto"}), body(), id="tool_choice without tools is dropped"),
    pytest.param(
        request(stop_sequences=["\n\nHuman:", "END"], temperature=0.2, top_p=0.9, top_k=40),
        body(temperature=0.2, top_p=0.9, top_k=40, stop=["\n\nHuman:", "END"]),
        id="sampling and stop_sequences",
    ),
    pytest.param(request(stop_sequences=[]), body(), id="no stop sequences, no stop"),
    pytest.param(
        request(thinking={"type": "enabled", "budget_tokens": 10000}),
        body(reasoning_effort="medium"),
        id="thinking budget to reasoning_effort",
    ),
    pytest.param(
        request(thinking={"type": "adaptive"}, output_config={"effort": "max"}),
        body(reasoning_effort="high"),
        id="adaptive thinking with an effort",
    ),
    pytest.param(request(thinking={"type": "adaptive"}), body(), id="adaptive thinking alone: upstream default"),
    pytest.param(
        request(thinking={"type": "disabled"}, output_config={"effort": "low"}),
        body(),
        id="disabled thinking sends no effort",
    ),
    pytest.param(
        request(metadata={"user_id": "u-1"}, service_tier="auto", container=None, something_new={"x": 1}),
        body(),
        id="metadata and unknown fields ignored",
    ),
]


@pytest.mark.parametrize(("anthropic", "openai"), CASES)
def test_messages_request(anthropic: dict[str, Any], openai: dict[str, Any]) -> None:
    assert messages_request(anthropic, upstream_model="up") == openai


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (1024, "low"),
        (4000, "low"),
        (4096, "medium"),
        (10000, "medium"),
        (16383, "medium"),
        (16384, "high"),
        (31999, "high"),
    ],
)
def test_reasoning_effort(budget: int, effort: str) -> None:
    assert reasoning_effort(budget) == effort


def _with_content(*blocks: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return request(messages=[{"role": role, "content": list(blocks)}])


ERRORS = [
    pytest.param({"model": "m", "messages": [USER_HI]}, "max_tokens: Field required", id="max_tokens missing"),
    pytest.param(request(max_tokens=0), "max_tokens must be a positive integer", id="max_tokens zero"),
    pytest.param(request(max_tokens="10"), "max_tokens must be a positive integer", id="max_tokens string"),
    pytest.param(request(messages=[]), "at least one message", id="no messages"),
    pytest.param(request(messages=[{"role": "system", "content": "x"}]), "messages[0].role", id="bad role"),
    pytest.param(request(messages=[{"role": "user", "content": 5}]), "messages[0].content", id="bad content"),
    pytest.param(request(system=[{"type": "text"}]), "system[0]", id="system block without text"),
    pytest.param(
        _with_content({"type": "image", "source": {"type": "file", "file_id": "f"}}),
        "image source type 'file'",
        id="file image source",
    ),
    pytest.param(
        _with_content({"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}),
        "document source 'url'",
        id="url document",
    ),
    pytest.param(_with_content({"type": "tool_result", "content": "x"}), "tool_use_id", id="result without id"),
    pytest.param(
        _with_content({"type": "tool_use", "name": "f", "input": {}}, role="assistant"),
        "tool_use needs `id` and `name`",
        id="call without id",
    ),
    pytest.param(_with_content({"type": "server_tool_use"}), "'server_tool_use' is not supported", id="user block"),
    pytest.param(
        _with_content({"type": "web_search_tool_result"}, role="assistant"),
        "'web_search_tool_result' is not supported",
        id="assistant block",
    ),
    pytest.param(
        request(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
        "server tool 'web_search_20250305'",
        id="server tool",
    ),
    pytest.param(request(tools={"name": "x"}), "tools must be a list", id="tools not a list"),
    pytest.param(request(tools=[WEATHER_TOOL], tool_choice={"type": "maybe"}), "tool_choice", id="bad tool_choice"),
    pytest.param(request(tools=[WEATHER_TOOL], tool_choice={"type": "tool"}), "tool_choice", id="tool without name"),
    # Once a TypeError (a list is not hashable) and a 500.
    pytest.param(request(tools=[WEATHER_TOOL], tool_choice={"type": ["auto"]}), "tool_choice", id="type a list"),
    pytest.param(request(tools=[WEATHER_TOOL], tool_choice=[{"type": "auto"}]), "tool_choice", id="tool_choice a list"),
    pytest.param(request(thinking={"type": "enabled"}), "budget_tokens", id="thinking without budget"),
    pytest.param(request(thinking={"type": "on"}), "thinking.type", id="bad thinking type"),
    pytest.param(request(stop_sequences="END"), "stop_sequences", id="stop_sequences string"),
]


@pytest.mark.parametrize(("anthropic", "message"), ERRORS)
def test_bad_requests(anthropic: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        messages_request(anthropic, upstream_model="up")
    assert message in caught.value.message
    assert caught.value.status == 400


ESTIMATES = [
    pytest.param({"messages": [{"role": "user", "content": "abcd" * 10}]}, 10, id="40 characters"),
    pytest.param({"messages": [{"role": "user", "content": "abcde"}]}, 2, id="rounded up"),
    pytest.param(
        {"system": [{"type": "text", "text": "s" * 8}], "messages": [{"role": "user", "content": "u" * 8}]},
        4,
        id="system counted",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "q" * 4}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t" * 4, "signature": "ignored"},
                        {"type": "tool_use", "id": "toolu_ignored", "name": "ab", "input": {"k": "v"}},
                    ],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r" * 4}]},
            ]
        },
        6,  # 4 + 4 + (2 + len('{"k":"v"}') = 11) + 4 = 23 characters
        id="thinking, tool calls and results counted; ids and signatures not",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG * 50}},
                        {"type": "text", "text": "what"},
                    ],
                }
            ]
        },
        1601,
        id="an image is a flat 1,600 whatever its size",
    ),
    pytest.param(
        {"messages": [USER_HI], "tools": [{"name": "f", "input_schema": {}, "cache_control": {"type": "ephemeral"}}]},
        8,  # "hi" + '{"name":"f","input_schema":{}}' = 2 + 30 characters
        id="tool definitions counted as compact JSON",
    ),
]


@pytest.mark.parametrize(("anthropic", "tokens"), ESTIMATES)
def test_estimate_input_tokens(anthropic: dict[str, Any], tokens: int) -> None:
    assert estimate_input_tokens(anthropic) == tokens


def test_estimate_needs_messages() -> None:
    with pytest.raises(BadRequest):
        estimate_input_tokens({"model": "m"})
