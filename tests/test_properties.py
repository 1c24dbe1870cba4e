"""Properties of the translators, over generated inputs (hypothesis).

- Any valid native chat request maps to a valid OpenAI request: model set, messages well formed,
  every tool result answering an earlier call, arguments as JSON strings, usage asked for, nothing
  unknown and nothing null.
- A streamed answer, cut into SSE events and then into network reads at random byte boundaries,
  reassembles into exactly the answer that the same content gives when it arrives as one
  non-streamed completion: for the native routes and for the Anthropic route.
- How an upstream body is cut into reads changes neither its lines nor its chunks.
- Whatever bytes or chunk objects an upstream sends, the stream stages raise nothing but our
  `ProxyError` family, and the Anthropic encoder writes well-formed events.

Answers go the way the routes send them: `openai_chunk_batches` into `ollama_lines` or
`collect_batches` (routes/native.py); `openai_chunks` into `pieces` into `message_events`
(routes/anthropic.py).

The runs are bounded (and the same every run) so that the suite stays fast; set
PROPERTY_EXAMPLES (and PROPERTY_RANDOM=1) for a deeper search.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import string
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oai2ollama import wire
from oai2ollama.errors import ProxyError, UpstreamError
from oai2ollama.translate.answer import pieces
from oai2ollama.translate.anthropic_answer import collect_message, message_events
from oai2ollama.translate.ollama_answer import Kind, OllamaEncoder, collect_batches, ollama_lines
from oai2ollama.translate.ollama_request import chat_request
from oai2ollama.translate.streams import LineSplitter, openai_chunk_batches, openai_chunks

from .fakes import joined_lines, ndjson

pytestmark = pytest.mark.anyio

PROPERTIES = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "150")),
    deadline=None,
    derandomize=not os.environ.get("PROPERTY_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
HOST = "up.test"
SSE = "text/event-stream"
JSON = "application/json"

# ---------------------------------------------------------------- native requests

names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
texts = st.text(max_size=24)
leaf = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6) | texts
json_objects = st.dictionaries(
    st.text(max_size=8), st.recursive(leaf, lambda inner: st.lists(inner, max_size=3), max_leaves=4), max_size=4
)
IMAGES = [
    base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(8)).decode(),
    base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(8)).decode(),
    base64.b64encode(b"GIF89a" + bytes(8)).decode(),
    base64.b64encode(b"RIFF\0\0\0\0WEBPVP8 ").decode(),
    base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(9)).decode().rstrip("="),  # padding stripped
]
images = st.lists(st.sampled_from(IMAGES), min_size=1, max_size=3)
numbers = st.integers(-5, 100) | st.floats(0, 2)
options = st.fixed_dictionaries(
    {},
    optional={
        "temperature": numbers,
        "top_p": st.floats(0, 1),
        "seed": st.integers(-1, 2**31),
        "num_predict": st.integers(-2, 4096),
        "stop": st.lists(texts, max_size=3),
        "top_k": st.integers(0, 100),
        "min_p": st.floats(0, 1),
        "typical_p": st.floats(0, 1),
        "repeat_penalty": st.floats(0, 2),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
        "num_ctx": st.integers(1, 2**20),  # load-time: dropped
        "num_gpu": st.integers(0, 99),
    },
)
schema = st.fixed_dictionaries(
    {"type": st.just("object"), "properties": st.dictionaries(names, st.just({"type": "string"}), max_size=3)}
)
tools = st.lists(
    st.fixed_dictionaries(
        {"function": st.fixed_dictionaries({"name": names}, optional={"description": texts, "parameters": schema})},
        optional={"type": st.just("function")},
    ),
    max_size=3,
)


@st.composite
def tool_calls(draw: st.DrawFn, turn: int) -> list[dict[str, Any]]:
    calls = []
    for position in range(draw(st.integers(1, 3))):
        function: dict[str, Any] = {"name": draw(names)}
        if draw(st.booleans()):
            function["arguments"] = draw(json_objects)
        if draw(st.booleans()):
            function["index"] = position
        call: dict[str, Any] = {"function": function}
        if draw(st.booleans()):
            call["id"] = f"call_{turn}_{position}_{draw(names)}"  # unique, as clients echo the ids they got
        calls.append(call)
    return calls


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid native conversations: tool results follow the calls they answer, each call answered
    at most once, paired by id, by name or by order (one way per turn, as each client does)."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "System"])), "content": draw(texts)})
    for _ in range(draw(st.integers(1, 4))):
        user: dict[str, Any] = {"role": "user", "content": draw(texts)}
        if draw(st.booleans()):
            user["images"] = draw(images)
        messages.append(user)
        if not draw(st.booleans()):
            continue
        assistant: dict[str, Any] = {"role": "assistant", "content": draw(texts)}
        if draw(st.booleans()):
            assistant["thinking"] = draw(texts)
        calls = draw(tool_calls(len(messages))) if draw(st.booleans()) else []
        if calls:
            assistant["tool_calls"] = calls
        messages.append(assistant)
        if not calls:
            continue
        # By id only where every call has one: a client that echoes ids has them for all its calls.
        pairing = draw(st.sampled_from(["id", "name", "order"] if all("id" in c for c in calls) else ["name", "order"]))
        order = draw(st.permutations(range(len(calls)))) if pairing != "order" else range(len(calls))
        for position in list(order)[: draw(st.integers(0, len(calls)))]:
            result: dict[str, Any] = {"role": "tool", "content": draw(texts)}
            call = calls[position]
            if pairing == "id":
                result["tool_call_id"] = call["id"]
            elif pairing == "name":
                result["tool_name"] = call["function"]["name"]
            messages.append(result)
    return messages


chat_requests = st.fixed_dictionaries(
    {"model": names, "messages": conversations()},
    optional={
        "options": options,
        "format": st.sampled_from(["json", ""]) | schema,
        "think": st.sampled_from([True, False, "true", "false", "low", "medium", "high", "max"]),
        "tools": tools,
        "stream": st.booleans(),
        "keep_alive": st.sampled_from(["5m", 0, "1h", -1]),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(0, 20),
        "num_predict": st.integers(-1, 100),
    },
)

OPENAI_FIELDS = {
    "model", "messages", "tools", "stream", "stream_options", "temperature", "top_p", "seed", "max_tokens",
    "presence_penalty", "frequency_penalty", "stop", "top_k", "min_p", "typical_p", "repeat_penalty",
    "repetition_penalty", "response_format", "reasoning_effort", "logprobs", "top_logprobs",
}  # fmt: skip
MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "reasoning_content", "tool_calls"},
    "tool": {"role", "content", "tool_call_id"},
}


def nulls(value: Any, where: str = "") -> list[str]:
    """Where `value` holds a None."""
    if value is None:
        return [where]
    if isinstance(value, dict):
        return [path for key, item in value.items() for path in nulls(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [path for index, item in enumerate(value) for path in nulls(item, f"{where}[{index}]")]
    return []


@PROPERTIES
@given(req=chat_requests, thinking=st.booleans())
def test_a_valid_chat_request_maps_to_a_valid_openai_request(req: dict[str, Any], thinking: bool) -> None:
    capabilities = frozenset({"completion", "tools", "vision"} | ({"thinking"} if thinking else set()))
    body = chat_request(req, upstream_model="upstream-model", capabilities=capabilities)
    wire.dumps(body)  # serialisable as it stands

    assert body["model"] == "upstream-model"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert set(body) <= OPENAI_FIELDS, set(body) - OPENAI_FIELDS
    messages = body["messages"]
    assert len(messages) == len(req["messages"])
    # OpenAI's one null: an assistant turn that only calls tools.
    allowed_nulls = {
        f".messages[{i}].content" for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("tool_calls")
    }
    assert set(nulls(body)) <= allowed_nulls, nulls(body)

    call_ids: list[str] = []
    answered: set[str] = set()
    for sent, message in zip(req["messages"], messages, strict=True):
        role = message["role"]
        assert role == sent["role"].lower() and set(message) <= MESSAGE_FIELDS[role], message
        if role == "assistant":
            assert message["content"] == (sent["content"] or (None if sent.get("tool_calls") else ""))
            assert message.get("reasoning_content") == (sent.get("thinking") or None)
            calls = message.get("tool_calls", [])
            assert len(calls) == len(sent.get("tool_calls", []))
            for call, original in zip(calls, sent.get("tool_calls", []), strict=True):
                assert set(call) == {"id", "type", "function"} and call["type"] == "function"
                assert isinstance(call["id"], str) and call["id"]
                assert call["id"] == original.get("id", call["id"])
                assert isinstance(call["function"]["arguments"], str)
                assert json.loads(call["function"]["arguments"]) == original["function"].get("arguments", {})
                assert call["function"]["name"] == original["function"]["name"]
                call_ids.append(call["id"])
            answered = set()  # a new round of calls
        elif role == "tool":
            call_id = message["tool_call_id"]
            assert call_id in call_ids, f"{call_id} answers no earlier call"
            assert call_id not in answered, f"{call_id} answered twice"
            answered.add(call_id)
            if sent.get("tool_call_id"):
                assert call_id == sent["tool_call_id"]
        elif role == "user":
            content = message["content"]
            if sent.get("images"):
                urls = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
                assert len(urls) == len(sent["images"])
                assert all(url.startswith("data:image/") and ";base64," in url for url in urls)
                assert [part["text"] for part in content if part["type"] == "text"] == [sent["content"]] * bool(
                    sent["content"]
                )
            else:
                assert content == sent["content"]
        else:
            assert message["content"] == sent["content"]
    assert len(call_ids) == len(set(call_ids)), "tool call ids repeat"

    given_options = req.get("options", {})
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "top_k", "min_p", "typical_p"):
        assert body.get(name) == given_options.get(name)
    assert body.get("seed") == (given_options["seed"] if given_options.get("seed", -1) >= 0 else None)
    assert body.get("stop") == (given_options.get("stop") or None)
    if req.get("format") == "json":
        assert body["response_format"] == {"type": "json_object"}
    elif isinstance(req.get("format"), dict):
        assert body["response_format"]["json_schema"]["schema"] == req["format"]
    else:
        assert "response_format" not in body
    assert ("tools" in body) == bool(req.get("tools"))
    # A replayed history gets the same request: ids made up for calls without one are stable.
    assert chat_request(req, upstream_model="upstream-model", capabilities=capabilities) == body


def test_results_paired_by_order_leave_alone_the_calls_later_results_name() -> None:
    """A turn whose results mix an explicit id with id-less ones (calls from an older history had
    none): the id-less ones must take the calls no result names."""
    calls = [{"function": {"name": "f"}}, {"id": "call_b", "function": {"name": "f"}}, {"function": {"name": "f"}}]
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "1"},
        {"role": "tool", "content": "3"},
        {"role": "tool", "content": "2", "tool_call_id": "call_b"},
    ]
    body = chat_request({"model": "m", "messages": messages}, upstream_model="m", capabilities=frozenset())
    answered = [message["tool_call_id"] for message in body["messages"] if message["role"] == "tool"]
    assert len(set(answered)) == 3, answered


# ---------------------------------------------------------------- streamed = not streamed


@st.composite
def answers(draw: st.DrawFn) -> dict[str, Any]:
    """What an upstream says, before any framing: reasoning, text, tool calls, finish, usage."""
    calls = []
    for position in range(draw(st.integers(0, 3))):
        arguments = wire.dumps(draw(json_objects)).decode()
        calls.append({"id": f"call_{position}{draw(names)}", "name": draw(names), "arguments": arguments})
    finish = draw(st.sampled_from(["stop", "length", "content_filter"])) if not calls else "tool_calls"
    return {
        "reasoning": draw(st.lists(st.text(min_size=1, max_size=12), max_size=4)),
        "content": draw(st.lists(st.text(min_size=1, max_size=12), max_size=5)),
        "calls": calls,
        "finish": finish,
        "usage": {"prompt_tokens": draw(st.integers(0, 10**6)), "completion_tokens": draw(st.integers(0, 10**6))},
        "reasoning_field": draw(st.sampled_from(["reasoning_content", "reasoning"])),
    }


def chunk_dict(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def stream_chunks(answer: dict[str, Any], cuts: list[int]) -> list[dict[str, Any]]:
    """The answer as OpenAI stream chunks; each tool call's arguments are cut at `cuts`."""
    chunks = [chunk_dict({"role": "assistant", "content": ""})]
    chunks += [chunk_dict({answer["reasoning_field"]: part}) for part in answer["reasoning"]]
    chunks += [chunk_dict({"content": part}) for part in answer["content"]]
    for index, call in enumerate(answer["calls"]):
        head = {"index": index, "id": call["id"], "type": "function", "function": {"name": call["name"]}}
        chunks.append(chunk_dict({"tool_calls": [{**head, "function": {**head["function"], "arguments": ""}}]}))
        arguments = call["arguments"]
        bounds = sorted({0, len(arguments), *(cut % (len(arguments) + 1) for cut in cuts)})
        for start, end in itertools.pairwise(bounds):
            fragment = {"index": index, "function": {"arguments": arguments[start:end]}}
            chunks.append(chunk_dict({"tool_calls": [fragment]}))
    chunks.append(chunk_dict({}, answer["finish"]))
    usage = {**answer["usage"], "total_tokens": sum(answer["usage"].values())}
    chunks.append({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "choices": [], "usage": usage})
    return chunks


