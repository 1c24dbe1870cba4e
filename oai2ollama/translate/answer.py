"""An upstream answer as dialect-neutral pieces.

Every OpenAI chunk (or a whole non-streamed completion) is read into a `Piece`: text,
reasoning, tool-call fragments, finish reason, usage. The Ollama and Anthropic encoders consume
pieces, so all three dialects share one reading of the upstream's many variants
(`reasoning_content` vs `reasoning`, content as a list of text and thinking parts, choices out of
order, usage on its own chunk, tool calls split across deltas, legacy /completions `text`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterable
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
    logprobs: list[Any] | None = None  # OpenAI chat entries: token, logprob, bytes, top_logprobs


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


def new_call_id() -> str:
    """A fresh id for a call the upstream sent without one, shaped like Ollama's (`call_` + 8)."""
    return "call_" + secrets.token_hex(4)


class ToolCallNumbering:
    """Gives each tool call of one answer its own index, whatever the server sent.

    Servers number calls with `index`, but some omit it (then a new `id` starts a new call and
    id-less fragments continue the last one) and some, Ollama's own /v1 and SGLang among them,
    send `index: 0` for every parallel call, told apart only by their ids.
    """

    __slots__ = ("_by_id", "_by_index", "_last", "_named", "_used")

    def __init__(self) -> None:
        self._by_id: dict[str, int] = {}
        self._by_index: dict[int, int] = {}  # the server's index → ours, for the latest call given it
        self._named: set[int] = set()  # our indices whose call has an id
        self._used: set[int] = set()
        self._last = 0

    def number(self, raw_index: Any, call_id: str, position: int) -> int:
        if call_id and call_id in self._by_id:
            index = self._by_id[call_id]
        elif type(raw_index) is int:
            index = self._by_index.get(raw_index)
            if index is None:
                index = self._fresh() if raw_index in self._used else raw_index
                self._by_index[raw_index] = index
            elif call_id and index in self._named:  # another id at a taken index: a new call
                index = self._by_index[raw_index] = self._fresh()
            if call_id:
                self._by_id[call_id] = index
                self._named.add(index)
        elif call_id:
            index = self._by_id[call_id] = self._fresh()
            self._named.add(index)
        else:
            index = self._last if position == 0 or not self._used else self._fresh()
        self._used.add(index)
        self._last = index
        return index

    def _fresh(self) -> int:
        return max(self._used) + 1 if self._used else 0


def _fragments(raw: Any, numbering: ToolCallNumbering) -> list[ToolCallFragment]:
    fragments = []
    for position, item in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(item, dict):
            continue
        function = item.get("function")
        if not isinstance(function, dict):
            function = {}
        call_id = item.get("id")
        call_id = call_id if isinstance(call_id, str) else ""
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = wire.dumps(arguments).decode()
        name = function.get("name")
        fragments.append(
            ToolCallFragment(
                numbering.number(item.get("index"), call_id, position),
                call_id,
                name if isinstance(name, str) else "",
                arguments or "",
            )
        )
    return fragments


def _legacy_logprobs(logprobs: dict[str, Any]) -> list[Any] | None:
    """/completions logprobs (parallel lists) as chat-style entries."""
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return None
    tops = logprobs.get("top_logprobs") or []
    entries = []
    for position, (token, value) in enumerate(zip(tokens, values, strict=False)):
        entry: dict[str, Any] = {"token": token, "logprob": value}
        top = tops[position] if position < len(tops) else None
        if isinstance(top, dict):
            entry["top_logprobs"] = [{"token": t, "logprob": v} for t, v in top.items()]
        entries.append(entry)
    return entries


def answer_choice(choices: Any) -> dict[str, Any] | None:
    """The choice with `index` 0 (a choice without an index counts as 0), or None.

    Only one answer is asked for, but an upstream may still send several choices (`n` set by a
    gateway's default, best-of sampling) and in any order; the others are not ours to show.
    """
    if type(choices) is not list or not choices:
        return None
    choice = choices[0]
    if type(choice) is dict and not choice.get("index"):
        return choice
    for choice in choices:
        if type(choice) is dict and not choice.get("index"):
            return choice
    return None


