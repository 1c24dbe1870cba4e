"""Upstream answers (as `Piece`s) → Ollama native answers for /api/chat, /api/generate, /api/embed.

`OllamaEncoder` holds the state of one answer. `ollama_lines` (NDJSON bytes, streamed) and
`collect_batches` (one object, not streamed) drive it from upstream chunk batches (see
`openai_chunk_batches`), reading chunks into pieces in the same loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from typing import Any, Literal

from .. import wire
from ..errors import UpstreamError
from .answer import Piece, ToolCall, ToolCallAssembler, ToolCallNumbering, piece_from_chunk, usage_counts
from .usage import Meter

Kind = Literal["chat", "generate"]

_second = -1
_second_text = ""


def now_rfc3339() -> str:
    """The current UTC time as Ollama writes it, e.g. `2025-10-17T23:14:07.414671Z`.

    Every streamed chunk carries one, so the formatted second is reused until it changes.
    """
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1_000_000):06d}Z"


def ndjson_lines(items: list[Any]) -> bytes:
    """NDJSON for `items`, each line ended by LF (`wire.dumps` escapes the Unicode line breaks)."""
    dumps = wire.dumps
    return b"\n".join([dumps(item) for item in items]) + b"\n"


def ndjson_line(obj: Any) -> bytes:
    return ndjson_lines([obj])


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


class OllamaEncoder:
    """One native answer being written: `feed` it pieces as they come, then take `finish`.

    Content, thinking and logprobs pass on as they arrive, one chunk per piece. Tool calls are
    emitted whole, one per chunk (Zed reads only the first call of a chunk), once the upstream
    has finished them. Counts come from the upstream's usage, durations from `clock`
    (nanoseconds): prompt evaluation lasts until the first output arrives. A generate answer's
    `context` is `context_after(answer text)` (see `generate_context`), or empty without it. With
    `thinking` false (`exclude_reasoning`) the model's thinking is left out.
    """

    __slots__ = (
        "_chat",
        "_clock",
        "_context_after",
        "_first_ns",
        "_kind",
        "_model",
        "_started_ns",
        "_text",
        "_thinking",
        "_tools",
        "created_at",
        "finish_reason",
        "kind",
        "output_chars",
        "usage",
    )

    def __init__(
        self,
        kind: Kind,
        model: str,
        started_ns: int,
        clock: Callable[[], int] = time.perf_counter_ns,
        context_after: Callable[[str], list[int]] | None = None,
        *,
        thinking: bool = True,
    ):
        self._kind: Kind = kind
        self.kind: Kind = kind
        self._thinking = thinking
        self._chat = kind == "chat"
        self._model = model
        self._started_ns = started_ns
        self._clock = clock
        self._context_after = None if self._chat else context_after
        self._text: list[str] = []  # the answer's text, kept only to return it in `context`
        self._first_ns = 0
        self._tools = ToolCallAssembler()
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.output_chars = 0  # for an estimate of the output when the upstream sends no usage
        # The time the chunks being fed arrived; the caller refreshes it per upstream read.
        self.created_at = now_rfc3339()

    def feed(self, piece: Piece) -> dict[str, Any] | None:
        if piece.tool_calls:
            self._first_ns = self._first_ns or self._clock()
            self._tools.add(piece.tool_calls)
            self.output_chars += sum(len(fragment.arguments) for fragment in piece.tool_calls)
        if piece.finish_reason:
            self.finish_reason = piece.finish_reason
        if piece.usage:
            self.usage = piece.usage
        content = piece.content
        # Hidden thinking was still generated: it counts towards the output.
        self.output_chars += len(content) + len(piece.thinking)
        thinking = piece.thinking if self._thinking else ""
        if not (content or thinking or piece.logprobs):
            return None
        if not self._first_ns:
            self._first_ns = self._clock()
        if self._context_after is not None and content:
            self._text.append(content)
        if self._chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            chunk = {"model": self._model, "created_at": self.created_at, "message": message, "done": False}
        else:
            chunk = {"model": self._model, "created_at": self.created_at, "response": content, "done": False}
            if thinking:
                chunk["thinking"] = thinking
        if piece.logprobs:
            chunk["logprobs"] = piece.logprobs
        return chunk

    def finish(self) -> list[dict[str, Any]]:
        """The completed tool calls, one chunk each, then the `done` chunk with the metrics."""
        chunks = []
        for call in self._tools.complete():
            chunk = _chunk(self._kind, self._model, "")
            (chunk["message"] if self._chat else chunk)["tool_calls"] = [native_tool_call(call)]
            chunks.append(chunk)
        end_ns = self._clock()
        first_ns = self._first_ns or end_ns
        final = _chunk(self._kind, self._model, "")
        final["done"] = True
        final["done_reason"] = done_reason(self.finish_reason)
        if not self._chat:
            final["context"] = [] if self._context_after is None else self._context_after("".join(self._text))
        prompt_tokens, completion_tokens = usage_counts(self.usage)
        final["total_duration"] = max(end_ns - self._started_ns, 1)
        final["load_duration"] = 0
        if prompt_tokens is not None:
            final["prompt_eval_count"] = prompt_tokens
        final["prompt_eval_duration"] = max(first_ns - self._started_ns, 1)
        if completion_tokens is not None:
            final["eval_count"] = completion_tokens
        final["eval_duration"] = max(end_ns - first_ns, 1)
        chunks.append(final)
        return chunks


async def _native_batches(
    batches: AsyncIterable[list[dict[str, Any]]], encoder: OllamaEncoder, meter: Meter | None
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Native chunks per upstream batch (batches that make none are skipped), then the closing
    ones. The batches are closed however it ends, and `meter` then holds what the answer used."""
    numbering = ToolCallNumbering()
    try:
        async for batch in batches:
            encoder.created_at = now_rfc3339()
            chunks = [chunk for item in batch if (chunk := encoder.feed(piece_from_chunk(item, numbering))) is not None]
            if chunks:
                yield chunks
    finally:
        _metered(encoder, meter)
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()
    yield encoder.finish()


