"""/api/generate's `context`: the conversation so far, carried by the client between calls.

Ollama returns the token ids of the prompt and answer, which a client sends back as `context`
to continue. Token ids mean nothing to an upstream that speaks chat completions, so the context
here holds the conversation itself: `MAGIC`, then the zlib-compressed compact JSON
`{"system": …, "turns": [[prompt, answer], …]}`, each byte one integer of the list. Clients treat
it as opaque; sent back, its turns become chat history before the new prompt.

It is bounded: the JSON is kept within `CONTEXT_LIMIT` bytes by dropping the oldest turns first
(then the system prompt, should it alone be larger), so a long conversation never grows a
client's request or our answer without end. Images are not kept: their bytes would fill it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..errors import BadRequest

# "o2c" and a format version: tells our contexts from token ids a real Ollama returned.
MAGIC = b"o2c\x01"
# The largest conversation a context holds, as JSON (about 16,000 tokens of English).
CONTEXT_LIMIT = 64 * 1024

_NOT_OURS = (
    "invalid context: it was not returned by this server's /api/generate "
    "(a context from another Ollama holds token ids, which mean nothing here)"
)


@dataclass(frozen=True, slots=True)
class Conversation:
    system: str = ""
    turns: tuple[tuple[str, str], ...] = ()

    def messages(self) -> list[dict[str, Any]]:
        """The conversation as chat messages: the system prompt, then each prompt and answer."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        for prompt, answer in self.turns:
            messages.append({"role": "user", "content": prompt})
            messages.append({"role": "assistant", "content": answer})
        return messages

    def context_after(self, prompt: str, answer: str) -> list[int]:
        """The context to return once `prompt` got `answer`."""
        return encode(Conversation(self.system, (*self.turns, (prompt, answer))))


def conversation(req: dict[str, Any]) -> Conversation:
    """The conversation a /api/generate request continues: its `context`, with its own `system`
    (when it has one) in place of the one kept, as a new system prompt would be on a chat."""
    system = req.get("system")
    if system is not None and not isinstance(system, str):
        raise BadRequest("system must be a string")
    kept = decode(req.get("context"))
    return Conversation(system or kept.system, kept.turns)


def encode(conversation: Conversation) -> list[int]:
    """The context for a conversation, its oldest turns dropped to keep within `CONTEXT_LIMIT`."""
    system, turns = conversation.system, list(conversation.turns)
    while True:
        document = wire.dumps({"system": system, "turns": turns})
        if len(document) <= CONTEXT_LIMIT:
            break
        if turns:
            # Drop the oldest turns whose text covers the excess (their JSON is no shorter than
            # their text), then measure again.
            excess = len(document) - CONTEXT_LIMIT
            while turns and excess > 0:
                prompt, answer = turns.pop(0)
                excess -= len(prompt.encode()) + len(answer.encode())
        else:
            system = ""
    return list(MAGIC + zlib.compress(document, 6))


def decode(context: Any) -> Conversation:
    """The conversation in a context this server returned; `[]` or none is a new one. Anything
    else is a `BadRequest` naming `context`."""
    if context is None or context == []:
        return Conversation()
    if not isinstance(context, list) or not all(type(value) is int for value in context):
        raise BadRequest("context must be a list of integers, as an earlier /api/generate returned it")
    if any(value < 0 or value > 255 for value in context) or len(context) <= len(MAGIC):
        raise BadRequest(_NOT_OURS)
    data = bytes(context)
    if not data.startswith(MAGIC):
        raise BadRequest(_NOT_OURS)
    inflater = zlib.decompressobj()
    try:
        # Bounded, so that a crafted context cannot inflate into gigabytes.
        document = inflater.decompress(data[len(MAGIC) :], CONTEXT_LIMIT + 1)
    except zlib.error:
        raise BadRequest("invalid context: it is damaged (not the data this server wrote)") from None
    if len(document) > CONTEXT_LIMIT or inflater.unconsumed_tail:
        raise BadRequest(f"invalid context: it holds more than {CONTEXT_LIMIT} bytes of conversation")
    if not inflater.eof:
        raise BadRequest("invalid context: it is damaged (cut short)")
    try:
        value = wire.loads(document)
    except wire.InvalidJSON:
        raise BadRequest("invalid context: it is damaged (not the data this server wrote)") from None
    return _conversation(value)


def _conversation(value: Any) -> Conversation:
    system = value.get("system", "") if isinstance(value, dict) else None
    turns = value.get("turns") if isinstance(value, dict) else None
    if not isinstance(system, str) or not isinstance(turns, list):
        raise BadRequest("invalid context: it is damaged (not the data this server wrote)")
    kept: list[tuple[str, str]] = []
    for turn in turns:
        if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(text, str) for text in turn)):
            raise BadRequest("invalid context: it is damaged (not the data this server wrote)")
        kept.append((turn[0], turn[1]))
    return Conversation(system, tuple(kept))
