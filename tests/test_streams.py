"""The byte-stream stages: lines, SSE payloads, chunk dicts, and how each fails.

Framing is checked where production does it: bodies cut into reads at every byte go through
`openai_chunk_batches`; the line and event cores are also fed directly, through the same
`feed`/`close` calls it makes, where a detail (a kept space, a stripped CR) leaves no trace in the
decoded chunks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oai2ollama import wire
from oai2ollama.errors import UpstreamError
from oai2ollama.translate.streams import (
    EventReader,
    LineSplitter,
    decode_chunk,
    openai_chunk_batches,
    openai_chunks,
)

from .fakes import chunk, sse, text_stream, usage_chunk

pytestmark = pytest.mark.anyio

SSE = "text/event-stream"


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def batches_of(*parts: bytes, content_type: str = SSE) -> list[list[dict[str, Any]]]:
    return [b async for b in openai_chunk_batches(body(*parts), content_type=content_type, host="up.test")]


async def chunks_of(*parts: bytes, content_type: str = SSE) -> list[dict[str, Any]]:
    return [c async for c in openai_chunks(body(*parts), content_type=content_type, host="up.test")]


def every_cut(raw: bytes) -> list[list[bytes]]:
    """`raw` as two reads cut at each offset, and as one read per byte."""
    return [[raw[:i], raw[i:]] for i in range(len(raw) + 1)] + [[raw[i : i + 1] for i in range(len(raw))]]


def lines_of(*reads: bytes) -> list[bytes]:
    """What `openai_chunk_batches` gets from its splitter: `feed` per read, `close` at the end."""
    splitter = LineSplitter()
    return [line for read in reads for line in splitter.feed(read)] + splitter.close()


def payloads_of(raw: bytes) -> list[bytes]:
    """The event reader fed the body's lines, then closed, as at the end of a body."""
    reader = EventReader()
    return reader.feed(lines_of(raw)) + reader.close()


# ---------------------------------------------------------------- lines

TRICKY = '{"c":"a\u2028b\u2029c\u0085d\r\x0be"}'.encode()


@pytest.mark.parametrize(
    ("parts", "lines"),
    [
        pytest.param([b"a\nb\n"], [b"a", b"b"], id="lf"),
        pytest.param([b"a\r\nb\r\n"], [b"a", b"b"], id="crlf"),
        pytest.param([b"a\r\nb\n"], [b"a", b"b"], id="mixed"),
        pytest.param([b"a\n\nb\n"], [b"a", b"", b"b"], id="blank-lines-kept"),
        pytest.param([b"da", b"ta: 1\nda", b"ta: 2\n"], [b"data: 1", b"data: 2"], id="across-chunks"),
        pytest.param([b"a", b"b", b"c", b"\n"], [b"abc"], id="one-line-in-many-chunks"),
        pytest.param([b"a\r", b"\nb\n"], [b"a", b"b"], id="crlf-split-across-chunks"),
        pytest.param([b"a\n", b"tail"], [b"a", b"tail"], id="no-final-newline"),
        pytest.param([b"tail\r"], [b"tail"], id="final-cr"),
        pytest.param([b"a\rb\n"], [b"a\rb"], id="lone-cr-is-not-a-line-end"),
        pytest.param([b"", b"a\n", b""], [b"a"], id="empty-reads"),
        pytest.param([b"data: " + TRICKY + b"\n"], [b"data: " + TRICKY], id="unicode-separators-kept-whole"),
        pytest.param(
            [b"data: " + TRICKY[:7], TRICKY[7:] + b"\n"],
            [b"data: " + TRICKY],
            id="separator-split-across-reads",
        ),
    ],
)
def test_line_splitter(parts: list[bytes], lines: list[bytes]) -> None:
    assert lines_of(*parts) == lines


