"""`/v1/messages/count_tokens`: an estimate of a Messages request's input tokens, made here."""

from __future__ import annotations

import math
from typing import Any

from .. import wire
from ..errors import BadRequest
from .anthropic_request import media_source

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600


def _walk(value: Any) -> tuple[int, int]:
    """Characters of text and number of images/files in any part of a request."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, list):
        counts = [_walk(item) for item in value]
        return sum(c for c, _ in counts), sum(m for _, m in counts)
    if not isinstance(value, dict):
        return 0, 0
    kind = value.get("type")
    if kind in ("image", "document"):
        kind, source = media_source(value)
        return _walk(source.get("data")) if kind == "text" else (0, 1)
    if kind == "text":
        return _walk(value.get("text"))
    if kind == "thinking":
        return _walk(value.get("thinking"))
    if kind == "tool_use":
        return len(str(value.get("name", ""))) + len(wire.dumps(value.get("input", {}))), 0
    if kind == "tool_result":
        return _walk(value.get("content"))
    return 0, 0


def estimate_input_tokens(req: dict[str, Any]) -> int:
    """An estimate of the request's input tokens, the same for every model.

    The upstream's tokenizer is unknown (and OpenAI-compatible servers have no counting
    endpoint), so this counts characters and divides by four, the usual rule of thumb for
    English prose and code under GPT- and Claude-style tokenizers, rounding up. Counted: the
    system prompt, every text, thinking and tool-result text block, tool calls (name plus their
    input as compact JSON), and each tool's name, description and input schema (as compact JSON).
    Each image or PDF counts a flat 1,600 tokens, what Anthropic bills for an image of about
    1.15 megapixels (the size larger images are scaled to), since images are not decoded here.
    Role framing and chat-template tokens are not counted, so many short messages come out
    slightly low; prose in languages written without spaces (Chinese, Japanese) comes out
    several times too low.
    """
    messages = req.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("messages: at least one message is required")
    chars, media = _walk([req.get("system"), [m.get("content") for m in messages if isinstance(m, dict)]])
    tools = req.get("tools")
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            described = {key: tool.get(key) for key in ("name", "description", "input_schema") if key in tool}
            chars += len(wire.dumps(described))
    return math.ceil(chars / CHARS_PER_TOKEN) + media * IMAGE_TOKENS
