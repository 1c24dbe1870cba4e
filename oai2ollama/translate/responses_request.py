"""OpenAI Responses requests (/v1/responses) → chat-completions requests, for upstreams without
a /responses route.

Lossy or chosen on purpose (the rest maps one to one):
- `instructions` becomes the first system message; `developer` messages become `system` ones,
  which every chat server knows;
- the output items of one assistant turn (`reasoning`, `message`, `function_call`) become one
  assistant message: reasoning as `reasoning_content`, calls as `tool_calls`;
- `function_call_output` becomes a `tool` message; images in it move into a user message after
  the turn's tool messages, since chat tool messages carry text only;
- `reasoning.effort` becomes `reasoning_effort` (`xhigh` → `high`); `reasoning.summary`,
  `text.verbosity`, `include`, `store`, `metadata`, `prompt_cache_key` and unknown fields change
  nothing upstream; encrypted reasoning is dropped (only OpenAI can read it);
- built-in tools (`web_search`, `file_search`, `computer_use`, …) cannot run here and are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import BadRequest
from .fields import objects, text_of

Item = dict[str, Any]
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_EFFORTS = {"none": "none", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_TOOL_CHOICES = ("auto", "none", "required")


def input_items(req: dict[str, Any]) -> list[Item]:
    """The request's `input` as a list of items; a string is one user message."""
    value = req.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if value is None:
        return []
    return objects(value, "input must be a string or a list of input items")


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part as a chat content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": text_of(part, where)}
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise BadRequest(f"{where}: input_image needs an `image_url` (a URL or data URL); file ids cannot be read")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and isinstance(part.get("file_data"), str):
        file = {"file_data": part["file_data"], "filename": part.get("filename") or "file"}
        return {"type": "file", "file": file}
    raise BadRequest(f"{where}: content part type {kind!r} is not supported")


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise BadRequest(f"{where}: content must be a string or a list of content parts")
    return [_part(part, f"{where}[{n}]") for n, part in enumerate(content)]


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string (several servers take nothing else), else the parts."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _call(item: Item, where: str) -> dict[str, Any]:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments", "")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise BadRequest(f"{where}: function_call needs `call_id` and `name`")
    if not isinstance(arguments, str):
        raise BadRequest(f"{where}: function_call arguments must be a JSON string")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _reasoning(item: Item) -> str:
    """The full reasoning when the client kept it (`content`), else its summary."""
    for key in ("content", "summary"):
        entries = item.get(key)
        entries = entries if isinstance(entries, list) else ()
        texts = [e["text"] for e in entries if isinstance(e, dict) and isinstance(e.get("text"), str)]
        if any(texts):
            return "\n\n".join(text for text in texts if text)
    return ""


