"""Pieces → Anthropic stream events, and the non-streamed message folded from them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from oai2ollama.errors import UpstreamError
from oai2ollama.translate.answer import Piece, ToolCallFragment
from oai2ollama.translate.anthropic_answer import anthropic_usage, collect_message, message_events, stop_reason

pytestmark = pytest.mark.anyio

USAGE = {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}
ROLE = Piece()  # the role-only first chunk every OpenAI stream starts with


def frag(index: int, arguments: str = "", call_id: str = "", name: str = "") -> ToolCallFragment:
    return ToolCallFragment(index, call_id, name, arguments)


async def _feed(pieces: list[Piece]) -> AsyncIterator[Piece]:
    for piece in pieces:
        yield piece


async def events_of(pieces: list[Piece], input_tokens: int = 99) -> list[dict[str, Any]]:
    stream = message_events(_feed(pieces), model="m", input_tokens=input_tokens, msg_id="msg_1")
    return [event async for event in stream]


def start(input_tokens: int = 99, **usage: int) -> dict[str, Any]:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 0, **usage},
    }
    return {"type": "message_start", "message": message}


def block(index: int, content_block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index: int, kind: str, value: str) -> dict[str, Any]:
    key = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}[kind]
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: value}}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def end(reason: str, **usage: int) -> list[dict[str, Any]]:
    return [
        {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage},
        {"type": "message_stop"},
    ]


TEXT = {"type": "text", "text": ""}
THINKING = {"type": "thinking", "thinking": "", "signature": ""}


def tool(call_id: str, name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {}}


CASES = [
    pytest.param(
        [ROLE, Piece(content="Hel"), Piece(content="lo"), Piece(finish_reason="stop"), Piece(usage=USAGE)],
        [
            start(),
            block(0, TEXT),
            delta(0, "text_delta", "Hel"),
            delta(0, "text_delta", "lo"),
            stop(0),
            *end("end_turn", input_tokens=30, output_tokens=5),
        ],
        id="text; real usage in message_delta",
    ),
    pytest.param(
        [ROLE, Piece(thinking="Hm"), Piece(thinking="m."), Piece(content="Yes"), Piece(finish_reason="stop")],
        [
            start(),
            block(0, THINKING),
            delta(0, "thinking_delta", "Hm"),
            delta(0, "thinking_delta", "m."),
            stop(0),
            block(1, TEXT),
            delta(1, "text_delta", "Yes"),
            stop(1),
            *end("end_turn", output_tokens=2),  # no usage: 6 characters / 4, rounded up
        ],
        id="thinking then text; output estimated without usage",
    ),
    pytest.param(
        [
            ROLE,
            Piece(content="Checking."),
            Piece(tool_calls=[frag(0, call_id="call_a", name="weather")]),
            Piece(tool_calls=[frag(0, '{"ci')]),
            Piece(tool_calls=[frag(0, 'ty": "Par')]),
            Piece(tool_calls=[frag(0, 'is"}')]),
            Piece(tool_calls=[frag(1, '{"tz":', call_id="call_b", name="time")]),
            Piece(tool_calls=[frag(1, ' "CET"}')]),
            Piece(finish_reason="tool_calls"),
            Piece(usage=USAGE),
        ],
        [
            start(),
            block(0, TEXT),
            delta(0, "text_delta", "Checking."),
            stop(0),
            block(1, tool("call_a", "weather")),
            delta(1, "input_json_delta", '{"ci'),
            delta(1, "input_json_delta", 'ty": "Par'),
            delta(1, "input_json_delta", 'is"}'),
            stop(1),
            block(2, tool("call_b", "time")),
            delta(2, "input_json_delta", '{"tz":'),
            delta(2, "input_json_delta", ' "CET"}'),
            stop(2),
            *end("tool_use", input_tokens=30, output_tokens=5),
        ],
        id="tool arguments streamed fragment by fragment, as the upstream sent them",
    ),
    pytest.param(
        [
            Piece(
                tool_calls=[frag(0, '{"a":1}', "c1", "f"), frag(1, "{}", "c2", "g")],
                finish_reason="stop",  # some servers report "stop" after tool calls
                usage=USAGE,
            )
        ],
        [
            start(30),
            block(0, tool("c1", "f")),
            delta(0, "input_json_delta", '{"a":1}'),
            stop(0),
            block(1, tool("c2", "g")),
            delta(1, "input_json_delta", "{}"),
            stop(1),
            *end("tool_use", input_tokens=30, output_tokens=5),
        ],
        id="whole calls in one chunk (a non-streamed upstream answer); usage known at message_start",
    ),
    pytest.param(
        [ROLE, Piece(tool_calls=[frag(0, '{"path": "/et', "c1", "read")]), Piece(finish_reason="length")],
        [
            start(),
            block(0, tool("c1", "read")),
            delta(0, "input_json_delta", '{"path": "/et'),
            stop(0),
            *end("max_tokens", output_tokens=4),
        ],
        id="length wins over a cut-off tool call",
    ),
    pytest.param(
        [ROLE, Piece(content="I can't"), Piece(finish_reason="content_filter")],
        [start(), block(0, TEXT), delta(0, "text_delta", "I can't"), stop(0), *end("refusal", output_tokens=2)],
        id="content_filter to refusal",
    ),
    pytest.param(
        [ROLE, Piece(finish_reason="stop"), Piece(usage={**USAGE, "prompt_tokens_details": {"cached_tokens": 20}})],
        [start(), *end("end_turn", input_tokens=10, cache_read_input_tokens=20, output_tokens=5)],
        id="empty answer; cached prompt tokens reported as cache reads",
    ),
    pytest.param(
        [],
        [start(), *end("end_turn", output_tokens=0)],
        id="nothing at all still makes a well-formed message",
    ),
    pytest.param(
        [ROLE, Piece(content="a"), Piece(thinking="b"), Piece(content="c")],
        [
            start(),
            block(0, TEXT),
            delta(0, "text_delta", "a"),
            stop(0),
            block(1, THINKING),
            delta(1, "thinking_delta", "b"),
            stop(1),
            block(2, TEXT),
            delta(2, "text_delta", "c"),
            stop(2),
            *end("end_turn", output_tokens=1),
        ],
        id="interleaved thinking opens a new block each time",
    ),
]


@pytest.mark.parametrize(("pieces", "expected"), CASES)
async def test_message_events(pieces: list[Piece], expected: list[dict[str, Any]]) -> None:
    assert await events_of(pieces) == expected


async def test_a_call_without_id_gets_a_fresh_one() -> None:
    events = await events_of([Piece(tool_calls=[frag(0, "{}", name="f")]), Piece(tool_calls=[frag(1, "{}", name="f")])])
    ids = [e["content_block"]["id"] for e in events if e["type"] == "content_block_start"]
    assert all(i.startswith("toolu_") for i in ids) and len(set(ids)) == 2


async def test_interleaved_tool_calls_fail_loudly() -> None:
    pieces = [Piece(tool_calls=[frag(0, "{", "a", "f")]), Piece(tool_calls=[frag(1, "{", "b", "g")])]
    with pytest.raises(UpstreamError, match="interleaved"):
        await events_of([*pieces, Piece(tool_calls=[frag(0, "}")])])


@pytest.mark.parametrize(
    ("finish", "used_tools", "reason"),
    [
        ("stop", False, "end_turn"),
        (None, False, "end_turn"),
        ("tool_calls", True, "tool_use"),
        ("tool_calls", False, "end_turn"),
        ("stop", True, "tool_use"),
        ("length", True, "max_tokens"),
        ("length", False, "max_tokens"),
        ("content_filter", False, "refusal"),
    ],
)
def test_stop_reason(finish: str | None, used_tools: bool, reason: str) -> None:
    assert stop_reason(finish, used_tools) == reason


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, {}),
        ({"prompt_tokens": 9, "completion_tokens": 2}, {"input_tokens": 9, "output_tokens": 2}),
        (
            {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 0}},
            {"input_tokens": 9, "output_tokens": 2},
        ),
        (
            {"prompt_tokens": 90, "completion_tokens": 2, "prompt_cache_hit_tokens": 64},  # DeepSeek's spelling
            {"input_tokens": 26, "cache_read_input_tokens": 64, "output_tokens": 2},
        ),
    ],
)
def test_anthropic_usage(usage: dict[str, Any] | None, expected: dict[str, int]) -> None:
    assert anthropic_usage(usage) == expected


async def test_collect_message_folds_the_events() -> None:
    pieces = [
        ROLE,
        Piece(thinking="Think."),
        Piece(content="Hi "),
        Piece(content="there"),
        Piece(tool_calls=[frag(0, '{"q": ', "c1", "search")]),
        Piece(tool_calls=[frag(0, '"x"}')]),
        Piece(tool_calls=[frag(1, "not json", "c2", "broken")]),
        Piece(finish_reason="tool_calls"),
        Piece(usage=USAGE),
    ]
    message = await collect_message(message_events(_feed(pieces), model="m", input_tokens=1, msg_id="msg_1"))
    assert message == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [
            {"type": "thinking", "thinking": "Think.", "signature": ""},
            {"type": "text", "text": "Hi there"},
            {"type": "tool_use", "id": "c1", "name": "search", "input": {"q": "x"}},
            {"type": "tool_use", "id": "c2", "name": "broken", "input": {"_raw": "not json"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 5},
    }


async def test_collect_message_with_a_call_without_arguments() -> None:
    message = await collect_message(
        message_events(_feed([Piece(tool_calls=[frag(0, "", "c1", "now")])]), model="m", input_tokens=1)
    )
    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "now", "input": {}}]
    assert message["id"].startswith("msg_") and len(message["id"]) == 28
