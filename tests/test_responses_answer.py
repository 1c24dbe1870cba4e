"""Pieces → Responses events: the order, the ids, the numbering, and that the official SDK's
types accept every event as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from oai2ollama.errors import UpstreamError
from oai2ollama.translate.answer import Piece, ToolCallFragment
from oai2ollama.translate.responses_answer import (
    ResponseEncoder,
    collect_response,
    response_events,
    response_object,
    response_usage,
)

pytestmark = pytest.mark.anyio
EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def encoder(**req: Any) -> ResponseEncoder:
    return ResponseEncoder(response_object({"input": "Hi", **req}, response_id="resp_1", created_at=1, model="m"))


async def feed(*items: Piece) -> AsyncIterator[Piece]:
    for item in items:
        yield item


async def run(*items: Piece, enc: ResponseEncoder | None = None) -> list[dict[str, Any]]:
    events = [event async for event in response_events(feed(*items), enc or encoder())]
    for number, event in enumerate(events):
        assert event["sequence_number"] == number
        EVENT.validate_python(event)  # strict: every required field, every literal
    return events


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"].removeprefix("response.") for event in events]


async def test_text() -> None:
    events = await run(Piece(), Piece(content="Hel"), Piece(content="lo"), Piece(finish_reason="stop", usage=USAGE))
    assert kinds(events) == [
        "created", "in_progress", "output_item.added", "content_part.added", "output_text.delta",
        "output_text.delta", "output_text.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    assert events[0]["response"]["status"] == events[1]["response"]["status"] == "in_progress"
    item = events[2]["item"]
    assert item["id"].startswith("msg_") and item["status"] == "in_progress" and item["content"] == []
    assert [e["delta"] for e in events[4:6]] == ["Hel", "lo"]
    assert {e["item_id"] for e in events[2:9] if "item_id" in e} == {item["id"]}
    assert events[6]["text"] == "Hello"
    done = events[8]["item"]
    assert done["status"] == "completed"
    assert done["content"] == [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"] == [done]
    assert final["usage"] == {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 18,
    }
    Response.model_validate(final)


async def test_reasoning_then_text() -> None:
    events = await run(Piece(thinking="Let me "), Piece(thinking="see."), Piece(content="42"), Piece(usage=USAGE))
    assert kinds(events) == [
        "created", "in_progress", "output_item.added", "reasoning_summary_part.added",
        "reasoning_summary_text.delta", "reasoning_summary_text.delta", "reasoning_summary_text.done",
        "reasoning_summary_part.done", "output_item.done", "output_item.added", "content_part.added",
        "output_text.delta", "output_text.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    assert events[2]["item"] == {"id": events[2]["item"]["id"], "type": "reasoning", "summary": []}
    assert events[6]["text"] == "Let me see." and events[4]["summary_index"] == 0
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me see."}]
    assert (events[9]["output_index"], message["content"][0]["text"]) == (1, "42")


async def test_parallel_calls_may_interleave() -> None:
    events = await run(
        Piece(tool_calls=[ToolCallFragment(0, "call_a", "f", '{"x"')]),
        Piece(tool_calls=[ToolCallFragment(1, "call_b", "g", "")]),
        Piece(tool_calls=[ToolCallFragment(0, arguments=": 1}")]),
        Piece(tool_calls=[ToolCallFragment(1, arguments="{}")]),
        Piece(finish_reason="tool_calls"),
    )
    assert kinds(events) == [
        "created", "in_progress", "output_item.added", "function_call_arguments.delta", "output_item.added",
        "function_call_arguments.delta", "function_call_arguments.delta", "function_call_arguments.done",
        "output_item.done", "function_call_arguments.done", "output_item.done", "completed",
    ]  # fmt: skip
    assert [e["output_index"] for e in events if e["type"].endswith("arguments.delta")] == [0, 0, 1]
    first, second = events[-1]["response"]["output"]
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_a", "f", '{"x": 1}')
    assert first["status"] == "completed"
    assert (second["call_id"], second["arguments"]) == ("call_b", "{}")
    assert first["id"].startswith("fc_") and events[7]["arguments"] == '{"x": 1}'


async def test_text_after_a_call_is_a_new_item_and_a_call_without_id_gets_one() -> None:
    events = await run(Piece(tool_calls=[ToolCallFragment(0, name="f")]), Piece(content="done"), Piece())
    call, message = events[-1]["response"]["output"]
    assert call["call_id"].startswith("call_") and message["type"] == "message"


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
async def test_a_cut_answer_is_incomplete(finish: str, reason: str) -> None:
    events = await run(Piece(content="Once upon"), Piece(finish_reason=finish))
    assert events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert (final["status"], final["incomplete_details"]) == ("incomplete", {"reason": reason})


def test_usage_details_and_estimate() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert response_usage(usage, 0) == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 50,
        "output_tokens_details": {"reasoning_tokens": 30},
        "total_tokens": 150,
    }
    deepseek = response_usage({"prompt_tokens": 10, "completion_tokens": 1, "prompt_cache_hit_tokens": 8}, 0)
    assert deepseek["input_tokens_details"]["cached_tokens"] == 8
    assert response_usage(None, 9)["output_tokens"] == 3  # four characters a token, rounded up


async def test_failure_after_the_start() -> None:
    enc = encoder()
    events = await run(Piece(content="Hel"), enc=enc)
    failed = enc.fail(502, "upstream broke off")
    assert [e["sequence_number"] for e in failed] == [len(events)]
    EVENT.validate_python(failed[0])
    response = failed[0]["response"]
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": "upstream broke off"}
    assert response["output"][0]["type"] == "message"
    assert encoder().fail(429, "slow down")[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert kinds(encoder().fail(500, "x")) == ["created", "in_progress", "failed"]


def test_the_request_is_echoed() -> None:
    req = {"instructions": "Be brief.", "tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
           "temperature": 0.5, "store": False, "previous_response_id": "resp_0", "metadata": {"k": "v"},
           "reasoning": {"effort": "low"}, "text": {"verbosity": "low"}, "max_output_tokens": 9}  # fmt: skip
    shell = response_object(req, response_id="resp_1", created_at=5, model="gpt-test")
    assert {key: shell[key] for key in req if key not in ("reasoning", "text")} == {
        key: value for key, value in req.items() if key not in ("reasoning", "text")
    }
    assert shell["reasoning"] == {"effort": "low", "summary": None}
    assert shell["text"] == {"format": {"type": "text"}, "verbosity": "low"}
    Response.model_validate(shell)


async def test_collect() -> None:
    events = response_events(feed(Piece(thinking="hm"), Piece(content="A"), Piece(content="B")), encoder())
    response = await collect_response(events)
    assert response["output_text"] == "AB" and [item["type"] for item in response["output"]] == ["reasoning", "message"]
    Response.model_validate(response)


async def test_collect_without_an_end() -> None:
    async def nothing() -> AsyncIterator[dict[str, Any]]:
        yield {"type": "response.created"}

    with pytest.raises(UpstreamError):
        await collect_response(nothing())
