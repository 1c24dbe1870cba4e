"""Upstream answers (as `Piece`s) → Ollama native answers for /api/chat, /api/generate, /api/embed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Literal

from .answer import Piece, ToolCall, ToolCallAssembler, usage_counts

Kind = Literal["chat", "generate"]


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def done_reason(finish_reason: str | None) -> str:
    # Ollama has no tool-call reason: a turn that ends in tool calls reports "stop".
    return "length" if finish_reason == "length" else "stop"


def _chunk(kind: Kind, model: str, content: str, thinking: str = "") -> dict[str, Any]:
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        return {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
    chunk = {"model": model, "created_at": now_rfc3339(), "response": content, "done": False}
    if thinking:
        chunk["thinking"] = thinking
    return chunk


def native_tool_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "function": {"index": call.index, "name": call.name, "arguments": call.arguments_object()}}


def load_answer(kind: Kind, model: str, *, unload: bool) -> dict[str, Any]:
    """The immediate answer to an empty request, which clients use to load or unload a model."""
    answer = _chunk(kind, model, "")
    answer.update(done=True, done_reason="unload" if unload else "load")
    return answer


async def ollama_chunks(
    pieces: AsyncIterable[Piece],
    *,
    kind: Kind,
    model: str,
    started_ns: int,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> AsyncIterator[dict[str, Any]]:
    """Native NDJSON chunks, content passed on as it arrives, the `done` chunk last.

    Tool calls are emitted whole, one per chunk (Zed reads only the first call of a chunk),
    once the upstream has finished them.
    """
    tools = ToolCallAssembler()
    finish: str | None = None
    usage: dict[str, Any] | None = None
    first_ns = 0
    async for piece in pieces:
        if piece.content or piece.thinking:
            if not first_ns:
                first_ns = clock()
            chunk = _chunk(kind, model, piece.content, piece.thinking)
            if piece.logprobs:
                chunk["logprobs"] = piece.logprobs
            yield chunk
        if piece.tool_calls:
            first_ns = first_ns or clock()
            tools.add(piece.tool_calls)
        if piece.finish_reason:
            finish = piece.finish_reason
        if piece.usage:
            usage = piece.usage
    for call in tools.complete():
        chunk = _chunk(kind, model, "")
        chunk["message"]["tool_calls"] = [native_tool_call(call)]
        yield chunk
    end_ns = clock()
    first_ns = first_ns or end_ns
    final = _chunk(kind, model, "")
    final.update(done=True, done_reason=done_reason(finish))
    if kind == "generate":
        final["context"] = []
    prompt_tokens, completion_tokens = usage_counts(usage)
    final["total_duration"] = max(end_ns - started_ns, 1)
    final["load_duration"] = 0
    if prompt_tokens is not None:
        final["prompt_eval_count"] = prompt_tokens
    final["prompt_eval_duration"] = max(first_ns - started_ns, 1)
    if completion_tokens is not None:
        final["eval_count"] = completion_tokens
    final["eval_duration"] = max(end_ns - first_ns, 1)
    yield final


async def collect(chunks: AsyncIterable[dict[str, Any]], kind: Kind) -> dict[str, Any]:
    """One non-streamed answer from a chunk stream: texts and tool calls joined, metrics from the end."""
    content: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    logprobs: list[Any] = []
    final: dict[str, Any] = {}
    async for chunk in chunks:
        part = chunk["message"] if kind == "chat" else chunk
        content.append(part.get("content", "") if kind == "chat" else part.get("response", ""))
        thinking.append(part.get("thinking", ""))
        tool_calls.extend(part.get("tool_calls", ()))
        logprobs.extend(chunk.get("logprobs", ()))
        final = chunk
    answer = dict(final)
    text, reasoning = "".join(content), "".join(thinking)
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["thinking"] = reasoning
        if tool_calls:
            message["tool_calls"] = tool_calls
        answer["message"] = message
    else:
        answer["response"] = text
        if reasoning:
            answer["thinking"] = reasoning
    if logprobs:
        answer["logprobs"] = logprobs
    return answer


def embed_answer(model: str, response: dict[str, Any], started_ns: int, now_ns: int) -> dict[str, Any]:
    data = sorted(response.get("data") or [], key=lambda item: item.get("index", 0))
    answer: dict[str, Any] = {
        "model": model,
        "embeddings": [item.get("embedding", []) for item in data],
        "total_duration": max(now_ns - started_ns, 1),
        "load_duration": 0,
    }
    prompt_tokens, _ = usage_counts(response.get("usage"))
    if prompt_tokens is not None:
        answer["prompt_eval_count"] = prompt_tokens
    return answer
