"""The tiny model's weights, checked with numpy before llama.cpp runs them (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from .tiny_model import (
    ANSWER,
    ANSWER_PIECES,
    CHAT_TEMPLATE,
    TOOL_ANSWER,
    TOOL_ARGUMENTS,
    TOOL_NAME,
    TinyModel,
    build,
    tool_call_json,
    tool_call_text,
    write_gguf,
)

# The prompts below are what the model's chat template renders (written out by hand: the test
# extra has no Jinja); llama.cpp renders the real ones.
TOOLS = (
    '<|im_start|>system\n<tools>\n{"name": "get_weather", "description": "", "parameters": {}}\n</tools><|im_end|>\n'
)
USER = "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n"
ASSISTANT = "<|im_start|>assistant\n"
RESULT = '<|im_start|>user\n<tool_response>\n{"temperature": 21}\n</tool_response><|im_end|>\n'
# A smallest winning margin this large survives any temperature a client sends (the winner's
# probability stays above 1 - e^-20 up to temperature 2) and any repeat/frequency penalty.
MARGIN = 40.0


@pytest.fixture(scope="module")
def model() -> TinyModel:
    return build()


def test_a_plain_chat_gets_the_fixed_answer(model: TinyModel) -> None:
    text, finish, margin = model.generate(USER + ASSISTANT)
    assert (text, finish) == (ANSWER, "stop")
    assert margin > MARGIN


def test_a_system_prompt_and_history_change_nothing(model: TinyModel) -> None:
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n" + USER + ASSISTANT + ANSWER + "<|im_end|>\n" + USER + ASSISTANT
    assert model.generate(prompt)[:2] == (ANSWER, "stop")


def test_offered_tools_get_the_fixed_call(model: TinyModel) -> None:
    text, finish, margin = model.generate(TOOLS + USER + ASSISTANT)
    assert (text, finish) == (tool_call_text(), "stop")
    assert tool_call_json() == {"name": TOOL_NAME, "arguments": TOOL_ARGUMENTS}
    assert margin > MARGIN


def test_a_tool_result_gets_the_fixed_answer_with_or_without_tools(model: TinyModel) -> None:
    call = ASSISTANT + tool_call_text() + "<|im_end|>\n"
    for prompt in (TOOLS + USER + call + RESULT + ASSISTANT, USER + call + RESULT + ASSISTANT):
        text, finish, margin = model.generate(prompt)
        assert (text, finish) == (TOOL_ANSWER, "stop")
        assert margin > MARGIN


@pytest.mark.parametrize("limit", [1, 3, len(ANSWER_PIECES) - 1])
def test_a_token_limit_gives_the_first_tokens(model: TinyModel, limit: int) -> None:
    assert model.generate(USER + ASSISTANT, max_tokens=limit)[:2] == ("".join(ANSWER_PIECES[:limit]), "length")


def test_a_raw_prompt_is_continued_with_the_answer(model: TinyModel) -> None:
    assert model.generate("Once upon a time")[:2] == (ANSWER, "stop")


def test_flags_hold_over_a_long_context(model: TinyModel) -> None:
    # The flag heads must find one token among thousands, at any distance (RoPE rotates their
    # scores a little with distance, and the softmax spreads weight over more tokens).
    filler = "<|im_start|>user\n" + "lorem ipsum " * 300 + "<|im_end|>\n"
    assert len(model.tokenize(filler)) > 3500
    assert model.generate(TOOLS + filler + USER + ASSISTANT)[:2] == (tool_call_text(), "stop")
    assert model.generate(filler + USER + ASSISTANT)[:2] == (ANSWER, "stop")


def test_the_gguf_file_holds_the_weights_and_the_template(model: TinyModel, tmp_path: Path) -> None:
    reader = gguf.GGUFReader(write_gguf(tmp_path / "tiny.gguf", model))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.chat_template"].contents() == CHAT_TEMPLATE
    assert reader.fields["tokenizer.ggml.tokens"].contents() == model.tokens
    for tensor in reader.tensors:
        stored = np.asarray(tensor.data).reshape(model.weights[tensor.name].shape)
        np.testing.assert_array_equal(stored, model.weights[tensor.name], err_msg=tensor.name)
    assert {tensor.name for tensor in reader.tensors} == set(model.weights)


def test_the_template_renders_calls_the_way_the_model_writes_them() -> None:
    # llama.cpp learns the call format from the template and constrains the model's call with it:
    # the model's call must have the template's layout, or the grammar would reject its tokens.
    assert '<tool_call>\n{"name": {{ call.function.name | tojson }}, "arguments": ' in CHAT_TEMPLATE
    assert tool_call_text().startswith('<tool_call>\n{"name": ') and tool_call_text().endswith("}\n</tool_call>")
    assert json.loads(tool_call_text()[len("<tool_call>") : -len("</tool_call>")])["name"] == TOOL_NAME
