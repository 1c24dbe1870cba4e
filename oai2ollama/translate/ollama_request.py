"""Ollama native requests (/api/chat, /api/generate, /api/embed) → OpenAI upstream requests.

Every invalid field is a `BadRequest` naming that field. Fields with no OpenAI meaning
(`keep_alive`, `truncate`, `shift`, load-time options such as `num_ctx`) are dropped.
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..errors import BadRequest
from .answer import stable_call_id
from .generate_context import Conversation
from .generate_context import conversation as conversation_of
from .images import image_url
from .ollama_options import apply_format, apply_logprobs, apply_options, apply_think


def _common(req: dict[str, Any], body: dict[str, Any], capabilities: frozenset[str], *, legacy: bool = False) -> None:
    apply_options(req.get("options"), body)
    # Open WebUI sends num_predict at the top level as well.
    top_level = req.get("num_predict")
    if isinstance(top_level, int) and not isinstance(top_level, bool) and top_level > 0 and "max_tokens" not in body:
        body["max_tokens"] = top_level
    apply_format(req.get("format"), body)
    if legacy:
        apply_think(req.get("think"), {}, capabilities)  # validated, but /completions has no such knob
    else:
        apply_think(req.get("think"), body, capabilities)
    apply_logprobs(req, body, legacy=legacy)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}


def _user_content(text: str, images: Any, where: str) -> Any:
    """Text alone, or text and image parts; `where` names the images field in errors."""
    if not images:
        return text
    if not isinstance(images, list):
        raise BadRequest(f"{where} must be a list of base64 strings")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    parts += [
        {"type": "image_url", "image_url": {"url": image_url(image, f"{where}[{position}]")}}
        for position, image in enumerate(images)
    ]
    return parts


def _tool_calls(calls: Any, turn: int, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise BadRequest(f"{where}.tool_calls must be a list")
    converted = []
    for position, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"{where}.tool_calls[{position}].function.name must be a string")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, str):
            arguments = wire.dumps(arguments).decode()
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = stable_call_id(turn, position, function["name"])
        converted.append(
            {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}
        )
    return converted


def chat_messages(messages: Any) -> list[dict[str, Any]]:
    """Native messages → OpenAI messages.

    Assistant `thinking` goes back as `reasoning_content`. Tool results are paired with their
    call by `tool_call_id`, else by `tool_name`, else by order, because ollama-python and Zed send
    only the name, Continue and Home Assistant neither, and OpenAI requires the id. Images of tool
    results (the Ollama VS Code extension sends them) follow the turn's results in a user message.
    """
    if not isinstance(messages, list):
        raise BadRequest("messages must be a list")
    converted: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not yet answered
    media: list[dict[str, Any]] = []  # images of the current run of tool results
    for turn, message in enumerate(messages):
        where = f"messages[{turn}]"
        if not isinstance(message, dict):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise BadRequest(f"{where}.role must be a string")
        role = role.lower()
        if media and role != "tool":
            converted.append(_tool_media_message(media))
            media = []
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str | list):
            raise BadRequest(f"{where}.content must be a string")
        out: dict[str, Any] = {"role": role}
        if role == "assistant":
            out["content"] = content
            thinking = message.get("thinking")
            if thinking and isinstance(thinking, str):
                out["reasoning_content"] = thinking
            if message.get("tool_calls"):
                out["tool_calls"] = _tool_calls(message["tool_calls"], turn, where)
                named = _ids_named_by_results(messages, turn + 1)
                # Calls a later result names by id are kept for it; the others are paired in order.
                pending = sorted(
                    ((c["id"], c["function"]["name"]) for c in out["tool_calls"]), key=lambda call: call[0] in named
                )
                if not content:
                    out["content"] = None  # what OpenAI itself sends beside tool calls
        elif role == "tool":
            out["content"] = content
            out["tool_call_id"] = _pair_tool_result(message, pending, turn)
            images = _user_content("", message.get("images"), f"{where}.images")
            if isinstance(images, list):
                media += images
        else:
            out["content"] = (
                content
                if isinstance(content, list)
                else _user_content(content, message.get("images"), f"{where}.images")
            )
        converted.append(out)
    if media:
        converted.append(_tool_media_message(media))
    return converted


def _tool_media_message(images: list[dict[str, Any]]) -> dict[str, Any]:
    # Chat tool messages carry text only, and a user message between the results of one turn's
    # calls breaks their pairing: a tool result's images follow the turn's results instead.
    note = {"type": "text", "text": "[images from the tool results above]"}
    return {"role": "user", "content": [note, *images]}


def _ids_named_by_results(messages: list[Any], start: int) -> set[str]:
    """The `tool_call_id`s named by the run of tool results starting at `start`."""
    named: set[str] = set()
    for message in messages[start:]:
        if not isinstance(message, dict) or str(message.get("role", "")).lower() != "tool":
            break
        if isinstance(message.get("tool_call_id"), str):
            named.add(message["tool_call_id"])
    return named


def _pair_tool_result(message: dict[str, Any], pending: list[tuple[str, str]], turn: int) -> str:
    call_id = message.get("tool_call_id")
    call_id = call_id if isinstance(call_id, str) else ""
    name = message.get("tool_name") or message.get("name")
    for position, (pending_id, pending_name) in enumerate(pending):
        if (call_id and pending_id == call_id) or (not call_id and (not name or pending_name == name)):
            del pending[position]
            return pending_id
    if call_id:
        return call_id
    if pending:
        return pending.pop(0)[0]
    return stable_call_id(turn, 0, name or "tool")


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    """Native tools have OpenAI's shape; an empty list (ollama-python sends one) is dropped."""
    if tools is None or tools == []:
        return None
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise BadRequest("tools must be a list of objects")
    return [tool if "type" in tool else {"type": "function", **tool} for tool in tools]


