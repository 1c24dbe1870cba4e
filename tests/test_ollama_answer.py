"""Upstream chunk batches → native NDJSON lines and non-streamed answers; load and embed answers.

Answers are driven the way the routes drive them: OpenAI chunk dicts, in the batches
`openai_chunk_batches` hands out, into `ollama_lines` (streamed) or `collect_batches` (not).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oai2ollama.errors import UpstreamError
from oai2ollama.translate.ollama_answer import (
    Kind,
    OllamaEncoder,
    collect_batches,
    done_reason,
    embed_answer,
    load_answer,
    now_rfc3339,
    ollama_lines,
)

from .fakes import (
    call_chunk,
    chunk,
    completion,
    joined_lines,
    logprobs_chunk,
    ndjson,
    text_stream,
    tool_stream,
    usage_chunk,
)

pytestmark = pytest.mark.anyio

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
Batch = list[dict[str, Any]]
Batching = Callable[[list[dict[str, Any]]], list[Batch]]


def clock(*values: int) -> Callable[[], int]:
    return iter(values).__next__


async def source(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def one_per_batch(chunks: list[dict[str, Any]]) -> list[Batch]:
    return [[c] for c in chunks]


def one_batch(chunks: list[dict[str, Any]]) -> list[Batch]:
    return [chunks]


# How the upstream's reads group its chunks must not change the answer: checked at both extremes.
BATCHINGS = pytest.mark.parametrize("batching", [one_per_batch, one_batch], ids=["read-per-chunk", "one-read"])


async def writes(batches: list[Batch], kind: Kind = "chat", times: tuple[int, ...] = (250, 1000)) -> list[bytes]:
    stream = ollama_lines(
        source(batches), OllamaEncoder(kind=kind, model="gpt-test", started_ns=0, clock=clock(*times))
    )
    return [write async for write in stream]


async def streamed(
    batches: list[Batch], kind: Kind = "chat", times: tuple[int, ...] = (250, 1000)
) -> list[dict[str, Any]]:
    """The lines a client reads from the streamed route, parsed."""
    return ndjson(b"".join(await writes(batches, kind, times)))


async def collected(batches: list[Batch], kind: Kind = "chat", times: tuple[int, ...] = (250, 1000)) -> dict[str, Any]:
    """The non-streamed route's answer, its time checked and removed."""
    answer = await collect_batches(
        source(batches), OllamaEncoder(kind=kind, model="gpt-test", started_ns=0, clock=clock(*times))
    )
    return without_time(answer)


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


