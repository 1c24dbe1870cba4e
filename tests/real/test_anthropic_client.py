"""The official `anthropic` client against oai2ollama's /v1/messages in front of llama.cpp's llama-server."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from .conftest import ANSWER_TOKENS, NAMES
from .tiny_model import ANSWER, ANSWER_PIECES, TOOL_ANSWER, TOOL_ARGUMENTS, TOOL_NAME

WEATHER_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "The current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
QUESTION: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_message(anthropic_api: anthropic.Anthropic, name: str) -> None:
    message = anthropic_api.messages.create(model=name, max_tokens=64, messages=QUESTION, system="Be brief.")
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == ANSWER  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == ANSWER_TOKENS
    # llama-server reuses its cache for a repeated prompt; Anthropic counts cache reads apart.
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 5


def test_message_streamed(anthropic_api: anthropic.Anthropic, name: str) -> None:
    with anthropic_api.messages.stream(model=name, max_tokens=64, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == ANSWER_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_message_limited_by_max_tokens(anthropic_api: anthropic.Anthropic, name: str, stream: bool) -> None:
    if stream:
        with anthropic_api.messages.stream(model=name, max_tokens=2, messages=QUESTION) as events:
            message = events.get_final_message()
    else:
        message = anthropic_api.messages.create(model=name, max_tokens=2, messages=QUESTION)
    assert message.content[0].text == "".join(ANSWER_PIECES[:2])  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"


def test_stop_sequence(anthropic_api: anthropic.Anthropic, name: str) -> None:
    message = anthropic_api.messages.create(model=name, max_tokens=64, messages=QUESTION, stop_sequences=[" tiny"])
    assert message.content[0].text == "Hello! I am a"  # type: ignore[union-attr]
    # README: OpenAI-compatible servers do not say which stop string matched, so never "stop_sequence".
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_use_round_trip(anthropic_api: anthropic.Anthropic, name: str, stream: bool) -> None:
    if stream:
        with anthropic_api.messages.stream(model=name, max_tokens=64, messages=QUESTION, tools=[WEATHER_TOOL]) as s:
            message = s.get_final_message()
    else:
        message = anthropic_api.messages.create(model=name, max_tokens=64, messages=QUESTION, tools=[WEATHER_TOOL])
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [(TOOL_NAME, TOOL_ARGUMENTS)]
    assert all(block.type != "text" or not block.text for block in message.content)

    messages = [
        *QUESTION,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny, 21 °C"}],
        },
    ]
    final = anthropic_api.messages.create(model=name, max_tokens=64, messages=messages, tools=[WEATHER_TOOL])
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == TOOL_ANSWER  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("name", NAMES)  # counting is an estimate that needs no upstream, so no 404 either
def test_count_tokens(anthropic_api: anthropic.Anthropic, name: str) -> None:
    counted = anthropic_api.messages.count_tokens(model=name, messages=QUESTION)
    assert counted.input_tokens > 0
