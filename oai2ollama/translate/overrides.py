"""A model's configured `options`, applied beneath what each request says.

Precedence is the same on every route: what the request says > the model's overrides > the
upstream's defaults. Overrides use Ollama's option names (`temperature`, `num_predict`, `stop`,
`think`, …); on the OpenAI-shaped routes they are mapped to OpenAI's fields, and only fields the
request left unset are filled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ollama_options import EXTRA_OPTIONS, SAME_NAME_OPTIONS
from .reasoning import THINK_LEVELS, think_effort

# Every option an override may set, with the JSON types it accepts. Only options that change what
# an OpenAI-style upstream does are listed: `num_ctx`, `num_gpu` and friends have no effect there.
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int,),
    "min_p": (int, float),
    "typical_p": (int, float),
    "repeat_penalty": (int, float),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "seed": (int,),
    "num_predict": (int,),
    "stop": (list,),
    "think": (bool, str),
    "exclude_reasoning": (bool,),
    # Not sent upstream: the model's total deadline per request, in seconds (or, as the seed
    # gateway's configs write it, `timeout_ms`; the config file turns it into `request_timeout`).
    "request_timeout": (int, float),
    "timeout_ms": (int,),
}
# Options that configure oai2ollama itself rather than the model: never sent as options, never shown.
OWN_OPTIONS = frozenset({"think", "exclude_reasoning", "request_timeout", "timeout_ms"})
# Of those, the ones that are top-level fields of a native request.
_TOP_LEVEL = ("think", "exclude_reasoning")

_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def option_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be an override for option `name`, or None when it can."""
    if name == "num_ctx":
        return "set the model's context_length instead of options.num_ctx"
    kinds = OPTION_TYPES.get(name)
    if kinds is None:
        return f"unknown option (known: {', '.join(OPTION_TYPES)})"
    wanted = _kind_names(kinds)
    article = "an" if wanted.startswith("i") else "a"
    if isinstance(value, bool) and bool not in kinds:
        return f"must be {article} {wanted}, not a boolean"
    if not isinstance(value, kinds):
        return f"must be {article} {wanted}"
    if name == "stop" and not all(isinstance(item, str) for item in value):
        return "must be a list of strings"
    if name == "think" and isinstance(value, str) and value not in THINK_LEVELS:
        return f"must be true, false or one of {', '.join(THINK_LEVELS)}"
    if name in ("request_timeout", "timeout_ms") and value <= 0:
        return "must be a positive number"
    return None


def request_timeout(overrides: Mapping[str, Any], default: float | None) -> float | None:
    """The total deadline, in seconds, of a request for a model with these overrides."""
    seconds = overrides.get("request_timeout")
    return float(seconds) if seconds is not None else default


def _kind_names(kinds: tuple[type, ...]) -> str:
    if float in kinds:
        return "number"
    return " or ".join({int: "integer", bool: "boolean", str: "string", list: "list"}[kind] for kind in kinds)


def native_request(req: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An Ollama /api/chat or /api/generate request with the model's overrides merged beneath it.

    Options merge key by key into `options`; `think` and `exclude_reasoning` fill the top-level
    fields. A request's `stop` replaces the configured one rather than adding to it, as in Ollama.
    """
    if not overrides:
        return req
    out = dict(req)
    options = {name: value for name, value in overrides.items() if name not in OWN_OPTIONS}
    given = req.get("options")
    if options and (given is None or isinstance(given, dict)):
        given = given or {}
        if _positive_int(req.get("num_predict")) and given.get("num_predict") is None:
            options.pop("num_predict", None)  # Open WebUI sends num_predict at the top level
        out["options"] = {**options, **{name: value for name, value in given.items() if value is not None}}
    for name in _TOP_LEVEL:
        if name in overrides and req.get(name) is None:
            out[name] = overrides[name]
    return out


def openai_request(
    req: dict[str, Any],
    overrides: Mapping[str, Any],
    *,
    path: str = "/chat/completions",
    capabilities: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """An OpenAI-shaped request with the model's overrides filling the fields it left unset.

    `path` is the upstream route: /chat/completions and /completions take sampling fields,
    /responses its own names (`max_output_tokens`, `reasoning.effort`), /embeddings nothing.
    """
    if not overrides or path not in ("/chat/completions", "/completions", "/responses"):
        return req
    out = dict(req)

    def fill(field: str, value: Any) -> None:
        if out.get(field) is None:
            out[field] = value

    for name in ("temperature", "top_p"):
        if name in overrides:
            fill(name, overrides[name])
    limit = overrides.get("num_predict")
    if path == "/responses":
        if _positive_int(limit):
            fill("max_output_tokens", limit)
        effort = think_effort(overrides.get("think"), capabilities)
        if effort is not None and out.get("reasoning") is None:
            out["reasoning"] = {"effort": effort}
        return out
    for name in SAME_NAME_OPTIONS:
        if name in overrides:
            fill(name, overrides[name])
    for name, fields in EXTRA_OPTIONS.items():
        if name in overrides:
            for field in fields:
                fill(field, overrides[name])
    if _positive_int(limit) and all(out.get(field) is None for field in _MAX_TOKEN_FIELDS):
        out["max_tokens"] = limit
    if overrides.get("stop"):
        fill("stop", list(overrides["stop"]))
    effort = think_effort(overrides.get("think"), capabilities)
    # OpenRouter's `reasoning` object and Ollama's `think` say the same as `reasoning_effort`:
    # any of them means the client chose.
    chose = out.get("reasoning") is not None or out.get("think") is not None
    if path == "/chat/completions" and effort is not None and not chose:
        fill("reasoning_effort", effort)
    return out


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parameter_lines(context_length: int, overrides: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The effective parameters as Ollama shows them: `(key, value)` pairs, one per list item.

    Values are rendered as Ollama's Go server renders them (`%#v`): strings quoted, numbers bare.
    `think` and `exclude_reasoning` are not Modelfile parameters in Ollama, and a request timeout is
    oai2ollama's own: not shown.
    """
    lines = [("num_ctx", str(context_length))]
    for name, value in overrides.items():
        if name in OWN_OPTIONS:
            continue
        for item in value if isinstance(value, list) else [value]:
            lines.append((name, _go_value(item)))
    return lines


def _go_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    return str(value)
