"""Reading upstream chunks into dialect-neutral pieces, and assembling tool calls from fragments."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oai2ollama.translate.answer import (
    Piece,
    ToolCall,
    ToolCallAssembler,
    ToolCallFragment,
    ToolCallNumbering,
    piece_from_chunk,
    pieces,
    stable_call_id,
    usage_counts,
)

from .fakes import chunk, completion, tool_stream, usage_chunk

pytestmark = pytest.mark.anyio

LOGPROB = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}


@pytest.mark.parametrize(
    ("upstream", "piece"),
    [
        pytest.param(chunk({"role": "assistant", "content": ""}), Piece(), id="role-only-first-chunk"),
        pytest.param(chunk({"content": "Hel"}), Piece(content="Hel"), id="content"),
        pytest.param(chunk({"content": None, "refusal": None}), Piece(), id="null-content"),
        pytest.param(chunk({"reasoning_content": "hmm"}), Piece(thinking="hmm"), id="reasoning-content"),
        pytest.param(chunk({"reasoning": "hmm"}), Piece(thinking="hmm"), id="reasoning"),
        pytest.param(
            chunk({"reasoning_content": "a", "reasoning": "a"}), Piece(thinking="a"), id="both-names-read-once"
        ),
        pytest.param(chunk({"reasoning_content": None, "reasoning": "b"}), Piece(thinking="b"), id="null-first-name"),
        pytest.param(chunk({}, "stop"), Piece(finish_reason="stop"), id="finish-stop"),
        pytest.param(chunk({}, "length"), Piece(finish_reason="length"), id="finish-length"),
        pytest.param(
            usage_chunk(11, 7),
            Piece(usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}),
            id="usage-only-chunk",
        ),
        pytest.param(
            chunk({"content": "x"}, "stop", usage={"prompt_tokens": 1, "completion_tokens": 1}),
            Piece(content="x", finish_reason="stop", usage={"prompt_tokens": 1, "completion_tokens": 1}),
            id="usage-on-the-last-choice-chunk",
        ),
        pytest.param(
            {"choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": [LOGPROB]}}]},
            Piece(content="Hi", logprobs=[LOGPROB]),
            id="logprobs",
        ),
        pytest.param(
            {"choices": [{"index": 0, "text": "def", "finish_reason": None}]},
            Piece(content="def"),
            id="legacy-completions-text",
        ),
        pytest.param(
            {
                "choices": [
                    {
                        "text": "ab",
                        "logprobs": {
                            "tokens": ["a", "b"],
                            "token_logprobs": [-0.5, -1.0],
                            "top_logprobs": [{"a": -0.5, "c": -2.0}, None],
                        },
                    }
                ]
            },
            Piece(
                content="ab",
                logprobs=[
                    {
                        "token": "a",
                        "logprob": -0.5,
                        "top_logprobs": [{"token": "a", "logprob": -0.5}, {"token": "c", "logprob": -2.0}],
                    },
                    {"token": "b", "logprob": -1.0},
                ],
            ),
            id="legacy-completions-logprobs",
        ),
        pytest.param(
            completion("Hello!", reasoning="thought"),
            Piece(
                content="Hello!",
                thinking="thought",
                finish_reason="stop",
                usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            ),
            id="non-streamed-completion",
        ),
        pytest.param({"choices": "nope"}, Piece(), id="choices-not-a-list"),
        pytest.param({"choices": [None]}, Piece(), id="choice-not-an-object"),
        pytest.param({"object": "chat.completion.chunk"}, Piece(), id="no-choices"),
    ],
)
def test_piece_from_chunk(upstream: dict[str, Any], piece: Piece) -> None:
    assert piece_from_chunk(upstream) == piece


def _choice(index: int | None, content: str, finish: str | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"delta": {"content": content}, "finish_reason": finish}
    if index is not None:
        choice["index"] = index
    return choice


def _magistral(*parts: dict[str, Any]) -> dict[str, Any]:
    """A chunk as Mistral's Magistral streams it: `delta.content` is a list of parts."""
    return {
        "id": "c3c77283055240cbbaf6f01d384cfccb",
        "object": "chat.completion.chunk",
        "created": 1762355135,
        "model": "magistral-medium-2509",
        "choices": [{"index": 0, "delta": {"content": list(parts)}, "finish_reason": None}],
    }