def completion_document(answer: dict[str, Any]) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(answer["content"]) or None}
    if answer["reasoning"]:
        message[answer["reasoning_field"]] = "".join(answer["reasoning"])
    if answer["calls"]:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in answer["calls"]
        ]
    choice = {"index": 0, "message": message, "finish_reason": answer["finish"]}
    usage = {**answer["usage"], "total_tokens": sum(answer["usage"].values())}
    return wire.dumps({"id": "chatcmpl-p", "object": "chat.completion", "choices": [choice], "usage": usage})


def sse_bytes(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(wire.sse_frame(chunk) for chunk in chunks) + b"data: [DONE]\n\n"


async def reads(data: bytes, cuts: Sequence[int]) -> AsyncIterator[bytes]:
    """`data` as network reads, cut at the given offsets (anywhere: inside a line, a UTF-8 character)."""
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    for start, end in itertools.pairwise(bounds):
        yield data[start:end]


TIMING = ("created_at", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def untimed(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in TIMING}


async def native_streamed(data: bytes, cuts: list[int], kind: Kind = "chat") -> dict[str, Any]:
    """What a client reassembles from the streamed /api/chat route's NDJSON lines."""
    batches = openai_chunk_batches(reads(data, cuts), content_type=SSE, host=HOST)
    lines = ndjson(
        b"".join([part async for part in ollama_lines(batches, OllamaEncoder(kind=kind, model="m", started_ns=0))])
    )
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    return joined_lines(lines, kind)


async def native_collected(
    data: bytes, content_type: str, cuts: Sequence[int] = (), kind: Kind = "chat"
) -> dict[str, Any]:
    """The answer of the non-streamed /api/chat route."""
    batches = openai_chunk_batches(reads(data, cuts), content_type=content_type, host=HOST)
    return await collect_batches(batches, OllamaEncoder(kind=kind, model="m", started_ns=0))


@PROPERTIES
@given(answer=answers(), cuts=st.lists(st.integers(0, 10**6), max_size=40), fragment_cuts=st.lists(st.integers(0, 99)))
async def test_a_streamed_native_answer_reassembles_into_the_non_streamed_one(
    answer: dict[str, Any], cuts: list[int], fragment_cuts: list[int]
) -> None:
    streamed = sse_bytes(stream_chunks(answer, fragment_cuts))
    from_stream = untimed(await native_streamed(streamed, cuts))
    from_document = untimed(await native_collected(completion_document(answer), JSON))
    assert from_stream == from_document
    # stream:false: the upstream is still asked to stream, and the answer is collected from its events.
    assert untimed(await native_collected(streamed, SSE, cuts)) == from_document
    # And the answer holds what the upstream said.
    message = from_document["message"]
    assert message["content"] == "".join(answer["content"])
    assert message.get("thinking", "") == "".join(answer["reasoning"])
    calls = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])]
    assert calls == [(c["id"], c["name"], json.loads(c["arguments"])) for c in answer["calls"]]
    assert from_document["done_reason"] == ("length" if answer["finish"] == "length" else "stop")
    assert (from_document["prompt_eval_count"], from_document["eval_count"]) == (
        answer["usage"]["prompt_tokens"],
        answer["usage"]["completion_tokens"],
    )