def chat_request(req: dict[str, Any], *, upstream_model: str, capabilities: frozenset[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": upstream_model, "messages": chat_messages(req.get("messages"))}
    tools = _tools(req.get("tools"))
    if tools:
        body["tools"] = tools
    _common(req, body, capabilities)
    return body


def uses_completions(req: dict[str, Any]) -> bool:
    """Fill-in-the-middle and raw prompts go to the upstream's legacy /completions."""
    return bool(req.get("suffix")) or req.get("raw") is True


def generate_prompt(req: dict[str, Any]) -> str:
    prompt = req.get("prompt")
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    return prompt


def generate_request(
    req: dict[str, Any],
    *,
    upstream_model: str,
    capabilities: frozenset[str],
    conversation: Conversation | None = None,
) -> dict[str, Any]:
    """A prompt (with `system` and `images`) becomes a chat turn after the conversation its
    `context` carries (`conversation`, when the caller has read it already); `suffix` or `raw`
    a /completions body, which takes no context."""
    prompt = generate_prompt(req)
    body: dict[str, Any] = {"model": upstream_model}
    legacy = uses_completions(req)
    if legacy:
        if req.get("context"):
            # Ollama refuses it too: the prompt is sent exactly as given, with nothing before it.
            mode = "in raw mode" if req.get("raw") is True else "with suffix (fill-in-the-middle)"
            raise BadRequest(f"context is not supported {mode}")
        suffix = req.get("suffix")
        if suffix is not None and not isinstance(suffix, str):
            raise BadRequest("suffix must be a string")
        body["prompt"] = prompt
        if suffix:
            body["suffix"] = suffix
    else:
        if conversation is None:
            conversation = conversation_of(req)
        messages = conversation.messages()
        messages.append({"role": "user", "content": _user_content(prompt, req.get("images"), "images")})
        body["messages"] = messages
    _common(req, body, capabilities, legacy=legacy)
    return body


def embed_inputs(req: dict[str, Any], field: str) -> list[str]:
    """`input` (a string or a list of strings) as a list; empty means nothing to embed."""
    value = req.get(field)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise BadRequest(f"invalid {field} type: expected a string or a list of strings")


def embed_request(inputs: list[str], *, upstream_model: str, dimensions: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": upstream_model, "input": inputs, "encoding_format": "float"}
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions <= 0:
            raise BadRequest("dimensions must be a positive integer")
        body["dimensions"] = dimensions
    return body