FIRST, SECOND = chunk({"content": "a\u2028b\u0085c\r"}, "stop"), usage_chunk()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(sse(FIRST, SECOND), id="lf"),
        pytest.param(sse(FIRST, SECOND).replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(sse(FIRST, SECOND, done=False).rstrip(b"\n"), id="no-final-line-break"),
        pytest.param(sse(FIRST, SECOND).replace(b"\n\n", b"\n"), id="events-ended-by-one-lf"),
        pytest.param(sse(FIRST, SECOND).replace(b"\n\n", b"\r\n"), id="events-ended-by-one-crlf"),
    ],
)
async def test_chunks_whatever_the_reads_cut(raw: bytes) -> None:
    for reads in every_cut(raw):
        assert await chunks_of(*reads) == [FIRST, SECOND], reads


# ---------------------------------------------------------------- events

EVENTS = [
    pytest.param(b'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n', [b'{"a":1}', b'{"a":2}'], id="plain"),
    pytest.param(b'data: {"a":1}\n\ndata: [DONE]\n\ndata: {"late":1}\n\n', [b'{"a":1}'], id="stops-at-done"),
    pytest.param(b'data: {"a":1}\n\ndata: {"a":2}\n\n', [b'{"a":1}', b'{"a":2}'], id="no-done"),
    pytest.param(b'data: {"a":1}\n\ndata: {"a":2}', [b'{"a":1}', b'{"a":2}'], id="no-final-blank-line"),
    pytest.param(b'data:{"a":1}\n\n', [b'{"a":1}'], id="no-space-after-colon"),
    pytest.param(b'data:  {"a":1}\n\n', [b' {"a":1}'], id="only-one-space-removed"),
    pytest.param(b': keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: {"a":1}\n\n', [b'{"a":1}'], id="comments-skipped"),
    pytest.param(b'event: message\nid: 7\nretry: 100\ndata: {"a":1}\n\n', [b'{"a":1}'], id="other-fields-skipped"),
    pytest.param(b'data: {"a":\ndata: 1}\n\n', [b'{"a":\n1}'], id="multi-line-data"),
    pytest.param(b'data: {"a":1}\r\n\r\ndata: [DONE]\r\n\r\n', [b'{"a":1}'], id="crlf-events"),
    pytest.param(b'data: {"a":1}\ndata: {"a":2}\ndata: [DONE]\n', [b'{"a":1}', b'{"a":2}'], id="one-lf-events"),
    pytest.param(b"data: [DONE] \n\n", [], id="done-with-trailing-space"),
]


@pytest.mark.parametrize(("raw", "payloads"), EVENTS)
def test_event_reader(raw: bytes, payloads: list[bytes]) -> None:
    assert payloads_of(raw) == payloads


# Makes each `{"a": …}` event of EVENTS a finished chat chunk, so that the stream is whole and
# only its framing is at stake here (completeness has its own table below).
_AS_ANSWER = (b'{"a":', b'{"choices":[{"index":0,"finish_reason":"stop"}],"a":')


@pytest.mark.parametrize(("raw", "payloads"), EVENTS)
async def test_events_through_the_stream_cut_anywhere(raw: bytes, payloads: list[bytes]) -> None:
    raw = raw.replace(*_AS_ANSWER)
    expected = [wire.loads(payload.replace(*_AS_ANSWER)) for payload in payloads]
    for reads in every_cut(raw):
        assert [c for batch in await batches_of(*reads) for c in batch] == expected, reads


async def test_multi_line_json_is_still_one_event() -> None:
    # Once an event spans lines, a later `data:` line joins it even if it looks whole on its own.
    raw = b'data: {"a":\ndata: 1}\ndata: {"b": 2}\n\n'
    assert payloads_of(raw) == [b'{"a":\n1}\n{"b": 2}']
    with pytest.raises(UpstreamError, match="malformed stream chunk"):
        await chunks_of(raw)


def test_the_event_reader_stops_at_done() -> None:
    reader = EventReader()
    assert reader.feed([b"data: {}", b"", b"data: [DONE]", b"", b"data: {}", b""]) == [b"{}"]
    assert reader.done
    assert reader.close() == []


# ---------------------------------------------------------------- decode_chunk


