"""The official `ollama` client against oai2ollama in front of llama.cpp's llama-server."""

from __future__ import annotations

import math
from typing import Any

import ollama
import pytest

from .conftest import ANSWER_TOKENS, Stack, published_meta
from .tiny_model import ANSWER, ANSWER_PIECES, TOOL_ANSWER, TOOL_ARGUMENTS, TOOL_NAME

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# Sampling settings that would change a real model's answer; the tiny model's margins ignore them.
WILD = {"temperature": 1.5, "top_p": 0.5, "top_k": 3, "repeat_penalty": 1.5, "seed": 7}


def test_list_names_every_model_ollama_style(ollama_api: ollama.Client) -> None:
    models = {model.model: model for model in ollama_api.list().models}
    assert {"tiny:latest", "tiny-tagged:latest", "tiny-embed:latest"} <= set(models)
    assert models["tiny:latest"].details is not None
    assert models["tiny:latest"].details.family == "tiny"


def test_show_describes_the_model(ollama_api: ollama.Client, name: str) -> None:
    shown = ollama_api.show(name)
    assert shown.capabilities == ["completion", "tools"]  # tools from the config's [defaults]
    assert shown.details is not None
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == shown.details.family
    assert isinstance(shown.modelinfo[f"{shown.details.family}.context_length"], int)
    assert shown.parameters is not None
    assert "num_ctx" in shown.parameters


def test_show_an_embedding_model(ollama_api: ollama.Client) -> None:
    assert ollama_api.show("tiny-embed").capabilities == ["embedding"]


def test_show_gives_the_parameter_count(ollama_api: ollama.Client, stack: Stack) -> None:
    shown = ollama_api.show("tiny")
    assert shown.modelinfo is not None
    assert shown.modelinfo.get("general.parameter_count") == published_meta(stack.chat)["n_params"]


def test_show_gives_the_context_length_the_upstream_accepts(ollama_api: ollama.Client, stack: Stack) -> None:
    shown = ollama_api.show("tiny")
    assert shown.modelinfo is not None and shown.details is not None
    length = shown.modelinfo[f"{shown.details.family}.context_length"]
    # What a client does with it: fill most of the window (each "x" is a token of the tiny model).
    answer = ollama_api.chat(model="tiny", messages=[{"role": "user", "content": "x" * (length - 200)}])
    assert answer.message.content == ANSWER
    assert length == published_meta(stack.chat)["n_ctx"]


def test_chat(ollama_api: ollama.Client, name: str) -> None:
    answer = ollama_api.chat(model=name, messages=QUESTION, options=WILD)
    assert answer.message.role == "assistant"
    assert answer.message.content == ANSWER
    assert not answer.message.tool_calls
    assert answer.done and answer.done_reason == "stop"
    assert answer.model == name
    assert answer.prompt_eval_count and answer.prompt_eval_count > 5
    assert answer.eval_count == ANSWER_TOKENS
    assert answer.total_duration and answer.total_duration > 0


def test_chat_streamed(ollama_api: ollama.Client, name: str) -> None:
    parts = list(ollama_api.chat(model=name, messages=QUESTION, stream=True))
    assert "".join(part.message.content or "" for part in parts) == ANSWER
    assert len(parts) > 2  # streamed piece by piece, not collected
    assert all(not part.done for part in parts[:-1])
    last = parts[-1]
    assert last.done and last.done_reason == "stop"
    assert last.eval_count == ANSWER_TOKENS
    assert last.prompt_eval_count and last.prompt_eval_count > 5


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_limited_by_num_predict(ollama_api: ollama.Client, name: str, stream: bool) -> None:
    options = {"num_predict": 3}
    if stream:
        parts = list(ollama_api.chat(model=name, messages=QUESTION, options=options, stream=True))
        text, last = "".join(part.message.content or "" for part in parts), parts[-1]
    else:
        last = ollama_api.chat(model=name, messages=QUESTION, options=options)
        text = last.message.content
    assert text == "".join(ANSWER_PIECES[:3])
    assert last.done_reason == "length"
    assert last.eval_count == 3


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_with_a_tool_round_trip(ollama_api: ollama.Client, name: str, stream: bool) -> None:
    messages: list[Any] = list(QUESTION)
    if stream:
        parts = list(ollama_api.chat(model=name, messages=messages, tools=[WEATHER_TOOL], stream=True))
        calls = [call for part in parts for call in part.message.tool_calls or []]
        content, last = "".join(part.message.content or "" for part in parts), parts[-1]
    else:
        last = ollama_api.chat(model=name, messages=messages, tools=[WEATHER_TOOL])
        calls, content = list(last.message.tool_calls or []), last.message.content
    assert [(call.function.name, dict(call.function.arguments)) for call in calls] == [(TOOL_NAME, TOOL_ARGUMENTS)]
    assert not content
    assert last.done and last.done_reason == "stop"  # Ollama ends a tool call with "stop"

    messages.append({"role": "assistant", "content": "", "tool_calls": calls})
    messages.append({"role": "tool", "content": '{"sky": "sunny", "celsius": 21}', "tool_name": TOOL_NAME})
    final = ollama_api.chat(model=name, messages=messages, tools=[WEATHER_TOOL])
    assert final.message.content == TOOL_ANSWER
    assert not final.message.tool_calls
    assert final.done_reason == "stop"


def test_chat_stopped_by_a_stop_sequence(ollama_api: ollama.Client, name: str) -> None:
    answer = ollama_api.chat(model=name, messages=QUESTION, options={"stop": [" tiny"]})
    assert answer.message.content == "Hello! I am a"
    assert answer.done_reason == "stop"


def test_generate(ollama_api: ollama.Client, name: str) -> None:
    answer = ollama_api.generate(model=name, prompt="Who are you?", options=WILD)
    assert answer.response == ANSWER
    assert answer.done and answer.done_reason == "stop"
    assert answer.eval_count == ANSWER_TOKENS


def test_generate_streamed_and_limited(ollama_api: ollama.Client, name: str) -> None:
    parts = list(ollama_api.generate(model=name, prompt="Who are you?", options={"num_predict": 5}, stream=True))
    assert "".join(part.response for part in parts) == "".join(ANSWER_PIECES[:5])
    assert parts[-1].done and parts[-1].done_reason == "length"


def test_embed(ollama_api: ollama.Client) -> None:
    answer = ollama_api.embed(model="tiny-embed", input=["Hello there", "Hello there", "Goodbye, world"])
    first, again, other = answer.embeddings
    assert len(first) == 64  # the tiny model's embedding width
    assert first == again
    assert first != other
    assert math.isclose(math.fsum(x * x for x in first), 1.0, rel_tol=1e-3)  # llama-server normalises
    assert answer.prompt_eval_count and answer.prompt_eval_count > 0


def test_embed_with_the_tagged_name(ollama_api: ollama.Client) -> None:
    assert len(ollama_api.embed(model="tiny-embed:latest", input="Hello").embeddings[0]) == 64


def test_legacy_embeddings(ollama_api: ollama.Client) -> None:
    one = ollama_api.embeddings(model="tiny-embed", prompt="Hello there").embedding
    assert list(one) == ollama_api.embed(model="tiny-embed", input="Hello there").embeddings[0]


def test_ps_lists_a_used_model(ollama_api: ollama.Client) -> None:
    ollama_api.chat(model="tiny", messages=QUESTION)
    assert "tiny:latest" in {model.model for model in ollama_api.ps().models}
