"""Requests on the OpenAI routes: passed on nearly as sent, made acceptable to strict upstreams."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ollama_options import apply_options
from .overrides import openai_request as with_overrides
from .reasoning import reasoning_controls

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


_TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")


def with_ollama_options(req: dict[str, Any]) -> dict[str, Any]:
    """Ollama's `options` (`num_predict`, `temperature`, `stop`, …) as the OpenAI fields the native
    routes map them to, beneath the request's own fields; `options` itself is not sent on, and
    options with no OpenAI meaning (`num_ctx`, `num_gpu`) are dropped, as on the native routes."""
    if "options" not in req:
        return req
    mapped: dict[str, Any] = {}
    apply_options(req.pop("options"), mapped)
    for field, value in mapped.items():
        if field == "max_tokens" and any(req.get(limit) is not None for limit in _TOKEN_LIMITS):
            continue
        if req.get(field) is None:
            req[field] = value
    return req


def chat_controls(
    req: dict[str, Any],
    overrides: Mapping[str, Any],
    *,
    capabilities: frozenset[str],
    reasoning_field: str | None,
) -> tuple[dict[str, Any], bool]:
    """A /v1/chat/completions request with the controls the seed gateway accepts settled:
    `(body, exclude_reasoning)`.

    The request's `options` count as its own fields, so they go in before the model's overrides
    fill what is left unset; `think`, `reasoning` and `exclude_reasoning` are settled after, so a
    configured `think` yields to any reasoning control the request has.
    """
    body = with_overrides(with_ollama_options(req), overrides, capabilities=capabilities)
    return reasoning_controls(
        body,
        field=reasoning_field,
        capabilities=capabilities,
        exclude_default=overrides.get("exclude_reasoning") is True,
    )