async def ollama_lines(
    batches: AsyncIterable[list[dict[str, Any]]], encoder: OllamaEncoder, meter: Meter | None = None
) -> AsyncGenerator[bytes, None]:
    """NDJSON for upstream chunk batches (see `openai_chunk_batches`): one write per batch.

    The streamed route's hot path: chunks, pieces and native chunks are read in one loop per
    upstream read rather than through one async stage each.
    """
    native = _native_batches(batches, encoder, meter)
    try:
        async for chunks in native:
            yield ndjson_lines(chunks)
    finally:
        await native.aclose()


async def collect_batches(
    batches: AsyncIterable[list[dict[str, Any]]], encoder: OllamaEncoder, meter: Meter | None = None
) -> dict[str, Any]:
    """The non-streamed answer to the upstream chunk batches that `ollama_lines` would stream."""
    native = _native_batches(batches, encoder, meter)
    try:
        chunks = [chunk async for group in native for chunk in group]
    finally:
        await native.aclose()
    answer = joined(chunks, encoder.kind)
    answer["created_at"] = now_rfc3339()
    return answer


def _metered(encoder: OllamaEncoder, meter: Meter | None) -> None:
    if meter is not None:
        meter.usage, meter.output_chars = encoder.usage, encoder.output_chars


def joined(chunks: list[dict[str, Any]], kind: Kind) -> dict[str, Any]:
    """Streamed chunks as one answer: texts, tool calls and logprobs joined, the rest (done_reason,
    metrics) from the final chunk."""
    content: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    logprobs: list[Any] = []
    text_key = "content" if kind == "chat" else "response"
    for chunk in chunks:
        part = chunk["message"] if kind == "chat" else chunk
        content.append(part.get(text_key, ""))
        thinking.append(part.get("thinking", ""))
        tool_calls.extend(part.get("tool_calls", ()))
        logprobs.extend(chunk.get("logprobs", ()))
    answer = dict(chunks[-1]) if chunks else {}
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
        if tool_calls:
            answer["tool_calls"] = tool_calls
    if logprobs:
        answer["logprobs"] = logprobs
    return answer


def embed_answer(model: str, response: Any, *, count: int, host: str, started_ns: int, now_ns: int) -> dict[str, Any]:
    """/api/embed's answer from an OpenAI /embeddings answer: one vector per input, in input order."""
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no"
        raise UpstreamError(f"upstream {host} returned {got} embeddings for {count} inputs")
    if not all(isinstance(item, dict) and isinstance(item.get("embedding"), list) for item in data):
        raise UpstreamError(f"upstream {host} returned embeddings that are not lists of numbers")
    data = sorted(data, key=lambda item: item.get("index", 0))
    answer: dict[str, Any] = {
        "model": model,
        "embeddings": [item["embedding"] for item in data],
        "total_duration": max(now_ns - started_ns, 1),
        "load_duration": 0,
    }
    prompt_tokens, _ = usage_counts(response.get("usage"))
    if prompt_tokens is not None:
        answer["prompt_eval_count"] = prompt_tokens
    return answer