def parse_sse_events(data: bytes) -> list[dict[str, Any]]:
    events = []
    for frame in data.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line)
        if "data" in fields:
            event = json.loads(fields["data"])
            assert fields["event"] == event["type"]
            events.append(event)
    return events


async def anthropic_events(data: bytes, content_type: str, cuts: Sequence[int]) -> list[dict[str, Any]]:
    """The events of /v1/messages for an upstream body, composed as routes/anthropic.py composes them."""
    chunks = openai_chunks(reads(data, cuts), content_type=content_type, host=HOST)
    return await exhaust(message_events(pieces(chunks), model="m", input_tokens=3, msg_id="msg_p"))


async def anthropic_message(data: bytes, content_type: str, cuts: Sequence[int], *, streamed: bool) -> dict[str, Any]:
    events = await anthropic_events(data, content_type, cuts)
    if streamed:  # what a client reads back from the SSE frames
        events = parse_sse_events(b"".join(wire.sse_frame(event, event=event["type"]) for event in events))
    return await collect_message(replay(events))


@PROPERTIES
@given(answer=answers(), cuts=st.lists(st.integers(0, 10**6), max_size=40), fragment_cuts=st.lists(st.integers(0, 99)))
async def test_a_streamed_anthropic_answer_reassembles_into_the_non_streamed_one(
    answer: dict[str, Any], cuts: list[int], fragment_cuts: list[int]
) -> None:
    streamed = sse_bytes(stream_chunks(answer, fragment_cuts))
    from_stream = await anthropic_message(streamed, SSE, cuts, streamed=True)
    from_document = await anthropic_message(completion_document(answer), JSON, [], streamed=False)
    assert from_stream == from_document
    blocks = from_document["content"]
    assert [b["type"] for b in blocks] == ["thinking"] * bool(answer["reasoning"]) + ["text"] * bool(
        answer["content"]
    ) + ["tool_use"] * len(answer["calls"])
    texts_by_type = {b["type"]: b.get("text", b.get("thinking")) for b in blocks if b["type"] != "tool_use"}
    assert texts_by_type.get("text", "") == "".join(answer["content"])
    assert texts_by_type.get("thinking", "") == "".join(answer["reasoning"])
    uses = [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"]
    assert uses == [(c["id"], c["name"], json.loads(c["arguments"])) for c in answer["calls"]]
    assert from_document["usage"]["output_tokens"] == answer["usage"]["completion_tokens"]


# ---------------------------------------------------------------- nothing but our errors


content_types = st.sampled_from([SSE, JSON, "text/plain", "", "application/json; charset=utf-8", "text/html"])
byte_soups = st.lists(st.binary(max_size=64), max_size=8)
# Bytes near the format: SSE field names, [DONE], JSON fragments, line ends of every kind.
SSE_WORDS = [
    b"data:",
    b"data: ",
    b"event: x",
    b": ping",
    b"[DONE]",
    b"\n",
    b"\r\n",
    b"\r",
    b"{",
    b"}",
    b'"',
    b"\xe2\x80\xa8",
]
near_sse = st.lists(st.sampled_from(SSE_WORDS) | st.binary(max_size=8), max_size=24).map(b"".join)


async def exhaust(items: Any) -> list[Any]:
    return [item async for item in items]


async def replay(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def from_parts(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def split_reference(data: bytes) -> list[bytes]:
    """Lines as the SSE spec (less its lone CR) reads them: ended by LF, a CR before it dropped."""
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


@PROPERTIES
@given(data=st.binary(max_size=200) | near_sse, cuts=st.lists(st.integers(0, 10**4), max_size=12))
def test_lines_do_not_depend_on_how_the_reads_were_cut(data: bytes, cuts: list[int]) -> None:
    splitter = LineSplitter()
    bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    lines = [line for start, end in itertools.pairwise(bounds) for line in splitter.feed(data[start:end])]
    assert lines + splitter.close() == split_reference(data)


@PROPERTIES
@given(parts=byte_soups | near_sse.map(lambda data: [data]), content_type=content_types)
async def test_random_bytes_raise_nothing_but_our_errors(parts: list[bytes], content_type: str) -> None:
    with contextlib.suppress(ProxyError):
        await exhaust(openai_chunk_batches(from_parts(parts), content_type=content_type, host=HOST))
    with contextlib.suppress(ProxyError):
        lines = ollama_lines(
            openai_chunk_batches(from_parts(parts), content_type=content_type, host=HOST),
            OllamaEncoder(kind="generate", model="m", started_ns=0),
        )
        ndjson(b"".join(await exhaust(lines)))
    with contextlib.suppress(ProxyError):
        batches = openai_chunk_batches(from_parts(parts), content_type=content_type, host=HOST)
        await collect_batches(batches, OllamaEncoder(kind="generate", model="m", started_ns=0))
    with contextlib.suppress(ProxyError):
        chunks = openai_chunks(from_parts(parts), content_type=content_type, host=HOST)
        await exhaust(message_events(pieces(chunks), model="m", input_tokens=1))


# Chunk objects with every field of the format, holding anything.
anything = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
fragments = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(-2, 4) | anything,
        "id": st.sampled_from(["a", "b", ""]) | anything,
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {}, optional={"name": st.sampled_from(["f", "g"]) | anything, "arguments": st.text(max_size=6) | anything}
        )
        | anything,
    },
)
deltas = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant") | anything,
        "content": st.text(max_size=6) | anything,
        "reasoning_content": st.text(max_size=6) | anything,
        "reasoning": st.text(max_size=6) | anything,
        "tool_calls": st.lists(fragments, max_size=3) | anything,
    },
)
choices = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(0, 2) | anything,
        "delta": deltas | anything,
        "message": deltas | anything,
        "text": st.text(max_size=6) | anything,
        "finish_reason": st.sampled_from(["stop", "length", "tool_calls", None]) | anything,
        "logprobs": st.fixed_dictionaries({}, optional={"content": anything, "tokens": anything}) | anything,
    },
)
chunk_objects = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(choices, max_size=2) | anything,
        "usage": st.fixed_dictionaries(
            {}, optional={"prompt_tokens": anything, "completion_tokens": anything, "prompt_tokens_details": anything}
        )
        | anything,
        "error": st.none() | anything,
    },
)


