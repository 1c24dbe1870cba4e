"""Responses requests → chat-completions requests: every mapping rule, as JSON literals."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oai2ollama.errors import BadRequest
from oai2ollama.translate.responses_request import chat_request, input_items

PNG_URL = "data:image/png;base64,iVBORw0KGgo="
STREAM = {"stream": True, "stream_options": {"include_usage": True}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "name": "get_weather", "description": "Weather", "parameters": SCHEMA, "strict": False}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA}}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
CHAT_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def translated(req: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = chat_request({"model": "client-name", **req}, upstream_model="up", history=history or [])
    assert body.pop("model") == "up"
    for key, value in STREAM.items():
        assert body.pop(key) == value
    return body


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("string input", {"input": "Hi"}, {"messages": [user("Hi")]}),
    (
        "instructions first",
        {"instructions": "Be brief.", "input": "Hi"},
        {"messages": [{"role": "system", "content": "Be brief."}, user("Hi")]},
    ),
    (
        "easy messages; developer becomes system",
        {"input": [{"role": "developer", "content": "Rules."}, {"role": "user", "content": "Hi"}]},
        {"messages": [{"role": "system", "content": "Rules."}, user("Hi")]},
    ),
    (
        "text parts joined",
        {"input": [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]}]},
        {"messages": [user("a\n\nb")]},
    ),
    (
        "images",
        {"input": [{"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is it?"},
            {"type": "input_image", "image_url": PNG_URL, "detail": "low"}]}]},
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is it?"},
            {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}}]}]},
    ),
    (
        "an assistant turn of reasoning, text and calls is one message",
        {"input": [
            user("Weather?"),
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need a tool."}],
             "encrypted_content": None},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            CALL,
            {"type": "function_call_output", "call_id": "call_1", "output": "18 °C"},
        ]},
        {"messages": [
            user("Weather?"),
            {"role": "assistant", "reasoning_content": "Need a tool.", "tool_calls": [CHAT_CALL],
             "content": "Checking."},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
        ]},
    ),
    (
        "a call alone has null content; raw reasoning text wins over its summary",
        {"input": [
            user("Weather?"),
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "short"}],
             "content": [{"type": "reasoning_text", "text": "long"}]},
            CALL,
            {"type": "function_call_output", "call_id": "call_1", "output": "18 °C"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "18 °C."}]},
        ]},
        {"messages": [
            user("Weather?"),
            {"role": "assistant", "reasoning_content": "long", "tool_calls": [CHAT_CALL], "content": None},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 °C"},
            {"role": "assistant", "content": "18 °C."},
        ]},
    ),
    (
        "images of a tool output follow in a user message",
        {"input": [
            user("Look"),
            CALL,
            {"type": "function_call_output", "call_id": "call_1", "output": [
                {"type": "input_text", "text": "a chart"}, {"type": "input_image", "image_url": PNG_URL}]},
        ]},
        {"messages": [
            user("Look"),
            {"role": "assistant", "tool_calls": [CHAT_CALL], "content": None},
            {"role": "tool", "tool_call_id": "call_1", "content": "a chart"},
            {"role": "user", "content": [
                {"type": "text", "text": "[attachments of the tool results above]"},
                {"type": "image_url", "image_url": {"url": PNG_URL}}]},
        ]},
    ),
    (
        "flat and chat-style function tools; strict kept only when true",
        {"input": "Hi", "tools": [TOOL, {**CHAT_TOOL, "function": {"name": "noop", "strict": True}}],
         "tool_choice": "auto", "parallel_tool_calls": False},
        {"messages": [user("Hi")], "tools": [CHAT_TOOL, {"type": "function", "function": {
            "name": "noop", "parameters": {"type": "object", "properties": {}}, "strict": True}}],
         "tool_choice": "auto", "parallel_tool_calls": False},
    ),
    (
        "a named tool choice",
        {"input": "Hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"}},
        {"messages": [user("Hi")], "tools": [CHAT_TOOL],
         "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
    ),
    (
        "allowed_tools keeps its mode",
        {"input": "Hi", "tools": [TOOL], "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": []}},
        {"messages": [user("Hi")], "tools": [CHAT_TOOL], "tool_choice": "required"},
    ),
    (
        "tool fields without tools are dropped",
        {"input": "Hi", "tools": [], "tool_choice": "auto", "parallel_tool_calls": True},
        {"messages": [user("Hi")]},
    ),
    (
        "json_schema",
        {"input": "Hi", "text": {"format": {"type": "json_schema", "name": "city", "schema": SCHEMA, "strict": True},
                                 "verbosity": "low"}},
        {"messages": [user("Hi")], "response_format": {"type": "json_schema", "json_schema": {
            "name": "city", "schema": SCHEMA, "strict": True}}},
    ),
    ("json_object", {"input": "Hi", "text": {"format": {"type": "json_object"}}},
     {"messages": [user("Hi")], "response_format": {"type": "json_object"}}),
    ("plain text format", {"input": "Hi", "text": {"format": {"type": "text"}}}, {"messages": [user("Hi")]}),
    (
        "sampling, limit and effort",
        {"input": "Hi", "max_output_tokens": 100, "temperature": 0.2, "top_p": 0.9,
         "reasoning": {"effort": "xhigh", "summary": "auto"}},
        {"messages": [user("Hi")], "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "reasoning_effort": "high"},
    ),
    (
        "what changes nothing upstream is ignored",
        {"input": "Hi", "store": False, "metadata": {"a": "b"}, "include": ["reasoning.encrypted_content"],
         "prompt_cache_key": "k", "truncation": "auto", "user": "u", "service_tier": "auto", "reasoning": {}},
        {"messages": [user("Hi")]},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("req", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_translation(req: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translated(req) == expected


def test_history_comes_between_instructions_and_input() -> None:
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello!", "annotations": []}]},
    ]  # fmt: skip
    body = translated({"instructions": "New rules.", "input": "And?"}, history)
    assert body["messages"] == [
        {"role": "system", "content": "New rules."},
        user("Hi"),
        {"role": "assistant", "content": "Hello!"},
        user("And?"),
    ]


def test_input_items() -> None:
    assert input_items({"input": "Hi"}) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    ]
    assert input_items({"input": [user("x")]}) == [user("x")]


ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0]: built-in tool 'web_search' cannot run here"),
    ({"input": "Hi", "tools": [{"type": "function"}]}, "tools[0] needs a `name`"),
    ({"input": "Hi", "tools": [TOOL], "tool_choice": {"type": "file_search"}}, "tool_choice must be"),
    ({"input": 5}, "input must be a string or a list of input items"),
    ({"input": []}, "input: at least one input item is required"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role must be user, assistant, system or developer"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]: input item type 'item_reference' is not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "content part type 'input_audio'"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0]: function_call needs `call_id` and `name`"),
    ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0]: function_call_output needs `output`"),
    ({"input": "Hi", "instructions": ["x"]}, "instructions must be a string"),
    ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens must be a positive integer"),
    ({"input": "Hi", "temperature": "hot"}, "temperature must be a number"),
    ({"input": "Hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort must be one of"),
    ({"input": "Hi", "text": {"format": {"type": "json_schema"}}}, "text.format.type must be"),
]


@pytest.mark.parametrize(("req", "words"), ERRORS, ids=[words for _, words in ERRORS])
def test_bad_requests_name_the_field(req: dict[str, Any], words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        chat_request({"model": "m", **req}, upstream_model="m")
    assert words in caught.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
item_types = st.sampled_from(["message", "reasoning", "function_call", "function_call_output", "other", None])
part = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file", "refusal", "x"])},
    optional={key: json_values | st.text() for key in ("text", "image_url", "file_data", "refusal", "detail")},
)
field_values = json_values | st.lists(part, max_size=3) | st.sampled_from(["user", "assistant", "developer"])
item = st.fixed_dictionaries(
    {"type": item_types},
    optional={key: field_values for key in ("role", "content", "summary", "call_id", "name", "arguments", "output")},
)
request = st.fixed_dictionaries(
    {"input": st.lists(item, max_size=4) | json_values},
    optional={key: json_values for key in ("instructions", "tools", "tool_choice", "text", "reasoning",
                                           "max_output_tokens", "temperature", "parallel_tool_calls")},
)  # fmt: skip


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=not os.environ.get("FUZZ_RANDOM"),  # the same examples every run, as in test_fuzz
    database=None,
)
@given(req=request, history=st.lists(item, max_size=2))
def test_any_request_translates_or_is_a_bad_request(req: dict[str, Any], history: list[dict[str, Any]]) -> None:
    try:
        body = chat_request(req, upstream_model="m", history=history)
    except BadRequest as exc:
        assert exc.message
    else:
        assert body["messages"] and all(message["role"] for message in body["messages"])