def test_decode_chunk() -> None:
    assert decode_chunk(b'{"choices":[]}', "up.test") == {"choices": []}
    assert decode_chunk(b'{"choices":[],"error":null}', "up.test") == {"choices": [], "error": None}


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        pytest.param(b'{"choices": [', 502, "upstream up.test sent a malformed stream chunk: {", id="malformed"),
        pytest.param(b"[1, 2]", 502, "not an object", id="not-an-object"),
        pytest.param(
            b'{"error": {"message": "Rate limit exceeded", "code": 429}}', 429, "Rate limit exceeded", id="error-object"
        ),
        pytest.param(b'{"error": {"message": "slow down", "code": "429"}}', 429, "slow down", id="code-as-string"),
        pytest.param(b'{"error": {"message": "boom", "code": "server_error"}}', 502, "boom", id="code-not-a-status"),
        pytest.param(b'{"error": {"message": "odd", "code": 42}}', 502, "odd", id="code-out-of-range"),
        pytest.param(b'{"error": "overloaded"}', 502, "overloaded", id="error-string"),
        pytest.param(
            b'{"id": "gen-1", "error": {"code": 502, "message": "Provider disconnected"},'
            b' "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}',
            502,
            "Provider disconnected",
            id="error-beside-choices-openrouter",
        ),
    ],
)
def test_decode_chunk_errors(payload: bytes, status: int, message: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        decode_chunk(payload, "up.test")
    assert caught.value.status == status
    assert message in caught.value.message


# ---------------------------------------------------------------- openai_chunks


async def test_chunks_of_a_stream_with_a_usage_only_final_chunk() -> None:
    chunks = text_stream("Hel", "lo")
    assert await chunks_of(sse(*chunks)) == chunks
    assert (await chunks_of(sse(*chunks)))[-1] == usage_chunk()


async def test_chunks_without_done() -> None:
    chunks = text_stream("Hi")
    assert await chunks_of(sse(*chunks, done=False)) == chunks


async def test_one_batch_per_read() -> None:
    first, second, third = chunk({"content": "a"}), chunk({"content": "b"}), chunk({"content": "c"})
    raw = sse(first, second, third)
    cut = raw.index(b"data:", raw.index(b"data:", 1) + 1) + 3  # inside the third event
    batches = [b async for b in openai_chunk_batches(body(raw[:cut], raw[cut:]), content_type=SSE, host="h")]
    assert batches == [[first, second], [third]]


async def test_a_read_without_a_complete_event_yields_no_batch() -> None:
    raw = sse(chunk({"content": "a"}))
    batches = [b async for b in openai_chunk_batches(body(raw[:10], raw[10:]), content_type=SSE, host="h")]
    assert batches == [[chunk({"content": "a"})]]


async def test_malformed_chunk_ends_the_stream_after_the_good_ones() -> None:
    good = chunk({"content": "ok"})
    raw = sse(good, "{not json", chunk({"content": "never"}))
    batches = openai_chunk_batches(body(raw), content_type=SSE, host="up.test")
    assert await anext(batches) == [good]
    with pytest.raises(UpstreamError, match=r"upstream up\.test sent a malformed stream chunk: \{not json"):
        await anext(batches)


async def test_in_stream_error_keeps_its_status() -> None:
    raw = sse(chunk({"content": "partial"}), {"error": {"message": "quota exhausted", "type": "x", "code": 429}})
    seen: list[dict[str, Any]] = []
    with pytest.raises(UpstreamError) as caught:
        async for c in openai_chunks(body(raw), content_type=SSE, host="h"):
            seen.append(c)
    assert seen == [chunk({"content": "partial"})]
    assert (caught.value.status, caught.value.message) == (429, "quota exhausted")


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        pytest.param("application/json", json.dumps(COMPLETION).encode(), id="json-document"),
        pytest.param(SSE, json.dumps(COMPLETION).encode(), id="json-document-labelled-sse"),
        pytest.param("", b"\n" + json.dumps(COMPLETION, indent=2).encode(), id="json-document-unlabelled"),
    ],
)
async def test_an_upstream_that_ignored_stream_true(content_type: str, raw: bytes) -> None:
    assert await chunks_of(raw[:20], raw[20:], content_type=content_type) == [COMPLETION]