async def outcome(data: bytes, cuts: Sequence[int], content_type: str) -> tuple[list[Any], Any]:
    """The chunks `openai_chunk_batches` hands out, and the error it ends with (or None)."""
    chunks: list[Any] = []
    try:
        async for batch in openai_chunk_batches(reads(data, cuts), content_type=content_type, host=HOST):
            assert batch, "an empty batch"
            chunks += batch
    except UpstreamError as exc:
        return chunks, (exc.status, exc.message)
    return chunks, None


@PROPERTIES
@given(
    data=st.binary(max_size=200) | near_sse | st.lists(chunk_objects | anything, max_size=4).map(sse_bytes),
    cuts=st.lists(st.integers(0, 10**4), max_size=12),
    content_type=content_types,
)
async def test_chunks_do_not_depend_on_how_the_reads_were_cut(data: bytes, cuts: list[int], content_type: str) -> None:
    assert await outcome(data, cuts, content_type) == await outcome(data, [], content_type)


@PROPERTIES
@given(objects=st.lists(chunk_objects | anything, max_size=8), cuts=st.lists(st.integers(0, 10**4), max_size=6))
async def test_any_chunk_objects_raise_nothing_but_our_errors(objects: list[Any], cuts: list[int]) -> None:
    data = b"".join(wire.sse_frame(obj) for obj in objects) + b"data: [DONE]\n\n"
    with contextlib.suppress(ProxyError):
        lines = ollama_lines(
            openai_chunk_batches(reads(data, cuts), content_type=SSE, host=HOST),
            OllamaEncoder(kind="chat", model="m", started_ns=0),
        )
        ndjson(b"".join(await exhaust(lines)))
    with contextlib.suppress(ProxyError):
        await native_collected(data, SSE)
    with contextlib.suppress(ProxyError):
        await anthropic_message(data, SSE, cuts, streamed=True)


