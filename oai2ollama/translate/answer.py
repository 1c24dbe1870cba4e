"""An upstream answer as dialect-neutral pieces.

Every OpenAI chunk (or a whole non-streamed completion) is read into a `Piece`: text,
reasoning, tool-call fragments, finish reason, usage. The Ollama and Anthropic encoders consume
pieces, so all three dialects share one reading of the upstream's many variants
(`reasoning_content` vs `reasoning`, usage on its own chunk, tool calls split across deltas).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .. import wire


@dataclass(slots=True)
class ToolCallFragment:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class Piece:
    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCallFragment] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    logprobs: list[Any] | None = None


@dataclass(slots=True)
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str

    def arguments_object(self) -> dict[str, Any]:
        """Arguments as an object; an unparseable string is kept under `_raw` rather than lost."""
        if not self.arguments.strip():
            return {}
        try:
            value = wire.loads(self.arguments)
        except wire.InvalidJSON:
            return {"_raw": self.arguments}
        return value if isinstance(value, dict) else {"_value": value}


def stable_call_id(*parts: object) -> str:
    """A `call_` id derived from where a call stands, so a replayed history gets the same ids."""
    digest = hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()
    return "call_" + digest[:8]


def _fragments(raw: Any, known: dict[str, int]) -> list[ToolCallFragment]:
    fragments = []
    for position, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict):
            continue
        function = item.get("function") or {}
        call_id = item.get("id") or ""
        index = item.get("index")
        if not isinstance(index, int):
            # Some servers omit `index`: a new id starts a new call, otherwise it continues one.
            index = known.setdefault(call_id, len(known)) if call_id else max(known.values(), default=position)
        elif call_id:
            known.setdefault(call_id, index)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = wire.dumps(arguments).decode()
        fragments.append(ToolCallFragment(index, call_id, function.get("name") or "", arguments or ""))
    return fragments


def _reasoning(source: dict[str, Any]) -> str:
    value = source.get("reasoning_content") or source.get("reasoning") or ""
    return value if isinstance(value, str) else ""


def piece_from_chunk(chunk: dict[str, Any], known_ids: dict[str, int] | None = None) -> Piece:
    """Read one chat (or legacy completions) chunk, or a whole non-streamed answer."""
    piece = Piece(usage=chunk.get("usage") or None)
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        return piece
    choice = choices[0]
    delta = choice.get("delta") or choice.get("message") or {}
    if isinstance(delta, dict):
        content = delta.get("content")
        piece.content = content if isinstance(content, str) else ""
        piece.thinking = _reasoning(delta)
        if delta.get("tool_calls"):
            piece.tool_calls = _fragments(delta["tool_calls"], {} if known_ids is None else known_ids)
    text = choice.get("text")
    if isinstance(text, str):
        piece.content += text
    piece.finish_reason = choice.get("finish_reason") or None
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        piece.logprobs = logprobs["content"]
    return piece


async def pieces(chunks: AsyncIterable[dict[str, Any]]) -> AsyncIterator[Piece]:
    known_ids: dict[str, int] = {}
    async for chunk in chunks:
        yield piece_from_chunk(chunk, known_ids)


class ToolCallAssembler:
    """Accumulates tool-call fragments per index until the calls are complete."""

    def __init__(self) -> None:
        self._calls: dict[int, list[Any]] = {}

    def add(self, fragments: list[ToolCallFragment]) -> None:
        for fragment in fragments:
            call = self._calls.get(fragment.index)
            if call is None:
                self._calls[fragment.index] = [fragment.id, fragment.name, [fragment.arguments]]
                continue
            if fragment.id and not call[0]:
                call[0] = fragment.id
            if fragment.name and not call[1]:
                call[1] = fragment.name
            call[2].append(fragment.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def complete(self) -> list[ToolCall]:
        calls = []
        for position, index in enumerate(sorted(self._calls)):
            call_id, name, arguments = self._calls[index]
            calls.append(
                ToolCall(position, call_id or stable_call_id("answer", position, name), name, "".join(arguments))
            )
        return calls


def usage_counts(usage: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """Prompt and completion token counts, from OpenAI or Anthropic-style usage."""
    if not usage:
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)