def _plain_text(value: Any) -> str:
    """A string, or the text of a list of `text` parts (Mistral nests thinking that way)."""
    if type(value) is str:
        return value
    if type(value) is not list:
        return ""
    texts = []
    for part in value:
        if type(part) is str:
            texts.append(part)
        elif type(part) is dict and type(part.get("text")) is str:
            texts.append(part["text"])
    return "".join(texts)


def content_parts(parts: list[Any]) -> tuple[str, str]:
    """`content` sent as a list of parts: the text of `text` parts, and of `thinking` parts.

    Mistral's Magistral streams `[{"type": "thinking", "thinking": [{"type": "text", "text": …}]},
    {"type": "text", "text": …}]`; others wrap plain text as `[{"type": "text", "text": …}]`.
    Parts of other kinds (Mistral's `reference` citations) carry no text of the answer.
    """
    content: list[str] = []
    thinking: list[str] = []
    for part in parts:
        if type(part) is str:
            content.append(part)
            continue
        if type(part) is not dict:
            continue
        kind = part.get("type")
        if kind in ("text", "output_text"):
            content.append(_plain_text(part.get("text")))
        elif kind in ("thinking", "reasoning"):
            inner = next((part[key] for key in ("thinking", "reasoning", "text") if part.get(key)), "")
            thinking.append(_plain_text(inner))
    return "".join(content), "".join(thinking)


def piece_from_chunk(chunk: dict[str, Any], numbering: ToolCallNumbering | None = None) -> Piece:
    """Read one chat (or legacy completions) chunk, or a whole non-streamed answer.

    `numbering` is the per-answer tool-call numbering; pass the same one for every chunk of a stream.
    """
    usage = chunk.get("usage")
    usage = usage if type(usage) is dict and usage else None
    choice = answer_choice(chunk.get("choices"))
    if choice is None:
        return Piece(usage=usage)
    content = thinking = ""
    calls: list[ToolCallFragment] = []
    delta = choice.get("delta") or choice.get("message")
    if type(delta) is dict:
        value = delta.get("content")
        if value:
            if type(value) is str:
                content = value
            elif type(value) is list:
                content, thinking = content_parts(value)
        value = delta.get("reasoning_content") or delta.get("reasoning")
        if value and type(value) is str:
            thinking += value
        value = delta.get("tool_calls")
        if value:
            calls = _fragments(value, ToolCallNumbering() if numbering is None else numbering)
    else:
        value = choice.get("text")  # legacy /completions
        if value and type(value) is str:
            content = value
    logprobs = choice.get("logprobs")
    if logprobs and type(logprobs) is dict:
        value = logprobs.get("content")
        logprobs = value if type(value) is list else _legacy_logprobs(logprobs)
    else:
        logprobs = None
    return Piece(content, thinking, calls, choice.get("finish_reason") or None, usage, logprobs)


async def pieces(chunks: AsyncIterable[dict[str, Any]]) -> AsyncGenerator[Piece, None]:
    """The pieces of one answer; the chunk source is closed however the iteration ends."""
    numbering = ToolCallNumbering()
    try:
        async for chunk in chunks:
            yield piece_from_chunk(chunk, numbering)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def without_thinking(answer: AsyncIterable[Piece]) -> AsyncGenerator[Piece, None]:
    """`answer` with its reasoning taken out (`exclude_reasoning`): the model still thinks, the
    client is not shown it."""
    try:
        async for piece in answer:
            if piece.thinking:
                piece.thinking = ""
            yield piece
    finally:
        aclose = getattr(answer, "aclose", None)
        if aclose is not None:
            await aclose()


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
        """The calls in index order, numbered from 0; a call the upstream gave no id gets a new one."""
        calls = []
        for position, index in enumerate(sorted(self._calls)):
            call_id, name, arguments = self._calls[index]
            calls.append(ToolCall(position, call_id or new_call_id(), name, "".join(arguments)))
        return calls


def usage_counts(usage: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """Prompt and completion token counts, from OpenAI or Anthropic-style usage."""
    if not usage:
        return None, None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        prompt if type(prompt) is int else None,
        completion if type(completion) is int else None,
    )