@BATCHINGS
async def test_chat_stream(batching: Batching) -> None:
    lines = await streamed(batching(text_stream("Hel", "lo")))
    assert [without_time(c) for c in lines] == [
        text("Hel"),
        text("lo"),
        {**text("", done=True), "done_reason": "stop", **METRICS},
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_thinking_goes_to_message_thinking(field: str) -> None:
    lines = await streamed(one_per_batch(text_stream("4", reasoning=["Let me see."], field=field)))
    assert [c["message"] for c in lines[:2]] == [
        {"role": "assistant", "content": "", "thinking": "Let me see."},
        {"role": "assistant", "content": "4"},
    ]
    assert "thinking" not in lines[-1]["message"]


@BATCHINGS
async def test_generate_stream(batching: Batching) -> None:
    lines = await streamed(batching(text_stream("Blue.", finish="length", reasoning=["hmm"])), "generate")
    assert [without_time(c) for c in lines] == [
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


@pytest.mark.parametrize(
    ("finish", "reason"), [("stop", "stop"), ("length", "length"), ("tool_calls", "stop"), ("content_filter", "stop")]
)
async def test_the_upstream_finish_reaches_the_done_line(finish: str, reason: str) -> None:
    lines = await streamed([text_stream("x", finish=finish)])
    assert lines[-1]["done_reason"] == reason


INTERLEAVED_CALLS = [
    chunk({"role": "assistant", "content": None}),
    call_chunk(0, "call_a", "get_weather", '{"city": '),
    call_chunk(1, "call_b", "get_time", ""),
    call_chunk(0, arguments='"Paris"}'),
    chunk({}, "tool_calls"),
    usage_chunk(),
]


@BATCHINGS
async def test_complete_tool_calls_one_per_chunk(batching: Batching) -> None:
    lines = [without_time(c) for c in await streamed(batching(INTERLEAVED_CALLS))]
    assert lines[:2] == [
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
    # A tool-call finish is "stop", as in Ollama; the first tool fragment (at 250) ended prompt evaluation.
    assert lines[2:] == [{**text("", done=True), "done_reason": "stop", **METRICS}]


def native_call(index: int, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "function": {"index": index, "name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    ("upstream", "calls"),
    [
        pytest.param(
            [call_chunk(0, "call_x", "a", '{"n": 1}'), call_chunk(0, "call_y", "b", "{}")],
            [native_call(0, "call_x", "a", {"n": 1}), native_call(1, "call_y", "b", {})],
            id="every-call-at-index-0-ollama-v1-sglang",
        ),
        pytest.param(
            [call_chunk(3, "c3", "late", "{}"), call_chunk(1, "c1", "early", "{}")],
            [native_call(0, "c1", "early", {}), native_call(1, "c3", "late", {})],
            id="server-indices-renumbered-from-0-in-order",
        ),
        pytest.param(
            [call_chunk(None, "c1", "a", '{"n":'), call_chunk(None, arguments=" 1}"), call_chunk(None, "c2", "b", "")],
            [native_call(0, "c1", "a", {"n": 1}), native_call(1, "c2", "b", {})],
            id="no-indices-a-new-id-starts-a-new-call",
        ),
    ],
)
async def test_tool_call_numbering(upstream: list[dict[str, Any]], calls: list[dict[str, Any]]) -> None:
    lines = await streamed(one_per_batch([*upstream, chunk({}, "tool_calls")]))
    assert [line["message"]["tool_calls"] for line in lines[:-1]] == [[call] for call in calls]


async def test_a_call_without_an_id_gets_one_shaped_like_ollamas() -> None:
    lines = await streamed([[call_chunk(None, name="f", arguments="{}"), chunk({}, "tool_calls")]])
    (call,) = lines[0]["message"]["tool_calls"]
    assert re.fullmatch(r"call_[0-9a-f]{8}", call["id"])
    assert call["function"] == {"index": 0, "name": "f", "arguments": {}}


async def test_generate_puts_tool_calls_beside_the_response() -> None:
    lines = await streamed([tool_stream(("call_1", "f", {"a": 1}))], "generate")
    assert lines[0]["tool_calls"] == [{"id": "call_1", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}]
    assert "message" not in lines[0]


async def test_logprobs_pass_on() -> None:
    entry = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}
    lines = await streamed([[logprobs_chunk("Hi", entry), logprobs_chunk("", entry)]])
    assert lines[0]["logprobs"] == [entry]
    assert lines[1]["message"]["content"] == ""
    assert lines[1]["logprobs"] == [entry]
    assert "logprobs" not in lines[2]


async def test_metrics_without_usage_or_output() -> None:
    lines = await streamed([[chunk({}, "stop")]], times=(400,))
    final = lines[-1]
    assert len(lines) == 1
    assert "prompt_eval_count" not in final
    assert "eval_count" not in final
    assert final["total_duration"] == 400
    assert final["prompt_eval_duration"] == 400
    assert final["eval_duration"] == 1  # never zero, which clients would read as "absent"


async def test_every_line_has_the_fields_strict_clients_require() -> None:
    upstream = [chunk({"reasoning_content": "t"}), chunk({"content": "c"}), call_chunk(0, "x", "f", "{}")]
    for c in await streamed(one_per_batch(upstream)):
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


# ---------------------------------------------------------------- NDJSON writes


async def test_one_write_per_batch_and_nothing_for_empty_batches() -> None:
    sent = await writes(
        [
            [chunk({"role": "assistant", "content": ""}), chunk({"content": "a"}), chunk({"content": "b"})],
            [chunk({}, "stop")],
        ]
    )
    assert len(sent) == 2  # the second batch wrote nothing; the final chunk is its own write
    assert [line["message"]["content"] for line in ndjson(sent[0])] == ["a", "b"]
    assert ndjson(sent[1])[0]["done"] is True


async def test_lines_have_no_blank_lines_and_escape_line_separators() -> None:
    body = b"".join(await writes([text_stream("a\u2028b", "c\u2029d\n")]))
    assert b"\n\n" not in body
    assert "\u2028".encode() not in body
    assert "\u2029".encode() not in body
    assert b"\\u2028" in body
    assert "".join(d["message"]["content"] for d in ndjson(body)) == "a\u2028bc\u2029d\n"


async def test_lines_assemble_tool_calls_across_batches() -> None:
    lines = await streamed(one_per_batch(tool_stream(("call_1", "get_weather", {"city": "Paris"}), pieces=5)))
    assert lines[0]["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert lines[1]["done"] is True


async def test_lines_stop_at_an_upstream_error_after_what_came_before() -> None:
    async def failing() -> AsyncIterator[Batch]:
        yield [chunk({"content": "partial"})]
        raise UpstreamError("upstream up.test broke off the answer: connection reset")

    stream = ollama_lines(failing(), OllamaEncoder(kind="chat", model="m", started_ns=0))
    assert ndjson(await anext(stream))[0]["message"]["content"] == "partial"
    with pytest.raises(UpstreamError, match="broke off"):
        await anext(stream)


async def test_usage_only_final_chunk_gives_the_counts() -> None:
    lines = await streamed([[chunk({"content": "x"}), chunk({}, "stop")], [usage_chunk(3, 2)]])
    assert (lines[-1]["prompt_eval_count"], lines[-1]["eval_count"]) == (3, 2)


# ---------------------------------------------------------------- the source is closed however it ends


class TrackedBatches:
    """Upstream batches that record being closed, optionally failing after them."""

    def __init__(self, *batches: Batch, error: Exception | None = None) -> None:
        self.batches, self.error = batches, error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self

    async def __anext__(self) -> Batch:
        if self.batches:
            batch, *rest = self.batches
            self.batches = tuple(rest)
            return batch
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def test_lines_close_their_source_at_the_end_on_error_and_when_stopped_early() -> None:
    whole = TrackedBatches([chunk({"content": "a"})])
    assert len([w async for w in ollama_lines(whole, OllamaEncoder(kind="chat", model="m", started_ns=0))]) == 2
    assert whole.closed

    failing = TrackedBatches([chunk({"content": "a"})], error=UpstreamError("gone"))
    with pytest.raises(UpstreamError, match="gone"):
        [w async for w in ollama_lines(failing, OllamaEncoder(kind="chat", model="m", started_ns=0))]
    assert failing.closed

    early = TrackedBatches([chunk({"content": "a"})], [chunk({"content": "b"})])
    stream = ollama_lines(early, OllamaEncoder(kind="chat", model="m", started_ns=0))
    await anext(stream)
    await stream.aclose()
    assert early.closed


async def test_collect_batches_closes_its_source_at_the_end_and_on_error() -> None:
    whole = TrackedBatches([chunk({"content": "a"})])
    assert (await collect_batches(whole, OllamaEncoder(kind="chat", model="m", started_ns=0)))["message"][
        "content"
    ] == "a"
    assert whole.closed

    failing = TrackedBatches([chunk({"content": "a"})], error=UpstreamError("gone"))
    with pytest.raises(UpstreamError, match="gone"):
        await collect_batches(failing, OllamaEncoder(kind="generate", model="m", started_ns=0))
    assert failing.closed


# ---------------------------------------------------------------- stream:false


LOGPROB = {"token": "a", "logprob": -1.0}


@BATCHINGS
async def test_collect_chat(batching: Batching) -> None:
    upstream = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "x"}),
        chunk({"reasoning_content": "y"}),
        logprobs_chunk("Hel", LOGPROB),
        logprobs_chunk("lo", LOGPROB),
        call_chunk(0, "c1", "f", '{"a": 1}'),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    assert await collected(batching(upstream)) == {
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
        "logprobs": [LOGPROB, LOGPROB],
    }


@BATCHINGS
async def test_collect_generate(batching: Batching) -> None:
    upstream = [chunk({"reasoning": "t"}), chunk({"content": "Blue"}), chunk({"content": "."}), usage_chunk()]
    assert await collected(batching(upstream), "generate") == {
        "model": "gpt-test",
        "response": "Blue.",
        "thinking": "t",
        "done": True,
        "done_reason": "stop",
        "context": [],
        **METRICS,
    }


async def test_collect_a_non_streamed_completion() -> None:
    # An upstream that ignored `stream: true` hands over one document: the only chunk.
    answer = await collected([[completion("Hi", finish="length", reasoning_content="r")]])
    assert answer == {
        "model": "gpt-test",
        "message": {"role": "assistant", "content": "Hi", "thinking": "r"},
        "done": True,
        "done_reason": "length",
        **METRICS,
    }


STREAMS = [
    pytest.param("chat", text_stream("b", "c", finish="length", reasoning=["a"]), id="text-and-thinking"),
    pytest.param("generate", text_stream("Blue", ".", reasoning=["t"], field="reasoning"), id="generate"),
    pytest.param("chat", INTERLEAVED_CALLS, id="interleaved-tool-calls"),
    pytest.param("generate", tool_stream(("c1", "f", {"x": 1}), ("c2", "g", {})), id="generate-tool-calls"),
    pytest.param(
        "chat",
        [logprobs_chunk("a", LOGPROB), chunk({"content": "b"}), logprobs_chunk("", LOGPROB), chunk({}, "stop")],
        id="logprobs",
    ),
    pytest.param("chat", [], id="nothing"),
]


@pytest.mark.parametrize(("kind", "upstream"), STREAMS)
async def test_the_non_streamed_answer_is_the_streamed_lines_joined(kind: Kind, upstream: list[Any]) -> None:
    lines = [without_time(c) for c in await streamed(one_per_batch(upstream), kind)]
    assert await collected([upstream], kind) == joined_lines(lines, kind)


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
