"""Reasoning controls and the seed gateway's other request controls, as JSON in, JSON out; and the
reasoning taken out of relayed answers, as bytes in, bytes out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oai2ollama.errors import BadRequest
from oai2ollama.translate.openai_request import chat_controls, with_ollama_options
from oai2ollama.translate.reasoning import (
    exclude_requested,
    reasoning_controls,
    without_reasoning_document,
    without_reasoning_events,
)

from .fakes import chunk, completion, sse, text_stream

REASONS = frozenset({"completion", "thinking"})
PLAIN = frozenset({"completion"})
BASE = {"model": "m", "messages": []}


def settle(extra: dict[str, Any], field: str | None = "reasoning_effort", capabilities=REASONS, **kw: Any):
    return reasoning_controls({**BASE, **extra}, field=field, capabilities=capabilities, **kw)


# ---------------------------------------------------------------- which effort, in which field


@pytest.mark.parametrize(
    ("extra", "capabilities", "sent", "exclude"),
    [
        pytest.param({}, REASONS, {}, False, id="nothing"),
        pytest.param({"think": True}, PLAIN, {"reasoning_effort": "medium"}, False, id="think-true"),
        pytest.param({"think": "true"}, PLAIN, {"reasoning_effort": "medium"}, False, id="think-true-string"),
        pytest.param({"think": "low"}, PLAIN, {"reasoning_effort": "low"}, False, id="think-low"),
        pytest.param({"think": "max"}, PLAIN, {"reasoning_effort": "high"}, False, id="think-max"),
        pytest.param({"think": False}, REASONS, {"reasoning_effort": "none"}, False, id="think-false-thinking-model"),
        pytest.param({"think": False}, PLAIN, {}, False, id="think-false-other-model"),
        pytest.param({"reasoning": {"effort": "high"}}, PLAIN, {"reasoning_effort": "high"}, False, id="or-effort"),
        pytest.param({"reasoning": {"effort": "xhigh"}}, PLAIN, {"reasoning_effort": "high"}, False, id="or-xhigh"),
        pytest.param({"reasoning": {"effort": "minimal"}}, PLAIN, {"reasoning_effort": "minimal"}, False, id="or-min"),
        pytest.param({"reasoning": {"effort": "none"}}, REASONS, {"reasoning_effort": "none"}, False, id="or-none"),
        pytest.param({"reasoning": {"effort": "none"}}, PLAIN, {}, False, id="or-none-other-model"),
        pytest.param({"reasoning": {"max_tokens": 2000}}, PLAIN, {"reasoning_effort": "low"}, False, id="or-budget"),
        pytest.param({"reasoning": {"max_tokens": 20000}}, PLAIN, {"reasoning_effort": "high"}, False, id="or-big"),
        pytest.param({"reasoning": {"max_tokens": 0}}, REASONS, {"reasoning_effort": "none"}, False, id="or-zero"),
        pytest.param({"reasoning": {"enabled": True}}, PLAIN, {"reasoning_effort": "medium"}, False, id="or-enabled"),
        pytest.param({"reasoning": {"enabled": False}}, REASONS, {"reasoning_effort": "none"}, False, id="or-off"),
        pytest.param({"reasoning": {"exclude": True}}, REASONS, {}, True, id="or-exclude-only"),
        pytest.param({"reasoning": {}}, REASONS, {}, False, id="or-empty"),
        pytest.param(
            {"reasoning": {"effort": "low", "exclude": True}}, PLAIN, {"reasoning_effort": "low"}, True, id="or-both"
        ),
        pytest.param({"exclude_reasoning": True}, REASONS, {}, True, id="exclude"),
        pytest.param({"exclude_reasoning": False}, REASONS, {}, False, id="exclude-false"),
        pytest.param(
            {"exclude_reasoning": True, "think": "high"}, PLAIN, {"reasoning_effort": "high"}, True, id="think-hidden"
        ),
        pytest.param(
            {"reasoning_effort": "low", "reasoning": {"effort": "high"}, "think": "medium"},
            PLAIN,
            {"reasoning_effort": "low"},
            False,
            id="reasoning-effort-wins",
        ),
        pytest.param(
            {"reasoning": {"effort": "high"}, "think": "low"}, PLAIN, {"reasoning_effort": "high"}, False, id="or-wins"
        ),
        pytest.param(
            {"exclude_reasoning": False, "reasoning": {"exclude": True}}, PLAIN, {}, False, id="flag-beats-object"
        ),
    ],
)
def test_reasoning_controls(
    extra: dict[str, Any], capabilities: frozenset[str], sent: dict[str, Any], exclude: bool
) -> None:
    original = json.dumps(extra)
    body, excluded = settle(extra, capabilities=capabilities)
    assert body == {**BASE, **sent}, "think, reasoning and exclude_reasoning never reach an effort-only upstream"
    assert excluded is exclude
    assert json.dumps(extra) == original, "the request is not changed in place"


@pytest.mark.parametrize(
    ("field", "extra", "sent"),
    [
        pytest.param("reasoning", {"think": "high"}, {"reasoning": {"effort": "high"}}, id="openrouter-from-think"),
        pytest.param(
            "reasoning",
            {"reasoning": {"max_tokens": 2000, "exclude": True}},
            {"reasoning": {"max_tokens": 2000, "exclude": True, "effort": "low"}},
            id="openrouter-keeps-its-object",
        ),
        pytest.param("reasoning", {"reasoning": {"exclude": True}}, {"reasoning": {"exclude": True}}, id="or-as-is"),
        pytest.param("reasoning", {"reasoning_effort": "low"}, {"reasoning": {"effort": "low"}}, id="or-from-openai"),
        pytest.param(None, {"think": "high", "reasoning_effort": "low", "reasoning": {"effort": "low"}}, {}, id="none"),
        pytest.param("thinking_effort", {"think": True}, {"thinking_effort": "medium"}, id="another-name"),
    ],
)
def test_the_effort_goes_to_the_field_given(field: str | None, extra: dict[str, Any], sent: dict[str, Any]) -> None:
    body, _ = settle(extra, field=field)
    assert body == {**BASE, **sent}


def test_exclude_default_is_the_models_option_unless_the_request_says() -> None:
    assert settle({}, exclude_default=True)[1] is True
    assert settle({"exclude_reasoning": False}, exclude_default=True)[1] is False
    assert settle({"reasoning": {"exclude": False}}, exclude_default=True)[1] is False


def test_a_request_without_controls_is_passed_as_it_is() -> None:
    req = {**BASE, "temperature": 0.1}
    assert settle(req)[0] is not req  # `settle` copies; the function itself must not
    assert reasoning_controls(req, field="reasoning_effort", capabilities=PLAIN)[0] is req


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"think": "extreme"}, 'invalid think value: "extreme"'),
        ({"think": 3}, "invalid think value: 3"),
        ({"reasoning": "high"}, "reasoning must be an object"),
        ({"reasoning": {"effort": "ultra"}}, "reasoning.effort must be one of none, minimal, low, medium, high, xhigh"),
        ({"reasoning": {"max_tokens": "lots"}}, "reasoning.max_tokens must be a non-negative integer"),
        ({"reasoning": {"enabled": "yes"}}, "reasoning.enabled must be a boolean"),
        ({"reasoning": {"exclude": 1}}, "reasoning.exclude must be a boolean"),
        ({"exclude_reasoning": "yes"}, "exclude_reasoning must be a boolean"),
    ],
)
def test_invalid_controls_are_400_naming_the_field(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as raised:
        settle(extra)
    assert message in raised.value.message


@pytest.mark.parametrize(("value", "hidden"), [(None, False), (False, False), (True, True)])
def test_exclude_requested(value: Any, hidden: bool) -> None:
    assert exclude_requested(value) is hidden


def test_exclude_requested_wants_a_boolean() -> None:
    with pytest.raises(BadRequest, match="exclude_reasoning must be a boolean"):
        exclude_requested("true")


# ---------------------------------------------------------------- Ollama options on /v1


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param(
            {"options": {"temperature": 0.3, "num_predict": 100, "top_k": 5, "stop": "END", "num_ctx": 8192}},
            {"temperature": 0.3, "max_tokens": 100, "top_k": 5, "stop": ["END"]},
            id="mapped-as-native",
        ),
        pytest.param(
            {"temperature": 1.0, "max_tokens": 9, "options": {"temperature": 0.3, "num_predict": 100, "seed": 4}},
            {"temperature": 1.0, "max_tokens": 9, "seed": 4},
            id="top-level-wins",
        ),
        pytest.param(
            {"max_completion_tokens": 9, "options": {"num_predict": 100}},
            {"max_completion_tokens": 9},
            id="either-token-limit-wins",
        ),
        pytest.param(
            {"options": {"repeat_penalty": 1.1}},
            {"repeat_penalty": 1.1, "repetition_penalty": 1.1},
            id="both-penalty-names",
        ),
        pytest.param({"options": {"num_predict": -1, "seed": -1}}, {}, id="ollama-unset-values"),
        pytest.param({"options": {}}, {}, id="empty"),
        pytest.param({"options": None}, {}, id="null"),
        pytest.param({}, {}, id="absent"),
    ],
)
def test_ollama_options(req: dict[str, Any], expected: dict[str, Any]) -> None:
    assert with_ollama_options({**BASE, **req}) == {**BASE, **expected}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("hot", "options must be an object"),
        ({"temperature": "hot"}, "options.temperature must be a number"),
        ({"num_predict": 1.5}, "options.num_predict must be an integer"),
        ({"stop": [1]}, "options.stop must be a list of strings"),
    ],
)
def test_invalid_options_are_400_naming_the_option(options: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        with_ollama_options({**BASE, "options": options})


@pytest.mark.parametrize(
    ("req", "overrides", "sent", "exclude"),
    [
        pytest.param(
            {"options": {"temperature": 0.9}},
            {"temperature": 0.2, "num_predict": 64},
            {"temperature": 0.9, "max_tokens": 64},
            False,
            id="request-options-beat-the-models",
        ),
        pytest.param({}, {"think": "high"}, {"reasoning_effort": "high"}, False, id="models-think"),
        pytest.param({"think": "low"}, {"think": "high"}, {"reasoning_effort": "low"}, False, id="requests-think-wins"),
        pytest.param({"think": False}, {"think": "high"}, {}, False, id="request-think-false-wins-on-a-plain-model"),
        pytest.param(
            {"reasoning": {"effort": "minimal"}}, {"think": "high"}, {"reasoning_effort": "minimal"}, False, id="or"
        ),
        pytest.param({}, {"exclude_reasoning": True}, {}, True, id="models-exclude"),
        pytest.param({"exclude_reasoning": False}, {"exclude_reasoning": True}, {}, False, id="request-shows"),
    ],
)
def test_chat_controls_precedence(
    req: dict[str, Any], overrides: dict[str, Any], sent: dict[str, Any], exclude: bool
) -> None:
    body, excluded = chat_controls({**BASE, **req}, overrides, capabilities=PLAIN, reasoning_field="reasoning_effort")
    assert body == {**BASE, **sent}
    assert excluded is exclude


# ---------------------------------------------------------------- reasoning out of relayed answers


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def relayed(*parts: bytes) -> list[bytes]:
    return [out async for out in without_reasoning_events(pieces(*parts))]


def events(body: bytes) -> list[Any]:
    return [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: {")]


@pytest.mark.anyio
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "reasoning_details"])
async def test_reasoning_leaves_the_stream(field: str) -> None:
    value: Any = [{"type": "reasoning.text", "text": "hmm"}] if field == "reasoning_details" else "hmm"
    upstream = sse(*text_stream("Hi", reasoning=["hm"], field=field), chunk({field: value, "content": "!"}))
    body = b"".join(await relayed(upstream))
    assert b"hm" not in body
    expected = events(upstream)
    for event in expected:
        for choice in event["choices"]:
            choice["delta"].pop(field, None)
    assert events(body) == expected, "everything else is as the upstream sent it"
    assert body.endswith(b"data: [DONE]\n\n")


@pytest.mark.anyio
async def test_lines_without_reasoning_pass_byte_for_byte() -> None:
    upstream = b': keep-alive\r\n\r\ndata: {"choices":[{"delta":{"content":"x"}}]}\n\n' + sse(*text_stream("y"))
    assert b"".join(await relayed(upstream)) == upstream.replace(b"\r\n", b"\n")


@pytest.mark.anyio
async def test_reasoning_split_across_reads_is_still_found() -> None:
    upstream = sse(chunk({"reasoning_content": "secret thoughts"}), chunk({"content": "answer"}))
    cut = upstream.index(b"secret") + 3
    writes = await relayed(upstream[:cut], upstream[cut:])
    assert len(writes) == 1, "a read that ends mid-line writes nothing yet"
    assert b"secret" not in writes[0] and b"answer" in writes[0]


@pytest.mark.anyio
async def test_a_body_without_a_final_line_break_keeps_its_last_line() -> None:
    upstream = b'data: {"choices":[{"delta":{"reasoning":"r","content":"c"}}]}'
    assert events(b"".join(await relayed(upstream))) == [{"choices": [{"delta": {"content": "c"}}]}]


def test_reasoning_leaves_a_document() -> None:
    answer = completion("4", reasoning_content="2+2", reasoning="2+2")
    stripped = json.loads(without_reasoning_document(json.dumps(answer).encode()))
    assert stripped["choices"][0]["message"] == {"role": "assistant", "content": "4"}
    assert stripped["usage"] == answer["usage"]


@pytest.mark.parametrize("body", [b"<html>reasoning</html>", json.dumps(completion("no thoughts")).encode()])
def test_documents_without_reasoning_are_unchanged(body: bytes) -> None:
    assert without_reasoning_document(body) is body
