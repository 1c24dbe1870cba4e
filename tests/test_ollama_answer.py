"""Pieces → native NDJSON chunks, non-streamed answers, load answers and embed answers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oai2ollama.errors import UpstreamError
from oai2ollama.translate.answer import Piece, ToolCallFragment
from oai2ollama.translate.ollama_answer import (
    Kind,
    collect,
    collect_batches,
    done_reason,
    embed_answer,
    load_answer,
    now_rfc3339,
    ollama_chunks,
    ollama_lines,
)

from .fakes import chunk, text_stream, tool_stream, usage_chunk

pytestmark = pytest.mark.anyio

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def clock(*values: int) -> Callable[[], int]:
    return iter(values).__next__


async def source(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def encode(items: list[Piece], kind: Kind = "chat", times: tuple[int, ...] = (250, 1000)) -> list[dict[str, Any]]:
    chunks = ollama_chunks(source(items), kind=kind, model="gpt-test", started_ns=0, clock=clock(*times))
    return [c async for c in chunks]


def without_time(chunk: dict[str, Any]) -> dict[str, Any]:
    assert RFC3339_UTC.fullmatch(chunk.pop("created_at"))
    return chunk


def text(content: str, done: bool = False) -> dict[str, Any]:
    return {"model": "gpt-test", "message": {"role": "assistant", "content": content}, "done": done}


METRICS = {
    "total_duration": 1000,
    "load_duration": 0,
    "prompt_eval_count": 11,
    "prompt_eval_duration": 250,
    "eval_count": 7,
    "eval_duration": 750,
}


async def test_chat_stream() -> None:
    chunks = await encode(
        [Piece(), Piece(content="Hel"), Piece(content="lo"), Piece(finish_reason="stop"), Piece(usage=USAGE)]
    )
    assert [without_time(c) for c in chunks] == [
        text("Hel"),
        text("lo"),
        {**text("", done=True), "done_reason": "stop", **METRICS},
    ]


async def test_thinking_goes_to_message_thinking() -> None:
    chunks = await encode([Piece(thinking="Let me see."), Piece(content="4"), Piece(finish_reason="stop")])
    assert [c["message"] for c in chunks[:2]] == [
        {"role": "assistant", "content": "", "thinking": "Let me see."},
        {"role": "assistant", "content": "4"},
    ]
    assert "thinking" not in chunks[-1]["message"]


async def test_generate_stream() -> None:
    chunks = await encode(
        [Piece(thinking="hmm"), Piece(content="Blue."), Piece(finish_reason="length"), Piece(usage=USAGE)], "generate"
    )
    assert [without_time(c) for c in chunks] == [
        {"model": "gpt-test", "response": "", "thinking": "hmm", "done": False},
        {"model": "gpt-test", "response": "Blue.", "done": False},
        {"model": "gpt-test", "response": "", "done": True, "done_reason": "length", "context": [], **METRICS},
    ]


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "stop"), ("content_filter", "stop"), (None, "stop")],
)
def test_done_reason(finish: str | None, reason: str) -> None:
    assert done_reason(finish) == reason


async def test_complete_tool_calls_one_per_chunk() -> None:
    pieces = [
        Piece(tool_calls=[ToolCallFragment(0, "call_a", "get_weather", '{"city": ')]),
        Piece(tool_calls=[ToolCallFragment(1, "call_b", "get_time", "")]),
        Piece(tool_calls=[ToolCallFragment(0, "", "", '"Paris"}')]),
        Piece(finish_reason="tool_calls"),
        Piece(usage=USAGE),
    ]
    chunks = [without_time(c) for c in await encode(pieces)]
    assert chunks[:2] == [
        {
            **text(""),
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_a", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
        },
        {
            **text(""),
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_b", "function": {"index": 1, "name": "get_time", "arguments": {}}}],
            },
        },
    ]
    assert chunks[2]["done"] is True
    assert chunks[2]["done_reason"] == "stop"
    assert chunks[2]["prompt_eval_duration"] == 250  # the first tool fragment ended prompt evaluation


async def test_logprobs_pass_on() -> None:
    entry = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}
    chunks = await encode([Piece(content="Hi", logprobs=[entry]), Piece(logprobs=[entry])])
    assert chunks[0]["logprobs"] == [entry]
    assert chunks[1]["message"]["content"] == ""
    assert chunks[1]["logprobs"] == [entry]


async def test_metrics_without_usage_or_output() -> None:
    chunks = await encode([Piece(finish_reason="stop")], times=(400,))
    final = chunks[-1]
    assert "prompt_eval_count" not in final
    assert "eval_count" not in final
    assert final["total_duration"] == 400
    assert final["prompt_eval_duration"] == 400
    assert final["eval_duration"] == 1  # never zero, which clients would read as "absent"


async def test_every_chunk_has_the_fields_strict_clients_require() -> None:
    pieces = [Piece(thinking="t"), Piece(content="c"), Piece(tool_calls=[ToolCallFragment(0, "x", "f", "{}")])]
    for c in await encode(pieces):
        assert isinstance(c["model"], str)
        assert RFC3339_UTC.fullmatch(c["created_at"])
        assert isinstance(c["message"]["content"], str)
        assert c["message"]["role"] == "assistant"
        assert isinstance(c["done"], bool)


def test_now_rfc3339_is_utc_now() -> None:
    stamp = now_rfc3339()
    assert RFC3339_UTC.fullmatch(stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - parsed) < timedelta(seconds=2)


# ---------------------------------------------------------------- NDJSON lines, the streamed hot path


async def lines(batches: list[list[dict[str, Any]]], kind: Kind = "chat") -> list[bytes]:
    stream = ollama_lines(source(batches), kind=kind, model="m", started_ns=0, clock=clock(250, 1000))
    return [write async for write in stream]


async def test_one_write_per_batch_and_nothing_for_empty_batches() -> None:
    writes = await lines(
        [
            [chunk({"role": "assistant", "content": ""}), chunk({"content": "a"}), chunk({"content": "b"})],
            [chunk({}, "stop")],
        ]
    )
    assert len(writes) == 2  # the second batch wrote nothing; the final chunk is its own write
    first = writes[0].split(b"\n")
    assert first[-1] == b""  # every line ends with LF
    assert [json.loads(line)["message"]["content"] for line in first[:-1]] == ["a", "b"]
    final = json.loads(writes[1])
    assert final["done"] is True
    assert writes[1].endswith(b"}\n")


async def test_lines_have_no_blank_lines_and_escape_line_separators() -> None:
    writes = await lines([text_stream("a\u2028b", "c\u2029d\n")])
    body = b"".join(writes)
    assert b"\n\n" not in body
    assert "\u2028".encode() not in body
    assert "\u2029".encode() not in body
    assert b"\\u2028" in body
    decoded = [json.loads(line) for line in body.decode().split("\n") if line]
    assert "".join(d["message"]["content"] for d in decoded) == "a\u2028bc\u2029d\n"


async def test_lines_assemble_tool_calls_across_batches() -> None:
    stream = tool_stream(("call_1", "get_weather", {"city": "Paris"}), pieces=5)
    body = b"".join(await lines([[c] for c in stream]))
    decoded = [json.loads(line) for line in body.splitlines()]
    assert decoded[0]["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert decoded[1]["done"] is True


async def test_lines_stop_at_an_upstream_error_after_what_came_before() -> None:
    async def failing() -> AsyncIterator[list[dict[str, Any]]]:
        yield [chunk({"content": "partial"})]
        raise UpstreamError("upstream up.test broke off the answer: connection reset")

    stream = ollama_lines(failing(), kind="chat", model="m", started_ns=0)
    assert json.loads(await anext(stream))["message"]["content"] == "partial"
    with pytest.raises(UpstreamError, match="broke off"):
        await anext(stream)


async def test_lines_close_their_source_when_stopped_early() -> None:
    closed = []

    async def upstream() -> AsyncIterator[list[dict[str, Any]]]:
        try:
            yield [chunk({"content": "a"})]
            yield [chunk({"content": "b"})]
        finally:
            closed.append(True)

    stream = ollama_lines(upstream(), kind="chat", model="m", started_ns=0)
    await anext(stream)
    await stream.aclose()
    assert closed == [True]


# ---------------------------------------------------------------- stream:false


async def collected(items: list[Piece], kind: Kind = "chat") -> dict[str, Any]:
    chunks = ollama_chunks(source(items), kind=kind, model="gpt-test", started_ns=0, clock=clock(250, 1000))
    return without_time(await collect(chunks, kind))


async def test_collect_chat() -> None:
    entry = {"token": "a", "logprob": -1.0}
    answer = await collected(
        [
            Piece(thinking="x"),
            Piece(thinking="y"),
            Piece(content="Hel", logprobs=[entry]),
            Piece(content="lo", logprobs=[entry]),
            Piece(tool_calls=[ToolCallFragment(0, "c1", "f", '{"a": 1}')]),
            Piece(finish_reason="tool_calls"),
            Piece(usage=USAGE),
        ]
    )
    assert answer == {
        "model": "gpt-test",
        "message": {
            "role": "assistant",
            "content": "Hello",
            "thinking": "xy",
            "tool_calls": [{"id": "c1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
        },
        "done": True,
        "done_reason": "stop",
        **METRICS,
        "logprobs": [entry, entry],
    }


async def test_collect_generate() -> None:
    answer = await collected(
        [Piece(thinking="t"), Piece(content="Blue"), Piece(content="."), Piece(usage=USAGE)], "generate"
    )
    assert answer == {
        "model": "gpt-test",
        "response": "Blue.",
        "thinking": "t",
        "done": True,
        "done_reason": "stop",
        "context": [],
        **METRICS,
    }


async def test_collect_equals_the_joined_stream() -> None:
    items = [
        Piece(thinking="a"),
        Piece(content="b"),
        Piece(content="c"),
        Piece(finish_reason="length"),
        Piece(usage=USAGE),
    ]
    streamed = await encode(items)
    answer = await collected(items)
    assert answer["message"]["content"] == "".join(c["message"]["content"] for c in streamed)
    assert answer["message"]["thinking"] == "".join(c["message"].get("thinking", "") for c in streamed)
    assert {k: v for k, v in answer.items() if k != "message"} == {
        k: v for k, v in without_time(streamed[-1]).items() if k != "message"
    }


async def test_collect_batches_is_the_streamed_lines_joined() -> None:
    upstream = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning": "think"}),
        chunk({"content": "Call"}),
        chunk({"content": "ing."}),
        *tool_stream(("call_1", "get_weather", {"city": "Paris"}))[1:],
    ]
    batches = [upstream[:3], upstream[3:5], upstream[5:]]
    streamed = [json.loads(line) for line in b"".join(await lines(batches)).splitlines()]
    answer = await collect_batches(source(batches), kind="chat", model="m", started_ns=0, clock=clock(250, 1000))
    assert RFC3339_UTC.fullmatch(answer.pop("created_at"))
    assert answer == {
        "model": "m",
        "message": {
            "role": "assistant",
            "content": "Calling.",
            "thinking": "think",
            "tool_calls": streamed[3]["message"]["tool_calls"],
        },
        "done": True,
        "done_reason": "stop",
        **METRICS,
    }
    assert [c["message"].get("content") for c in streamed[:3]] == ["", "Call", "ing."]


async def test_collect_batches_closes_its_source_on_error() -> None:
    closed = []

    async def failing() -> AsyncIterator[list[dict[str, Any]]]:
        try:
            yield [chunk({"content": "a"})]
            raise UpstreamError("gone")
        finally:
            closed.append(True)

    with pytest.raises(UpstreamError, match="gone"):
        await collect_batches(failing(), kind="generate", model="m", started_ns=0)
    assert closed == [True]


# ---------------------------------------------------------------- load answers


@pytest.mark.parametrize(
    ("kind", "unload", "expected"),
    [
        (
            "chat",
            False,
            {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "load"},
        ),
        (
            "chat",
            True,
            {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "unload"},
        ),
        ("generate", False, {"model": "m", "response": "", "done": True, "done_reason": "load"}),
        ("generate", True, {"model": "m", "response": "", "done": True, "done_reason": "unload"}),
    ],
)
def test_load_answer(kind: Kind, unload: bool, expected: dict[str, Any]) -> None:
    assert without_time(load_answer(kind, "m", unload=unload)) == expected


# ---------------------------------------------------------------- embeddings


def embeddings(*vectors: list[float], order: Iterable[int] | None = None, usage: Any = None) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    if order is not None:
        data = [data[i] for i in order]
    answer: dict[str, Any] = {"object": "list", "data": data, "model": "emb"}
    if usage is not None:
        answer["usage"] = usage
    return answer


def test_embed_answer_in_input_order() -> None:
    upstream = embeddings(
        [0.1, 0.2], [0.3, 0.4], [0.5, 0.6], order=[2, 0, 1], usage={"prompt_tokens": 6, "total_tokens": 6}
    )
    assert embed_answer("emb", upstream, count=3, host="h", started_ns=100, now_ns=600) == {
        "model": "emb",
        "embeddings": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]],
        "total_duration": 500,
        "load_duration": 0,
        "prompt_eval_count": 6,
    }


def test_embed_answer_without_usage() -> None:
    assert "prompt_eval_count" not in embed_answer("emb", embeddings([1.0]), count=1, host="h", started_ns=0, now_ns=1)


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        (embeddings([1.0]), "upstream up.test returned 1 embeddings for 2 inputs"),
        ({"data": "x"}, "upstream up.test returned no embeddings for 2 inputs"),
        ([1, 2], "upstream up.test returned no embeddings for 2 inputs"),
        ({"data": [{"embedding": "AAAA"}, {"embedding": [1.0]}]}, "not lists of numbers"),
    ],
)
def test_embed_answer_rejects_a_wrong_upstream_answer(upstream: Any, message: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        embed_answer("emb", upstream, count=2, host="up.test", started_ns=0, now_ns=1)
    assert caught.value.status == 502
    assert message in caught.value.message


async def test_usage_only_final_chunk_gives_the_counts() -> None:
    body = b"".join(await lines([[chunk({"content": "x"}), chunk({}, "stop")], [usage_chunk(3, 2)]]))
    final = json.loads(body.splitlines()[-1])
    assert (final["prompt_eval_count"], final["eval_count"]) == (3, 2)