# Chunks that read into every kind of piece: text, thinking, tool-call fragments (numbered or not,
# with or without ids, interleaved), finish reasons, usage (its counts possibly nonsense).
encoder_fragments = st.fixed_dictionaries(
    {"function": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["", "f"]), "arguments": texts})},
    optional={"index": st.integers(0, 3), "id": st.sampled_from(["", "call_a", "call_b"])},
)
encoder_deltas = st.fixed_dictionaries(
    {},
    optional={
        "content": st.text(max_size=4),
        "reasoning_content": st.text(max_size=4),
        "tool_calls": st.lists(encoder_fragments, max_size=3),
    },
)
encoder_usage = st.fixed_dictionaries({"prompt_tokens": st.integers(0, 99), "completion_tokens": anything})
encoder_chunks = st.builds(
    lambda delta, finish, usage: {
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **({"usage": usage} if usage else {}),
    },
    encoder_deltas,
    st.sampled_from([None, "stop", "length", "tool_calls", "content_filter"]),
    st.none() | encoder_usage,
) | st.builds(lambda usage: {"choices": [], "usage": usage}, encoder_usage)


@PROPERTIES
@given(chunks=st.lists(encoder_chunks, max_size=8), cuts=st.lists(st.integers(0, 10**4), max_size=6))
async def test_the_anthropic_encoder_takes_any_pieces(chunks: list[dict[str, Any]], cuts: list[int]) -> None:
    """Well-formed events, or our error (tool calls whose arguments interleave cannot be blocks)."""
    try:
        events = await anthropic_events(sse_bytes(chunks), SSE, cuts)
    except ProxyError:
        return
    assert events[0]["type"] == "message_start" and [e["type"] for e in events[-2:]] == [
        "message_delta",
        "message_stop",
    ]
    open_block = None
    for event in events:
        if event["type"] == "content_block_start":
            assert open_block is None
            open_block = event["index"]
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_block
        elif event["type"] == "content_block_stop":
            assert event["index"] == open_block
            open_block = None
    assert open_block is None
    frames = b"".join(wire.sse_frame(event, event=event["type"]) for event in events)
    assert parse_sse_events(frames) == events
    await collect_message(replay(events))
