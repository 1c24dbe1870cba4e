"""Reasoning controls: how much a model should think, and whether clients see its thinking.

Clients say it several ways: Ollama's `think` (true, false or a level), OpenAI's `reasoning_effort`,
OpenRouter's `reasoning` object (`effort`, `max_tokens`, `enabled`, `exclude`), and the seed
gateway's `exclude_reasoning`. Upstreams read one field: `reasoning_controls` writes the request's
choice into the field it is given, so that each kind of upstream can be given its own.

Hiding reasoning (`exclude_reasoning`) does not stop the model thinking; its reasoning is taken
out of the answer: `without_reasoning_events` for a relayed stream, `without_reasoning_document`
for a relayed JSON answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from .. import wire
from ..errors import BadRequest
from .anthropic_request import reasoning_effort as budget_effort
from .streams import LineSplitter

THINK_LEVELS = ("low", "medium", "high", "max")
# OpenRouter's effort levels (OpenAI's plus `xhigh`) as the OpenAI-style level chat servers accept.
_EFFORTS = {"none": "none", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
# Where upstreams put reasoning in a chunk's delta or an answer's message.
REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_details", "reasoning_text")


def think_effort(value: Any, capabilities: frozenset[str], where: str = "think") -> str | None:
    """Ollama's `think` as an effort level; None leaves it to the upstream."""
    if value is None:
        return None
    if value in ("true", "false"):
        value = value == "true"
    if value is False:
        # Zed sends `think: false` to every model; only models that reason are told to stop.
        return "none" if "thinking" in capabilities else None
    if value is True:
        return "medium"
    if isinstance(value, str) and value in THINK_LEVELS:
        return "high" if value == "max" else value
    shown = wire.dumps(value).decode()
    raise BadRequest(f'invalid {where} value: {shown} (must be true, false, "low", "medium", "high" or "max")')


def _openrouter_effort(reasoning: dict[str, Any], capabilities: frozenset[str]) -> str | None:
    """OpenRouter's `reasoning` object as an effort level: `effort`, else a `max_tokens` budget,
    else `enabled`. Only `exclude` (or nothing) leaves the effort to the upstream."""
    effort = reasoning.get("effort")
    if effort is not None:
        if not isinstance(effort, str) or effort not in _EFFORTS:
            raise BadRequest(f"reasoning.effort must be one of {', '.join(_EFFORTS)}")
        if effort == "none" and "thinking" not in capabilities:
            return None  # a model that does not reason rejects any effort, "none" included
        return _EFFORTS[effort]
    budget = reasoning.get("max_tokens")
    if budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise BadRequest("reasoning.max_tokens must be a non-negative integer")
        return budget_effort(budget) if budget else think_effort(False, capabilities)
    enabled = reasoning.get("enabled")
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise BadRequest("reasoning.enabled must be a boolean")
        return think_effort(enabled, capabilities)
    return None


def _flag(value: Any, where: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise BadRequest(f"{where} must be a boolean")


def reasoning_controls(
    req: dict[str, Any],
    *,
    field: str | None,
    capabilities: frozenset[str],
    exclude_default: bool = False,
) -> tuple[dict[str, Any], bool]:
    """A chat-completions request with its reasoning controls settled: `(body, exclude)`.

    The effort comes from `reasoning_effort` if the request has it, else from `reasoning`, else
    from `think`, and is written to `field`: `"reasoning_effort"` (a level, as most servers take
    it), `"reasoning"` (OpenRouter's object, the request's own kept with the effort set in it), or
    None for an upstream with no such control. `think`, `exclude_reasoning` and a `reasoning`
    object the upstream cannot read are removed. `exclude` says whether to hide the answer's
    reasoning: the request's `exclude_reasoning` or `reasoning.exclude`, else `exclude_default`
    (the model's configured option).
    """
    think = req.get("think")
    reasoning = req.get("reasoning")
    flag = req.get("exclude_reasoning")
    if think is None and reasoning is None and flag is None and field == "reasoning_effort":
        return req, exclude_default  # what nearly every request is: nothing to settle
    body = dict(req)
    body.pop("think", None)
    body.pop("exclude_reasoning", None)
    exclude = _flag(flag, "exclude_reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise BadRequest("reasoning must be an object")
    if reasoning and exclude is None:
        exclude = _flag(reasoning.get("exclude"), "reasoning.exclude")
    effort = body.pop("reasoning_effort", None)
    if effort is None and reasoning:
        effort = _openrouter_effort(reasoning, capabilities)
    if effort is None and reasoning is None:
        effort = think_effort(think, capabilities)
    if field != "reasoning":
        body.pop("reasoning", None)
    if effort is not None:
        if field == "reasoning":
            body["reasoning"] = {**(reasoning or {}), "effort": effort}
        elif field is not None:
            body[field] = effort
    return body, exclude_default if exclude is None else exclude


def exclude_requested(value: Any) -> bool:
    """Whether a native request's `exclude_reasoning` (the model's option merged in) asks to hide thinking."""
    return _flag(value, "exclude_reasoning") is True


def _strip(chunk: Any) -> bool:
    """Remove the reasoning from a chunk's deltas or an answer's messages; True if there was any."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    found = False
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        for key in ("delta", "message"):
            part = choice.get(key)
            if isinstance(part, dict):
                for name in REASONING_FIELDS:
                    if part.pop(name, None) is not None:
                        found = True
    return found


def _strip_line(line: bytes) -> bytes:
    # Most lines carry no reasoning at all: they pass as they came, unparsed.
    if not line.startswith(b"data:") or b"reasoning" not in line:
        return line
    try:
        chunk = wire.loads(line[5:])
    except wire.InvalidJSON:
        return line  # `[DONE]`, or a payload split over several data lines: not ours to judge
    return b"data: " + wire.dumps(chunk) if _strip(chunk) else line


async def without_reasoning_events(body: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """An upstream's SSE body with the reasoning taken out of every chunk, one write per read.

    A chunk that carried only reasoning stays, with an empty delta, so the stream keeps its shape.
    """
    splitter = LineSplitter()
    try:
        async for data in body:
            lines = splitter.feed(data)
            if lines:
                yield b"".join(_strip_line(line) + b"\n" for line in lines)
        rest = splitter.close()
        if rest:
            yield _strip_line(rest[0])
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


def without_reasoning_document(body: bytes) -> bytes:
    """A non-streamed chat answer without its reasoning; a body that is not JSON is left alone."""
    if b"reasoning" not in body:
        return body
    try:
        answer = wire.loads(body)
    except wire.InvalidJSON:
        return body
    return wire.dumps(answer) if _strip(answer) else body