def _thinking_part(*texts: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text} for text in texts]}


@pytest.mark.parametrize(
    ("upstream", "piece"),
    [
        pytest.param(
            _magistral(_thinking_part("'s a greeting")), Piece(thinking="'s a greeting"), id="magistral-thinking"
        ),
        pytest.param(
            _magistral(_thinking_part("so I ", "greet back")), Piece(thinking="so I greet back"), id="magistral-nested"
        ),
        pytest.param(_magistral({"type": "text", "text": "Hello!"}), Piece(content="Hello!"), id="magistral-text"),
        pytest.param(
            _magistral(_thinking_part("done."), {"type": "text", "text": "Hi"}),
            Piece(content="Hi", thinking="done."),
            id="magistral-thinking-then-text-in-one-chunk",
        ),
        pytest.param(
            chunk({"content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}),
            Piece(content="Hello"),
            id="text-parts",
        ),
        pytest.param(
            chunk({"content": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]}),
            Piece(thinking="hmm"),
            id="thinking-part-as-a-string",
        ),
        pytest.param(
            chunk({"content": [{"type": "reference", "reference_ids": [1]}, {"type": "text", "text": "x"}]}),
            Piece(content="x"),
            id="parts-without-answer-text-skipped",
        ),
        pytest.param(
            chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "a"}]}], "reasoning": "b"}),
            Piece(thinking="ab"),
            id="thinking-parts-and-reasoning-field",
        ),
        pytest.param(
            completion(
                [_thinking_part("Let me think."), {"type": "text", "text": "Hello!"}]  # type: ignore[arg-type]
            ),
            Piece(
                content="Hello!",
                thinking="Let me think.",
                finish_reason="stop",
                usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            ),
            id="magistral-non-streamed-message",
        ),
        pytest.param({"choices": [_choice(1, "B"), _choice(0, "A")]}, Piece(content="A"), id="index-0-not-first"),
        pytest.param({"choices": [_choice(1, "B", "stop")]}, Piece(), id="only-another-index"),
        pytest.param({"choices": [_choice(None, "A")]}, Piece(content="A"), id="choice-without-index"),
        pytest.param(
            {"choices": [_choice(2, "C"), _choice(0, "", "length"), _choice(1, "B", "stop")]},
            Piece(finish_reason="length"),
            id="finish-of-index-0-only",
        ),
    ],
)
def test_piece_from_chunk_as_upstreams_send_it(upstream: dict[str, Any], piece: Piece) -> None:
    assert piece_from_chunk(upstream) == piece


def test_tool_call_fragments() -> None:
    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert piece_from_chunk(chunk({"tool_calls": [head]})).tool_calls == [
        ToolCallFragment(0, "call_1", "get_weather", "")
    ]
    as_object = {"index": 0, "id": "c", "function": {"name": "f", "arguments": {"city": "Paris"}}}
    assert piece_from_chunk(chunk({"tool_calls": [as_object]})).tool_calls == [
        ToolCallFragment(0, "c", "f", '{"city":"Paris"}')
    ]


async def assemble(chunks: list[dict[str, Any]]) -> list[ToolCall]:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for c in chunks:
            yield c

    assembler = ToolCallAssembler()
    async for piece in pieces(source()):
        assembler.add(piece.tool_calls)
    return assembler.complete()


def calls_chunk(*calls: dict[str, Any]) -> dict[str, Any]:
    return chunk({"tool_calls": list(calls)})


def fn(name: str | None = None, arguments: str | None = None) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    return function


