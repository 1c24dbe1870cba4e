"""Upstream answers (as `Piece`s) → OpenAI Responses events, and the non-streamed response
collected from those same events.

The event order is OpenAI's: `response.created` and `response.in_progress`; per output item
`response.output_item.added`, its deltas, and `response.output_item.done`; then
`response.completed` (or `response.incomplete` when the token limit or a content filter cut the
answer) with the whole output and usage. Every event carries a `sequence_number` counting up from 0.

Reasoning becomes a `reasoning` item whose one summary part holds the upstream's reasoning text
(`response.reasoning_summary_text.delta`s, which Codex and Copilot show while the model thinks);
text a `message` item with one `output_text` part; each tool call a `function_call` item whose
arguments stream as the upstream streams them. Reasoning and message items close when the next
item begins; calls stay open until the answer ends, so parallel calls may interleave.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from ..errors import UpstreamError
from .answer import Piece, ToolCallFragment, new_call_id, usage_counts
from .usage import Meter, metered_events

Event = dict[str, Any]
Item = dict[str, Any]
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def response_object(req: dict[str, Any], *, response_id: str, created_at: int, model: str) -> dict[str, Any]:
    """The response as it stands before any output: what the request asked for, echoed."""
    reasoning = req.get("reasoning") if isinstance(req.get("reasoning"), dict) else {}
    text = req.get("text") if isinstance(req.get("text"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": req.get("parallel_tool_calls") is not False,
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, **text},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools") or [],
        "top_p": req.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": req.get("metadata") or {},
    }


def response_usage(usage: dict[str, Any] | None, output_chars: int) -> dict[str, Any]:
    """OpenAI chat usage → Responses usage; without a count, output is estimated at four
    characters per token."""
    usage = usage or {}
    prompt, completion = usage_counts(usage)
    prompt = prompt or 0
    completion = completion if completion is not None else math.ceil(output_chars / 4)
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else usage.get("prompt_cache_hit_tokens")
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
        "total_tokens": prompt + completion,
    }


class ResponseEncoder:
    """The item state machine of one response; each method returns the events it causes."""

    def __init__(self, response: dict[str, Any]):
        self.response = response
        self.sequence = 0
        self.started = False
        self.output: list[Item] = []
        self.texts: dict[int, list[str]] = {}  # output index → the text of a reasoning or message item
        self.open: int | None = None  # the open reasoning or message item
        self.calls: dict[int, int] = {}  # upstream call index → output index, while open
        self.output_chars = 0

    def event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def snapshot(self, **changes: Any) -> dict[str, Any]:
        return {**self.response, "output": [dict(item) for item in self.output], **changes}

    def start(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        created = self.event("response.created", response=self.snapshot())
        return [created, self.event("response.in_progress", response=self.snapshot())]

    def add(self, item: Item) -> tuple[int, Event]:
        self.output.append(item)
        index = len(self.output) - 1
        return index, self.event("response.output_item.added", output_index=index, item=dict(item))

    def close(self) -> list[Event]:
        """Close the open reasoning or message item."""
        index, self.open = self.open, None
        if index is None:
            return []
        item, text = self.output[index], "".join(self.texts.pop(index))
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            events = [
                self.event("response.reasoning_summary_text.done", **where, summary_index=0, text=text),
                self.event("response.reasoning_summary_part.done", **where, summary_index=0, part=part),
            ]
        else:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item.update(status="completed", content=[part])
            events = [
                self.event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]),
                self.event("response.content_part.done", **where, content_index=0, part=part),
            ]
        return [*events, self.event("response.output_item.done", output_index=index, item=dict(item))]

    def text(self, kind: str, text: str) -> list[Event]:
        self.output_chars += len(text)
        events: list[Event] = []
        index = self.open
        if index is None or self.output[index]["type"] != kind:
            events = self.close()
            if kind == "reasoning":
                index, added = self.add({"id": new_id("rs"), "type": "reasoning", "summary": []})
                part = {"type": "summary_text", "text": ""}
                begun = self.event(
                    "response.reasoning_summary_part.added",
                    item_id=self.output[index]["id"],
                    output_index=index,
                    summary_index=0,
                    part=part,
                )
            else:
                item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant"}
                index, added = self.add({**item, "content": []})
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                begun = self.event(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            self.open = index
            self.texts[index] = []
            events += [added, begun]
        self.texts[index].append(text)
        where = {"item_id": self.output[index]["id"], "output_index": index}
        if kind == "reasoning":
            return [*events, self.event("response.reasoning_summary_text.delta", **where, summary_index=0, delta=text)]
        return [*events, self.event("response.output_text.delta", **where, content_index=0, delta=text, logprobs=[])]

    def tool(self, fragment: ToolCallFragment) -> list[Event]:
        events: list[Event] = []
        index = self.calls.get(fragment.index)
        if index is None:
            events = self.close()
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": fragment.id or new_call_id(),
                "name": fragment.name,
            }
            index, added = self.add(item)
            self.calls[fragment.index] = index
            events.append(added)
        item = self.output[index]
        if fragment.name and not item["name"]:
            item["name"] = fragment.name
        if fragment.arguments:
            self.output_chars += len(fragment.arguments)
            item["arguments"] += fragment.arguments
            delta = self.event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=fragment.arguments,
            )
            events.append(delta)
        return events

    def piece(self, piece: Piece) -> list[Event]:
        events = self.start()
        if piece.thinking:
            events += self.text("reasoning", piece.thinking)
        if piece.content:
            events += self.text("message", piece.content)
        for fragment in piece.tool_calls:
            events += self.tool(fragment)
        return events

    def finish(self, finish_reason: str | None, usage: dict[str, Any] | None) -> list[Event]:
        events = [*self.start(), *self.close()]
        for index in sorted(self.calls.values()):
            item = self.output[index]
            item["status"] = "completed"
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            events.append(self.event("response.output_item.done", output_index=index, item=dict(item)))
        self.calls.clear()
        reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
        status = "incomplete" if reason else "completed"
        self.response = self.snapshot(
            status=status,
            incomplete_details={"reason": reason} if reason else None,
            usage=response_usage(usage, self.output_chars),
        )
        return [*events, self.event(f"response.{status}", response=self.response)]

    def fail(self, status: int, message: str) -> list[Event]:
        """A failure after the stream began: the response so far, `failed`, with the error."""
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        failed = self.snapshot(status="failed", error={"code": code, "message": message})
        return [*self.start(), self.event("response.failed", response=failed)]


async def response_events(
    pieces: AsyncIterable[Piece], encoder: ResponseEncoder, meter: Meter | None = None
) -> AsyncIterator[Event]:
    """Responses events for an upstream answer.

    `response.created` goes out with the upstream's first chunk, so an upstream failing before it
    answers anything still gets a real HTTP status; a failure after that is the caller's to turn
    into `encoder.fail(...)`. Once it is over, however it ends, `meter` holds what it used.
    """
    async for event in metered_events(pieces, encoder, meter):
        yield event


async def collect_response(events: AsyncIterable[Event]) -> dict[str, Any]:
    """The non-streamed response: the one the last event carries."""
    final: dict[str, Any] | None = None
    async for event in events:
        if event["type"] in ("response.completed", "response.incomplete"):
            final = event["response"]
    if final is None:
        raise UpstreamError("the upstream's answer ended without finishing the response")
    return with_output_text(final)


def with_output_text(response: dict[str, Any]) -> dict[str, Any]:
    """The response with `output_text`, all its message text, as OpenAI's SDKs compute it."""
    texts = [
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    ]
    return {**response, "output_text": "".join(texts)}
