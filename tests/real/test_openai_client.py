"""The official `openai` client against oai2ollama's /v1 routes in front of llama.cpp's llama-server."""

from __future__ import annotations

import json
import math
from typing import Any

import openai
import pytest

from .conftest import ANSWER_TOKENS
from .tiny_model import ANSWER, ANSWER_PIECES, TOOL_ANSWER, TOOL_ARGUMENTS, TOOL_NAME

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_models_list(openai_api: openai.OpenAI) -> None:
    ids = [model.id for model in openai_api.models.list()]
    assert {"tiny:latest", "tiny-tagged:latest", "tiny-embed:latest"} <= set(ids)


def test_models_retrieve(openai_api: openai.OpenAI, name: str) -> None:
    assert openai_api.models.retrieve(name).id.removesuffix(":latest") == name.removesuffix(":latest")


def test_chat_completion(openai_api: openai.OpenAI, name: str) -> None:
    completion = openai_api.chat.completions.create(model=name, messages=QUESTION, temperature=1.8, top_p=0.5)
    choice = completion.choices[0]
    assert choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert completion.usage is not None
    assert completion.usage.completion_tokens == ANSWER_TOKENS
    assert completion.usage.prompt_tokens > 5


def test_chat_completion_streamed(openai_api: openai.OpenAI, name: str) -> None:
    chunks = list(
        openai_api.chat.completions.create(
            model=name, messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert "".join(deltas) == ANSWER
    assert len([delta for delta in deltas if delta]) == len(ANSWER_PIECES)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = next(chunk.usage for chunk in chunks if chunk.usage)
    assert usage.completion_tokens == ANSWER_TOKENS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_completion_limited_by_max_tokens(openai_api: openai.OpenAI, name: str, stream: bool) -> None:
    if stream:
        chunks = list(openai_api.chat.completions.create(model=name, messages=QUESTION, max_tokens=4, stream=True))
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        choice = openai_api.chat.completions.create(model=name, messages=QUESTION, max_tokens=4).choices[0]
        text, finish = choice.message.content, choice.finish_reason
    assert text == "".join(ANSWER_PIECES[:4])
    assert finish == "length"


def test_chat_completion_stopped_by_a_stop_sequence(openai_api: openai.OpenAI, name: str) -> None:
    choice = openai_api.chat.completions.create(model=name, messages=QUESTION, stop=[" tiny"]).choices[0]
    assert (choice.message.content, choice.finish_reason) == ("Hello! I am a", "stop")


def test_chat_completion_with_a_tool_round_trip(openai_api: openai.OpenAI, name: str) -> None:
    completion = openai_api.chat.completions.create(model=name, messages=QUESTION, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == TOOL_NAME
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS
    assert call.id

    messages = [
        *QUESTION,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "celsius": 21}'},
    ]
    final = openai_api.chat.completions.create(model=name, messages=messages, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == TOOL_ANSWER
    assert final.choices[0].finish_reason == "stop"


def test_chat_completion_tool_call_streamed(openai_api: openai.OpenAI, name: str) -> None:
    chunks = list(openai_api.chat.completions.create(model=name, messages=QUESTION, tools=[WEATHER_TOOL], stream=True))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
    assert [(call["name"], json.loads(call["arguments"])) for call in calls.values()] == [(TOOL_NAME, TOOL_ARGUMENTS)]
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_responses(openai_api: openai.OpenAI, name: str) -> None:
    response = openai_api.responses.create(model=name, input="Who are you?")
    assert response.output_text == ANSWER
    assert response.status == "completed"


def test_completion(openai_api: openai.OpenAI, name: str) -> None:
    completion = openai_api.completions.create(model=name, prompt="Once upon a time")
    assert completion.choices[0].text == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    limited = openai_api.completions.create(model=name, prompt="Once upon a time", max_tokens=2)
    assert limited.choices[0].text == "".join(ANSWER_PIECES[:2])
    assert limited.choices[0].finish_reason == "length"


@pytest.mark.parametrize("model", ["tiny-embed", "tiny-embed:latest"])
def test_embeddings(openai_api: openai.OpenAI, model: str) -> None:
    answer = openai_api.embeddings.create(model=model, input=["Hello there", "Goodbye, world"])
    first, second = (item.embedding for item in answer.data)
    assert len(first) == len(second) == 64
    assert first != second
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-3)
    assert answer.usage.prompt_tokens > 0