@pytest.mark.parametrize(
    ("chunks", "calls"),
    [
        pytest.param(
            tool_stream(("call_a", "get_weather", {"city": "Paris", "unit": "celsius"}), pieces=7),
            [ToolCall(0, "call_a", "get_weather", '{"city": "Paris", "unit": "celsius"}')],
            id="arguments-split-across-many-chunks",
        ),
        pytest.param(
            tool_stream(("call_a", "a", {"x": 1}), ("call_b", "b", {"y": 2})),
            [ToolCall(0, "call_a", "a", '{"x": 1}'), ToolCall(1, "call_b", "b", '{"y": 2}')],
            id="two-calls-one-after-the-other",
        ),
        pytest.param(
            [
                calls_chunk(
                    {"index": 0, "id": "c0", "function": fn("a", '{"x"')},
                    {"index": 1, "id": "c1", "function": fn("b", '{"y"')},
                ),
                calls_chunk(
                    {"index": 1, "function": fn(arguments=": 2}")}, {"index": 0, "function": fn(arguments=": 1}")}
                ),
            ],
            [ToolCall(0, "c0", "a", '{"x": 1}'), ToolCall(1, "c1", "b", '{"y": 2}')],
            id="several-calls-interleaved",
        ),
        pytest.param(
            [
                calls_chunk({"id": "c0", "function": fn("a", '{"x":')}),
                calls_chunk({"function": fn(arguments=" 1}")}),
                calls_chunk({"id": "c1", "function": fn("b", "")}),
                calls_chunk({"function": fn(arguments="{}")}),
            ],
            [ToolCall(0, "c0", "a", '{"x": 1}'), ToolCall(1, "c1", "b", "{}")],
            id="server-omitting-index",
        ),
        pytest.param(
            [
                calls_chunk({"function": fn("a", '{"x": 1}')}, {"function": fn("b", "{}")}),
            ],
            [ToolCall(0, "", "a", '{"x": 1}'), ToolCall(1, "", "b", "{}")],
            id="no-index-no-id-several-in-one-delta",
        ),
        pytest.param(
            [
                calls_chunk({"index": 0, "id": "call_x", "function": fn("write", '{"path": "a.py"}')}),
                calls_chunk({"index": 0, "id": "call_y", "function": fn("write", '{"path": "b.py"}')}),
            ],
            [ToolCall(0, "call_x", "write", '{"path": "a.py"}'), ToolCall(1, "call_y", "write", '{"path": "b.py"}')],
            id="index-0-reused-for-every-call-ollama-v1",
        ),
        pytest.param(
            [
                calls_chunk({"index": 0, "id": "call_x", "function": fn("a", '{"n":')}),
                calls_chunk({"index": 0, "function": fn(arguments=" 1}")}),
                calls_chunk({"index": 0, "id": "call_y", "function": fn("b", '{"n":')}),
                calls_chunk({"index": 0, "function": fn(arguments=" 2}")}),
            ],
            [ToolCall(0, "call_x", "a", '{"n": 1}'), ToolCall(1, "call_y", "b", '{"n": 2}')],
            id="index-0-reused-with-fragments-sglang",
        ),
        pytest.param(
            [
                calls_chunk({"index": 0, "id": "c", "function": fn("a", '{"n":')}),
                calls_chunk({"index": 0, "id": "c", "function": fn(arguments=" 1}")}),
            ],
            [ToolCall(0, "c", "a", '{"n": 1}')],
            id="id-repeated-on-every-fragment",
        ),
        pytest.param(
            [
                calls_chunk({"index": 0, "function": fn("a", '{"n":')}),
                calls_chunk({"index": 0, "id": "call_late", "function": fn(arguments=" 1}")}),
                calls_chunk({"index": 1, "function": fn("b", "{}")}),
            ],
            [ToolCall(0, "call_late", "a", '{"n": 1}'), ToolCall(1, "", "b", "{}")],
            id="id-after-the-first-fragment",
        ),
        pytest.param(
            [
                calls_chunk({"index": 3, "id": "c3", "function": fn("late", "{}")}),
                calls_chunk({"index": 1, "id": "c1", "function": fn("early", "{}")}),
            ],
            [ToolCall(0, "c1", "early", "{}"), ToolCall(1, "c3", "late", "{}")],
            id="indices-renumbered-in-order",
        ),
    ],
)
async def test_tool_calls_are_assembled(chunks: list[dict[str, Any]], calls: list[ToolCall]) -> None:
    assembled = await assemble(chunks)
    for call in assembled:
        if not any(c.id for c in calls if c.index == call.index):
            assert re.fullmatch(r"call_[0-9a-f]{8}", call.id)
            call.id = ""
    assert assembled == calls