async def test_sse_labelled_as_json_is_read_as_sse() -> None:
    chunks = text_stream("Hi")
    assert await chunks_of(sse(*chunks), content_type="application/json") == chunks


@pytest.mark.parametrize(
    ("content_type", "raw", "status", "message"),
    [
        pytest.param(SSE, b"", 502, "upstream up.test ended the stream without sending anything", id="empty"),
        pytest.param(
            SSE, b"\n\n: keep-alive\n\n", 502, "ended the stream without sending anything", id="only-comments"
        ),
        pytest.param(SSE, b"\n\n\n", 502, "ended the stream without sending anything", id="blank-lines-only"),
        pytest.param(
            "text/html",
            b"<html><body>502 Bad Gateway</body></html>",
            502,
            "upstream up.test sent a body that is not an event stream: <html><body>502 Bad Gateway",
            id="html",
        ),
        pytest.param(
            SSE,
            b'{"error": {"message": "model is loading", "code": 503}}',
            503,
            "model is loading",
            id="json-error-labelled-sse",
        ),
        pytest.param("application/json", b'{"error": "bad key"}', 502, "bad key", id="json-error-document"),
        pytest.param("application/json", b"{trunc", 502, "malformed stream chunk", id="malformed-document"),
    ],
)
async def test_bodies_that_are_not_a_stream(content_type: str, raw: bytes, status: int, message: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        await chunks_of(raw, content_type=content_type)
    assert caught.value.status == status
    assert message in caught.value.message


class TrackedBody:
    """An upstream body that records whether it was closed."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = parts
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part

    async def aclose(self) -> None:
        self.closed = True


async def test_the_body_is_closed_at_done_and_when_the_reader_stops_early() -> None:
    at_done = TrackedBody(sse(chunk({"content": "a"})), b"data: never read\n\n")
    assert len([c async for c in openai_chunks(at_done, content_type=SSE, host="h")]) == 1
    assert at_done.closed

    early = TrackedBody(sse(chunk({"content": "a"}), chunk({"content": "b"})))
    stream = openai_chunks(early, content_type=SSE, host="h")
    await anext(stream)
    await stream.aclose()
    assert early.closed


async def test_events_ended_by_one_line_feed_only_stream_one_event_behind() -> None:
    first, second = chunk({"content": "a"}), chunk({"content": "b"})
    one = f"data: {json.dumps(first)}\n".encode()
    two = f"data: {json.dumps(second)}\ndata: [DONE]\n".encode()
    batches = [b async for b in openai_chunk_batches(body(one, two), content_type=SSE, host="h")]
    assert batches == [[first, second]]
    cut = two.index(b"data: [DONE]")
    early = [b async for b in openai_chunk_batches(body(one + two[:cut], two[cut:]), content_type=SSE, host="h")]
    assert early == [[first], [second]]  # an event is out as soon as the next one's line is


async def test_an_in_stream_error_among_such_events_still_raises() -> None:
    raw = f"data: {json.dumps(chunk({'content': 'a'}))}\ndata: " + '{"error": {"message": "boom", "code": 500}}\n'
    seen = []
    with pytest.raises(UpstreamError) as caught:
        async for c in openai_chunks(body(raw.encode()), content_type=SSE, host="h"):
            seen.append(c)
    assert seen == [chunk({"content": "a"})]
    assert (caught.value.status, caught.value.message) == (500, "boom")


# ---------------------------------------------------------------- a whole answer, or a cut one

HELLO = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"})]
FINISH = chunk({}, "stop")
CUT = "upstream up.test ended the answer early: its stream stopped without a finish_reason or [DONE]"


def _n_choices(*choices: tuple[int, str | None]) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": i, "delta": {}, "finish_reason": f} for i, f in choices],
    }


LEGACY = [
    {"object": "text_completion", "choices": [{"index": 0, "text": "def f():", "finish_reason": None}]},
    {"object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]},
]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(sse(*HELLO, FINISH, usage_chunk()), None, id="finish-and-done-openai"),
        pytest.param(sse(*HELLO, FINISH, usage_chunk(), done=False), None, id="finish-without-done"),
        pytest.param(sse(*HELLO, FINISH, done=False).rstrip(b"\n"), None, id="finish-without-done-or-final-break"),
        pytest.param(sse(*HELLO), None, id="done-without-finish"),
        pytest.param(sse(*HELLO, usage_chunk()), None, id="done-without-finish-usage-last"),
        pytest.param(sse(*LEGACY, done=False), None, id="legacy-completions-finish-without-done"),
        pytest.param(sse(*HELLO, done=False), CUT, id="neither-finish-nor-done"),
        pytest.param(sse(*HELLO, usage_chunk(), done=False), CUT, id="neither-usage-last"),
        pytest.param(sse(*LEGACY[:1], done=False), CUT, id="legacy-completions-cut"),
        pytest.param(sse(*HELLO, _n_choices((1, "stop")), done=False), CUT, id="only-another-choice-finished"),
        pytest.param(sse(*HELLO, _n_choices((1, None), (0, "stop")), done=False), None, id="choice-0-finished-second"),
        pytest.param(b": keep-alive\n\n" + sse(*HELLO, done=False) + b": keep-alive\n\n", CUT, id="cut-among-comments"),
    ],
)
async def test_a_stream_is_whole_only_when_it_says_so(raw: bytes, error: str | None) -> None:
    for reads in ([raw], [raw[: len(raw) // 2], raw[len(raw) // 2 :]]):
        if error is None:
            assert [c for batch in await batches_of(*reads) for c in batch] == wire.loads(
                "[" + ",".join(p.decode() for p in payloads_of(raw)) + "]"
            )
            continue
        seen: list[dict[str, Any]] = []
        with pytest.raises(UpstreamError) as caught:
            async for batch in openai_chunk_batches(body(*reads), content_type=SSE, host="up.test"):
                seen += batch
        assert (caught.value.status, caught.value.message) == (502, error)
        assert seen == [wire.loads(p) for p in payloads_of(raw)]  # everything before the cut still went out


NOT_AN_ANSWER = "upstream up.test sent a body that is not a chat answer: "


@pytest.mark.parametrize(
    ("content_type", "raw", "message"),
    [
        pytest.param(
            "application/json",
            b'{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}',
            NOT_AN_ANSWER + '{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}',
            id="model-list",
        ),
        pytest.param("application/json", b'{"foo":1}', NOT_AN_ANSWER + '{"foo":1}', id="some-object"),
        pytest.param(
            "application/json",
            b"<!DOCTYPE html><html><body>Sign in</body></html>",
            NOT_AN_ANSWER + "<!DOCTYPE html><html><body>Sign in</body></html>",
            id="html-labelled-json",
        ),
        pytest.param(
            SSE, b'{"object":"list","data":[]}', NOT_AN_ANSWER + '{"object":"list","data":[]}', id="list-as-sse"
        ),
        pytest.param(SSE, sse({"foo": 1}), NOT_AN_ANSWER + '{"foo":1}', id="sse-event-of-another-api"),
        pytest.param(
            SSE, sse({"usage": {"prompt_tokens": 3}}, {"foo": 1}), NOT_AN_ANSWER + '{"foo":1}', id="after-a-usage-chunk"
        ),
    ],
)
async def test_a_body_that_is_not_a_chat_answer(content_type: str, raw: bytes, message: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        await batches_of(raw, content_type=content_type)
    assert (caught.value.status, caught.value.message) == (502, message)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(
            [{"object": "chat.completion.chunk", "id": "x"}, *text_stream("a")], id="first-chunk-without-choices"
        ),
        pytest.param(
            [{"choices": [], "prompt_filter_results": [{"prompt_index": 0}]}, *text_stream("a")],
            id="azure-filter-first",
        ),
        pytest.param([*text_stream("a"), {"x_extension": True}], id="odd-chunk-after-the-answer-began"),
    ],
)
async def test_chat_answers_with_odd_chunks_are_accepted(chunks: list[dict[str, Any]]) -> None:
    assert await chunks_of(sse(*chunks)) == chunks
