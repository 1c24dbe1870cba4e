"""Ollama's request knobs as OpenAI fields: `options`, `format`, `think`, `logprobs`.

Every invalid value is a `BadRequest` naming its field. The `/v1` routes map Ollama-style
`options` with `apply_options` too, and the model overrides use the option tables.
"""

from __future__ import annotations

from typing import Any

from .. import wire
from ..errors import BadRequest
from .reasoning import think_effort

# Ollama options with an OpenAI request field of the same name, meaning and units.
SAME_NAME_OPTIONS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
# Ollama option → OpenAI request field (the overrides for /v1 requests use these maps too).
_DIRECT_OPTIONS = {**{name: name for name in SAME_NAME_OPTIONS}, "num_predict": "max_tokens"}
# Non-standard sampling knobs that vLLM- and llama.cpp-style servers accept as extra body fields.
# vLLM calls the repeat penalty `repetition_penalty`, llama.cpp `repeat_penalty`.
EXTRA_OPTIONS = {
    "top_k": ("top_k",),
    "min_p": ("min_p",),
    "typical_p": ("typical_p",),
    "repeat_penalty": ("repeat_penalty", "repetition_penalty"),
}
# Natively these mean "random" (seed -1) and "no limit" (num_predict -1, -2): the upstream's default.
_UNSET_BELOW = {"seed": 0, "num_predict": 1}


def _number(value: Any, where: str, *, integer: bool = False) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise BadRequest(f"{where} must be {'an integer' if integer else 'a number'}")
    return value


def apply_options(options: Any, body: dict[str, Any]) -> None:
    """Ollama `options` as the OpenAI fields they mean, written into `body`."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    for name, target in _DIRECT_OPTIONS.items():
        value = options.get(name)
        if value is not None:
            value = _number(value, f"options.{name}", integer=name in _UNSET_BELOW)
            floor = _UNSET_BELOW.get(name)
            if floor is None or value >= floor:
                body[target] = value
    for name, targets in EXTRA_OPTIONS.items():
        value = options.get(name)
        if value is not None:
            value = _number(value, f"options.{name}")
            for target in targets:
                body[target] = value
    stop = options.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]  # real Ollama wants a list; lenient clients send one string
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequest("options.stop must be a list of strings")
        if stop:
            body["stop"] = stop


def apply_format(value: Any, body: dict[str, Any]) -> None:
    if value in (None, ""):
        return
    if value == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(value, dict):
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "schema", "schema": value}}
    else:
        raise BadRequest(f'invalid format: {wire.dumps(value).decode()}; expected "json" or a JSON Schema object')


def apply_think(value: Any, body: dict[str, Any], capabilities: frozenset[str]) -> None:
    effort = think_effort(value, capabilities)
    if effort is not None:
        body["reasoning_effort"] = effort


def apply_logprobs(req: dict[str, Any], body: dict[str, Any], *, legacy: bool) -> None:
    top = req.get("top_logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20):
        raise BadRequest("top_logprobs must be between 0 and 20")
    if not req.get("logprobs"):
        return
    if legacy:
        body["logprobs"] = top or 1  # /completions takes the number of alternatives, not a flag
        return
    body["logprobs"] = True
    if top:
        body["top_logprobs"] = top