class _Conversation:
    """Chat messages built item by item; consecutive assistant items merge into one message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.assistant: dict[str, Any] | None = None
        self.media: list[dict[str, Any]] = []  # images of tool outputs, for the next user message

    def flush(self) -> None:
        if self.assistant is not None:
            texts = self.assistant.pop("texts")
            self.assistant["content"] = "\n\n".join(texts) if texts or "tool_calls" not in self.assistant else None
            self.messages.append(self.assistant)
            self.assistant = None
        if self.media:
            note = {"type": "text", "text": "[attachments of the tool results above]"}
            self.messages.append({"role": "user", "content": [note, *self.media]})
            self.media = []

    def turn(self) -> dict[str, Any]:
        if self.assistant is None or "tool_calls" in self.assistant:  # text after calls: a new turn
            self.flush()
            self.assistant = {"role": "assistant", "texts": []}
        return self.assistant

    def add(self, item: Item, where: str) -> None:
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            role = _ROLES.get(role) if isinstance(role, str) else None
            if role is None:
                raise BadRequest(f"{where}.role must be user, assistant, system or developer")
            parts = _parts(item.get("content"), f"{where}.content")
            if role == "assistant":
                self.turn()["texts"].extend(part["text"] for part in parts if part["type"] == "text")
                return
            self.flush()
            self.messages.append({"role": role, "content": _content(parts)})
        elif kind == "reasoning":
            text = _reasoning(item)
            if text:
                turn = self.turn()
                turn["reasoning_content"] = "\n\n".join(filter(None, (turn.get("reasoning_content"), text)))
        elif kind == "function_call":
            if self.assistant is None:
                self.flush()
                self.assistant = {"role": "assistant", "texts": []}
            self.assistant.setdefault("tool_calls", []).append(_call(item, where))
        elif kind == "function_call_output":
            self.tool_output(item, where)
        else:
            raise BadRequest(f"{where}: input item type {kind!r} is not supported here")

    def tool_output(self, item: Item, where: str) -> None:
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"{where}: function_call_output needs `call_id`")
        if self.assistant is not None:
            media, self.media = self.media, []
            self.flush()
            self.media = media
        if isinstance(output, str):
            text = output
        elif isinstance(output, list):
            parts = _parts(output, f"{where}.output")
            text = "\n\n".join(part["text"] for part in parts if part["type"] == "text")
            self.media += [part for part in parts if part["type"] != "text"]
        else:
            raise BadRequest(f"{where}: function_call_output needs `output` (a string or content parts)")
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})


def chat_messages(req: dict[str, Any], history: Sequence[Item] = ()) -> list[dict[str, Any]]:
    """`instructions`, then the stored conversation (`history`), then this request's input."""
    instructions = req.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise BadRequest("instructions must be a string")
    conversation = _Conversation()
    if instructions:
        conversation.messages.append({"role": "system", "content": instructions})
    for n, item in enumerate(history):
        conversation.add(item, f"previous_response_id (item {n})")
    for n, item in enumerate(input_items(req)):
        conversation.add(item, f"input[{n}]")
    conversation.flush()
    if not conversation.messages:
        raise BadRequest("input: at least one input item is required")
    return conversation.messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise BadRequest("tools must be a list")
    converted = []
    for n, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise BadRequest(f"tools[{n}]: built-in tool {kind!r} cannot run here; only function tools can")
        spec = tool["function"] if isinstance(tool.get("function"), dict) else tool  # chat-style tools too
        if not isinstance(spec.get("name"), str) or not spec["name"]:
            raise BadRequest(f"tools[{n}] needs a `name`")
        function: dict[str, Any] = {"name": spec["name"]}
        if isinstance(spec.get("description"), str):
            function["description"] = spec["description"]
        schema = spec.get("parameters")
        function["parameters"] = schema if isinstance(schema, dict) else dict(EMPTY_SCHEMA)
        if spec.get("strict") is True:  # Codex sends `strict: false` everywhere; some servers reject the key
            function["strict"] = True
        converted.append({"type": "function", "function": function})
    return converted


def _tool_choice(choice: Any) -> Any:
    if choice in _TOOL_CHOICES:
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice.get("name"), str):  # type: ignore[union-attr]
        return {"type": "function", "function": {"name": choice["name"]}}  # type: ignore[index]
    if kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):  # type: ignore[union-attr]
        return choice["mode"]  # type: ignore[index]  # the subset cannot be said in chat; the mode can
    raise BadRequest("tool_choice must be auto, none, required or a function tool ({type: function, name})")


def _format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise BadRequest("text must be an object")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt.get("schema"), dict):  # type: ignore[union-attr]
        schema = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}  # type: ignore[index]
        for key in ("strict", "description"):
            if fmt.get(key) is not None:  # type: ignore[union-attr]
                schema[key] = fmt[key]  # type: ignore[index]
        return {"type": "json_schema", "json_schema": schema}
    raise BadRequest("text.format.type must be text, json_object or json_schema (with a `schema`)")


def _number(req: dict[str, Any], name: str) -> Any:
    value = req.get(name)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
        raise BadRequest(f"{name} must be a number")
    return value


def chat_request(req: dict[str, Any], *, upstream_model: str, history: Sequence[Item] = ()) -> dict[str, Any]:
    """The chat-completions body for a Responses request continuing `history` (the items of the
    stored conversation before it); the upstream is always asked to stream, with usage."""
    body: dict[str, Any] = {"model": upstream_model, "messages": chat_messages(req, history)}
    limit = req.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise BadRequest("max_output_tokens must be a positive integer")
        body["max_tokens"] = limit
    for name in ("temperature", "top_p"):
        if _number(req, name) is not None:
            body[name] = req[name]
    if req.get("tools"):
        body["tools"] = _tools(req["tools"])
        if req.get("tool_choice") is not None:
            body["tool_choice"] = _tool_choice(req["tool_choice"])
        if isinstance(req.get("parallel_tool_calls"), bool):
            body["parallel_tool_calls"] = req["parallel_tool_calls"]
    response_format = _format(req.get("text"))
    if response_format is not None:
        body["response_format"] = response_format
    reasoning = req.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise BadRequest("reasoning must be an object")
    effort = reasoning.get("effort") if reasoning else None
    if effort is not None:
        if not isinstance(effort, str) or effort not in _EFFORTS:
            raise BadRequest(f"reasoning.effort must be one of {', '.join(_EFFORTS)}")
        body["reasoning_effort"] = _EFFORTS[effort]
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body
