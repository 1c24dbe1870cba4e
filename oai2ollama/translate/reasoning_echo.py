"""Upstream reasoning where editors read it, on relayed `/v1/chat/completions` streams.

DeepSeek, vLLM and llama.cpp stream reasoning as `delta.reasoning_content`, OpenRouter and Ollama
as `delta.reasoning`; Copilot's chat providers read `delta.reasoning_text` (then `thinking`, then
`cot_summary`), so their users saw nothing. Each event that carries reasoning gets the same text as
`reasoning_text` beside the upstream's field. A stream without reasoning passes byte for byte:
models reason before they answer, so a stream whose first `_WATCH` bytes carried no reasoning is
not searched any more; before that, each read costs one search for `"reasoning`.
"""

from __future__ import annotations

from typing import Any

from .. import wire

_MARK = b'"reasoning'
_FIELDS = ("reasoning_content", "reasoning")
_WATCH = 8 * 1024


class ReasoningEcho:
    """Feed the relayed reads in order; `close` gives back a last line the stream left unended."""

    __slots__ = ("_off", "_seen", "_tail", "_watched")

    def __init__(self) -> None:
        # An unended last line is held back until its end arrives: the field name may be split
        # across two reads, and an event is only rewritten whole.
        self._tail = b""
        self._watched = 0
        self._seen = False  # reasoning came: watch to the end
        self._off = False

    def feed(self, chunk: bytes) -> bytes:
        if self._off:
            return chunk
        if self._tail:
            chunk, self._tail = self._tail + chunk, b""
        if not self._seen and self._watched >= _WATCH:
            self._off = True  # no reasoning up front: the rest is relayed as it comes
            return chunk
        self._watched += len(chunk)
        if not chunk.endswith(b"\n"):
            cut = chunk.rfind(b"\n") + 1
            chunk, self._tail = chunk[:cut], chunk[cut:]
        if _MARK not in chunk:
            return chunk
        self._seen = True
        return b"\n".join(_echoed(line) if _MARK in line else line for line in chunk.split(b"\n"))

    def close(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail


def _echoed(line: bytes) -> bytes:
    """A `data:` line whose chunk's deltas carry reasoning, with `reasoning_text` added."""
    prefix = b"data: " if line.startswith(b"data: ") else b"data:" if line.startswith(b"data:") else None
    if prefix is None:
        return line
    body = line[len(prefix) :]
    try:
        chunk = wire.loads(body)
    except wire.InvalidJSON:
        return line
    if not _add_reasoning_text(chunk):
        return line
    return prefix + wire.dumps(chunk) + (b"\r" if line.endswith(b"\r") else b"")


def _add_reasoning_text(chunk: Any) -> bool:
    changed = False
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict) or "reasoning_text" in delta:
            continue
        text = next((delta[name] for name in _FIELDS if isinstance(delta.get(name), str) and delta[name]), None)
        if text is not None:
            delta["reasoning_text"] = text
            changed = True
    return changed
