"""Anthropic Messages requests (/v1/messages) → OpenAI chat-completions requests, and the
input-token estimate behind /v1/messages/count_tokens.

Lossy or chosen on purpose (the rest maps one to one):
- `system` text blocks and the text blocks of one message are joined with a blank line, because
  several OpenAI-compatible servers accept only string content for text-only messages;
- `tool_result` blocks become `tool` messages placed before the rest of their user turn (OpenAI
  requires them right after the assistant's calls); images inside a tool result move into the
  user message that follows, since OpenAI tool messages carry text only; `is_error` becomes an
  `Error: ` prefix on the result text;
- `thinking` blocks of earlier assistant turns go to `reasoning_content`, never into the visible
  content; `redacted_thinking` is dropped; signatures and `cache_control` are ignored;
- `thinking.budget_tokens` becomes a `reasoning_effort` (see `reasoning_effort`);
- `metadata`, `anthropic-beta` features and unknown fields are ignored; server tools
  (`web_search_…`, `code_execution_…`) cannot run here and are refused.
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..errors import BadRequest
from .fields import objects, text_of

# Budgets are Claude Code's: "think" 4,000, "think hard" 10,000, "ultrathink" 31,999 tokens.
LOW_BUDGET_BELOW = 4096
MEDIUM_BUDGET_BELOW = 16384
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def reasoning_effort(budget_tokens: int) -> str:
    """Thinking budget → OpenAI effort: below 4,096 tokens `low`, below 16,384 `medium`, else `high`."""
    if budget_tokens < LOW_BUDGET_BELOW:
        return "low"
    return "medium" if budget_tokens < MEDIUM_BUDGET_BELOW else "high"


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content as a list of blocks; a string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return objects(content, f"{where}: content must be a string or a list of content blocks")


def _text(block: dict[str, Any], where: str) -> str:
    return text_of(block, where, "text block")


def _system(system: Any) -> str:
    if system is None:
        return ""
    return "\n\n".join(
        _text(block, f"system[{n}]") for n, block in enumerate(_blocks(system, "system")) if block.get("type") == "text"
    )


def media_source(block: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    source = block.get("source")
    return (source.get("type"), source) if isinstance(source, dict) else (None, {})


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind, source = media_source(block)
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{source['data']}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise BadRequest(f"{where}: image source type {kind!r} is not supported (use base64 or url)")


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind, source = media_source(block)
    data, title = source.get("data"), block.get("title")
    if kind == "text" and isinstance(data, str):
        return {"type": "text", "text": f"{title}\n\n{data}" if title else data}
    if kind == "base64" and isinstance(data, str) and source.get("media_type") == "application/pdf":
        pdf = {"filename": title or "document.pdf", "file_data": f"data:application/pdf;base64,{data}"}
        return {"type": "file", "file": pdf}
    raise BadRequest(f"{where}: document source {kind!r} is not supported (use text or a base64 PDF)")


def _user_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _text(block, where)}
    if kind == "image":
        return _image(block, where)
    if kind == "document":
        return _document(block, where)
    raise BadRequest(f"{where}: content block type {kind!r} is not supported in this position")


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string; anything with images or files as content parts."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One `tool` message, and the images of the result, which must travel in a user message."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}: tool_result needs `tool_use_id`")
    content = block.get("content")
    parts = [] if content is None else [_user_part(b, f"{where}.content") for b in _blocks(content, where)]
    texts = [part["text"] for part in parts if part["type"] == "text"]
    media = [part for part in parts if part["type"] != "text"]
    if media:
        texts.append(f"[{len(media)} attachment(s) of this result follow in the next user message]")
    text = "\n\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, media


def _user_turn(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for n, block in enumerate(blocks):
        if block.get("type") == "tool_result":
            message, media = _tool_result(block, f"{where}.content[{n}]")
            results.append(message)
            parts += media
        else:
            parts.append(_user_part(block, f"{where}.content[{n}]"))
    if parts:
        results.append({"role": "user", "content": _content(parts)})
    return results


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise BadRequest(f"{where}: tool_use needs `id` and `name`")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": wire.dumps(arguments).decode()}}


def _assistant_turn(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for n, block in enumerate(blocks):
        kind, here = block.get("type"), f"{where}.content[{n}]"
        if kind == "text":
            texts.append(_text(block, here))
        elif kind == "thinking":
            if isinstance(block.get("thinking"), str) and block["thinking"]:
                thinking.append(block["thinking"])
        elif kind == "tool_use":
            calls.append(_tool_call(block, here))
        elif kind != "redacted_thinking":  # encrypted for Anthropic's models only
            raise BadRequest(f"{here}: content block type {kind!r} is not supported in an assistant turn")
    text = "\n\n".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if thinking:
        message["reasoning_content"] = "\n\n".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(req: dict[str, Any]) -> list[dict[str, Any]]:
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    system = _system(req.get("system"))
    converted: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for turn, message in enumerate(messages):
        where = f"messages[{turn}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}.role must be 'user' or 'assistant'")
        blocks = _blocks(message.get("content"), f"{where}.content")
        if role == "user":
            converted += _user_turn(blocks, where)
        else:
            converted.append(_assistant_turn(blocks, where))
    return converted


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    converted = []
    for n, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools[{n}] needs a `name`")
        kind = tool.get("type")
        if kind not in (None, "custom") and "input_schema" not in tool:
            raise BadRequest(f"tools[{n}]: server tool {kind!r} cannot run here; only tools with input_schema can")
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = schema if isinstance(schema, dict) else dict(EMPTY_SCHEMA)
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: Any, body: dict[str, Any]) -> None:
    """auto → auto, any → required, tool → that function, none → none; parallel use kept or not."""
    if choice is None or "tools" not in body:
        return  # OpenAI refuses tool_choice and parallel_tool_calls without tools
    kind = choice.get("type") if isinstance(choice, dict) else choice
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(kind, str) and kind in _TOOL_CHOICES:
        body["tool_choice"] = _TOOL_CHOICES[kind]
    else:
        raise BadRequest("tool_choice.type must be auto, any, tool (with a name) or none")
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and kind != "none":
        body["parallel_tool_calls"] = False


def _thinking(req: dict[str, Any], body: dict[str, Any]) -> None:
    thinking = req.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if thinking is not None and kind not in ("enabled", "adaptive", "disabled"):
        raise BadRequest("thinking.type must be enabled, adaptive or disabled")
    if kind == "disabled":
        return  # the upstream's default; not every server understands an effort of "none"
    if kind == "enabled" and isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise BadRequest("thinking.budget_tokens must be a positive integer")
        body["reasoning_effort"] = reasoning_effort(budget)
        return
    config = req.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if isinstance(effort, str) and effort in _EFFORTS:
        body["reasoning_effort"] = _EFFORTS[effort]


def _sampling(req: dict[str, Any], body: dict[str, Any]) -> None:
    max_tokens = req.get("max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens must be a positive integer")
    body["max_tokens"] = max_tokens
    for name in ("temperature", "top_p", "top_k"):  # top_k: a vLLM/llama.cpp extra, as on /api/chat
        if isinstance(req.get(name), int | float) and not isinstance(req[name], bool):
            body[name] = req[name]
    stop = req.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("stop_sequences must be a list of strings")
        if stop:
            body["stop"] = stop


def messages_request(req: dict[str, Any], *, upstream_model: str) -> dict[str, Any]:
    """The OpenAI chat-completions body for an Anthropic Messages request; the upstream is always
    asked to stream, with usage, whatever the client asked (one pipeline serves both)."""
    body: dict[str, Any] = {"model": upstream_model, "messages": chat_messages(req)}
    _sampling(req, body)
    if req.get("tools"):
        body["tools"] = _tools(req["tools"])
    _tool_choice(req.get("tool_choice"), body)
    _thinking(req, body)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body
