"""Requests on the OpenAI routes: passed on nearly as sent, made acceptable to strict upstreams."""

from __future__ import annotations

from typing import Any

# Fields Copilot Chat adds to messages for its own bookkeeping; strict upstreams answer
# "extra inputs are not permitted" when they see them.
CLIENT_PRIVATE_MESSAGE_FIELDS = ("copilot_cache_control", "copilot_references", "cot_id", "cot_summary")
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def _clean_message(message: dict[str, Any]) -> None:
    for name in CLIENT_PRIVATE_MESSAGE_FIELDS:
        message.pop(name, None)
    content = message.get("content")
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                part.pop("copilot_cache_control", None)
                image = part.get("image_url")
                if isinstance(image, dict):
                    image.pop("media_type", None)


def _clean_tool(tool: dict[str, Any]) -> None:
    function = tool.get("function")
    # Copilot omits the schema of argument-less tools; strict upstreams reject a function without one.
    if isinstance(function, dict) and function.get("parameters") is None:
        function["parameters"] = dict(EMPTY_SCHEMA)


def upstream_request(req: dict[str, Any], *, upstream_model: str) -> dict[str, Any]:
    """The client's request for the upstream: its model id, minus client-private fields."""
    req["model"] = upstream_model
    messages = req.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _clean_message(message)
    tools = req.get("tools")
    if isinstance(tools, list) and not tools:
        # An empty list is rejected by several upstreams, and a tool_choice without tools too.
        del req["tools"]
        req.pop("tool_choice", None)
    elif isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict):
                _clean_tool(tool)
    return req