async def test_calls_without_ids_get_distinct_ids() -> None:
    assembled = await assemble(
        [calls_chunk({"index": 0, "function": fn("a", "{}")}, {"index": 1, "function": fn("a", "{}")})]
    )
    assert len({call.id for call in assembled}) == 2


def test_numbering_is_per_answer() -> None:
    numbering = ToolCallNumbering()
    assert numbering.number(0, "a", 0) == 0
    assert numbering.number(0, "b", 0) == 1
    assert numbering.number(None, "", 0) == 1  # continues the last call
    assert numbering.number(0, "", 0) == 1  # the latest call given index 0
    assert ToolCallNumbering().number(0, "b", 0) == 0


@pytest.mark.parametrize(
    ("arguments", "value"),
    [
        ('{"city": "Paris"}', {"city": "Paris"}),
        ("", {}),
        ("  ", {}),
        ('{"city": "Par', {"_raw": '{"city": "Par'}),  # cut off by max_tokens: kept, not lost
        ("[1, 2]", {"_value": [1, 2]}),
    ],
)
def test_arguments_object(arguments: str, value: dict[str, Any]) -> None:
    assert ToolCall(0, "c", "f", arguments).arguments_object() == value


async def test_pieces_keep_one_numbering_per_stream() -> None:
    stream = [
        calls_chunk({"index": 0, "id": "x", "function": fn("a", "{}")}),
        calls_chunk({"index": 0, "id": "y", "function": fn("b", "{}")}),
    ]
    assert [c.name for c in await assemble(stream)] == ["a", "b"]


@pytest.mark.parametrize(
    ("usage", "counts"),
    [
        (None, (None, None)),
        ({}, (None, None)),
        ({"prompt_tokens": 11, "completion_tokens": 7}, (11, 7)),
        ({"input_tokens": 3, "output_tokens": 4}, (3, 4)),
        ({"prompt_tokens": 5}, (5, None)),
        ({"prompt_tokens": "5", "completion_tokens": None}, (None, None)),
    ],
)
def test_usage_counts(usage: dict[str, Any] | None, counts: tuple[int | None, int | None]) -> None:
    assert usage_counts(usage) == counts


def test_stable_call_id() -> None:
    assert stable_call_id(1, 0, "f") == stable_call_id(1, 0, "f")
    assert stable_call_id(1, 0, "f") != stable_call_id(2, 0, "f")
    assert re.fullmatch(r"call_[0-9a-f]{8}", stable_call_id("x"))


def test_pieces_of_a_recorded_tool_stream_round_trip_as_json() -> None:
    # The assembled arguments are exactly what the upstream split up.
    arguments = {"query": "naïve \u2028 café", "n": [1, 2, 3]}
    text = json.dumps(arguments)
    fragments = [piece_from_chunk(c).tool_calls for c in tool_stream(("c", "search", arguments), pieces=9)]
    assembler = ToolCallAssembler()
    for part in fragments:
        assembler.add(part)
    assert assembler.complete()[0].arguments == text
    assert assembler.complete()[0].arguments_object() == arguments
