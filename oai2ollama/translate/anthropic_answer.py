"""Upstream answers (as `Piece`s) → Anthropic Messages events, and the non-streamed message
collected from those same events.

The event order is Anthropic's: `message_start`; per content block `content_block_start`,
`content_block_delta`s, `content_block_stop`, one block open at a time and indices counting
up from 0; then `message_delta` (stop reason, usage) and `message_stop`. Reasoning becomes
`thinking` blocks (with an empty signature: there is nothing to sign), text `text` blocks, and
each tool call a `tool_use` block whose input is passed on as `input_json_delta`s exactly as the
upstream streams the arguments.

Stop reasons: OpenAI's `length` → `max_tokens`; a turn that made tool calls → `tool_use`;
`content_filter` → `refusal`; anything else → `end_turn`. `stop_sequence` is never reported:
OpenAI's `stop` means "a stop string matched" and "the model finished" alike and does not say
which string matched, so claiming `stop_sequence` would be a guess; `stop_sequence` stays null.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from ..errors import UpstreamError
from .answer import Piece, ToolCall, ToolCallFragment
from .usage import Meter, metered_events

Event = dict[str, Any]


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def stop_reason(finish_reason: str | None, used_tools: bool) -> str:
    if finish_reason == "length":
        return "max_tokens"  # checked first: a call cut off by the limit is not a finished tool use
    if used_tools:
        return "tool_use"
    return "refusal" if finish_reason == "content_filter" else "end_turn"


def anthropic_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """OpenAI usage → Anthropic's, where `input_tokens` excludes the tokens read from a cache."""
    if not usage:
        return {}
    out: dict[str, int] = {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else usage.get("prompt_cache_hit_tokens")
    cached = cached if isinstance(cached, int) and cached > 0 else 0
    if isinstance(prompt, int):
        out["input_tokens"] = max(prompt - cached, 0)
        if cached:
            out["cache_read_input_tokens"] = cached
    if isinstance(completion, int):
        out["output_tokens"] = completion
    return out


class _Encoder:
    """The block state machine: which block is open, which tool calls are already closed."""

    def __init__(self, model: str, input_tokens: int, msg_id: str):
        self.model, self.input_tokens, self.msg_id = model, input_tokens, msg_id
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text", "thinking" or "tool"
        self.tool_index: int | None = None  # upstream index of the open tool call
        self.closed_tools: set[int] = set()
        self.used_tools = False
        self.output_chars = 0

    def start(self, usage: dict[str, Any] | None) -> list[Event]:
        if self.started:
            return []
        self.started = True
        counts = anthropic_usage(usage)
        message = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": counts.get("input_tokens", self.input_tokens),
                "output_tokens": 0,
                **(
                    {"cache_read_input_tokens": counts["cache_read_input_tokens"]}
                    if "cache_read_input_tokens" in counts
                    else {}
                ),
            },
        }
        return [{"type": "message_start", "message": message}]

    def close(self) -> list[Event]:
        if self.open is None:
            return []
        if self.tool_index is not None:
            self.closed_tools.add(self.tool_index)
        self.open, self.tool_index = None, None
        return [{"type": "content_block_stop", "index": self.index}]

    def begin(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self.close()
        self.index += 1
        self.open = kind
        return [*events, {"type": "content_block_start", "index": self.index, "content_block": block}]

    def delta(self, delta: dict[str, Any]) -> Event:
        return {"type": "content_block_delta", "index": self.index, "delta": delta}

    def text(self, kind: str, text: str) -> list[Event]:
        self.output_chars += len(text)
        events = [] if self.open == kind else self.begin(kind, _empty_block(kind))
        key = "text" if kind == "text" else "thinking"
        return [*events, self.delta({"type": f"{key}_delta", key: text})]

    def tool(self, fragment: ToolCallFragment) -> list[Event]:
        events: list[Event] = []
        if self.open != "tool" or self.tool_index != fragment.index:
            if fragment.index in self.closed_tools:
                # Anthropic blocks cannot reopen; real servers finish one call before the next.
                raise UpstreamError("upstream interleaved the arguments of parallel tool calls")
            call_id = fragment.id or "toolu_" + secrets.token_hex(12)
            events = self.begin("tool", {"type": "tool_use", "id": call_id, "name": fragment.name, "input": {}})
            self.tool_index = fragment.index
            self.used_tools = True
        if fragment.arguments:
            self.output_chars += len(fragment.arguments)
            events.append(self.delta({"type": "input_json_delta", "partial_json": fragment.arguments}))
        return events

    def piece(self, piece: Piece) -> list[Event]:
        events = self.start(piece.usage)
        if piece.thinking:
            events += self.text("thinking", piece.thinking)
        if piece.content:
            events += self.text("text", piece.content)
        for fragment in piece.tool_calls:
            events += self.tool(fragment)
        return events

    def finish(self, finish_reason: str | None, usage: dict[str, Any] | None) -> list[Event]:
        events = [*self.start(usage), *self.close()]
        counts = anthropic_usage(usage)
        counts.setdefault("output_tokens", math.ceil(self.output_chars / 4))
        delta = {"stop_reason": stop_reason(finish_reason, self.used_tools), "stop_sequence": None}
        events.append({"type": "message_delta", "delta": delta, "usage": counts})
        events.append({"type": "message_stop"})
        return events


def _empty_block(kind: str) -> dict[str, Any]:
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "text", "text": ""}


async def message_events(
    pieces: AsyncIterable[Piece],
    *,
    model: str,
    input_tokens: int,
    msg_id: str | None = None,
    meter: Meter | None = None,
) -> AsyncIterator[Event]:
    """Anthropic stream events for an upstream answer.

    `message_start` goes out with the upstream's first chunk (so an upstream failing before it
    answers anything still gets a real HTTP status); its `input_tokens` is the upstream's count
    if that chunk carries usage, else the caller's estimate. The real counts, which OpenAI
    servers send last, arrive in `message_delta`; without them `output_tokens` is estimated
    at four characters per token. Once it is over, however it ends, `meter` holds what it used.
    """
    encoder = _Encoder(model, input_tokens, msg_id or message_id())
    async for event in metered_events(pieces, encoder, meter):
        yield event


async def collect_message(events: AsyncIterable[Event]) -> dict[str, Any]:
    """The non-streamed message: the stream's events folded into one object."""
    message: dict[str, Any] = {}
    content: list[dict[str, Any]] = []
    arguments: dict[int, list[str]] = {}
    async for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = {**event["message"], "usage": dict(event["message"]["usage"])}
        elif kind == "content_block_start":
            content.append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = content[event["index"]], event["delta"]
            if delta["type"] == "input_json_delta":
                arguments.setdefault(event["index"], []).append(delta["partial_json"])
            else:
                key = "text" if delta["type"] == "text_delta" else "thinking"
                block[key] += delta[key]
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"].update(event["usage"])
    for index, parts in arguments.items():
        content[index]["input"] = ToolCall(index, "", "", "".join(parts)).arguments_object()
    message["content"] = content
    return message
