"""What each kind of OpenAI-compatible upstream accepts, and requests adapted to it.

"OpenAI-compatible" servers differ where it hurts: OpenAI's own API answers 400 "Unrecognized
request argument" to the sampling extras vLLM and llama.cpp take, wants `max_completion_tokens`
for its reasoning models, and Azure authenticates with an `api-key` header; OpenRouter and Ollama
read reasoning history from `reasoning`, DeepSeek, vLLM and llama.cpp from `reasoning_content`.
A kind is set per upstream in the config file or detected from its host or its /models answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Sampling fields beyond OpenAI's own that our translators may send (from Ollama `options`).
SAMPLING_EXTRAS = frozenset({"top_k", "min_p", "typical_p", "repeat_penalty", "repetition_penalty"})


@dataclass(frozen=True, slots=True)
class Dialect:
    kind: str
    extras: frozenset[str]  # which SAMPLING_EXTRAS it accepts
    token_limit: str = "max_tokens"
    reasoning_history: str = "reasoning_content"  # where an assistant turn's reasoning goes back
    effort_field: str = "reasoning_effort"  # "reasoning": OpenRouter's `reasoning: {effort}` object
    auth_header: str = "authorization"  # "api-key": the key as is, not as a bearer token


DIALECTS: Mapping[str, Dialect] = {
    dialect.kind: dialect
    for dialect in (
        Dialect("openai", frozenset(), token_limit="max_completion_tokens"),
        Dialect("azure", frozenset(), token_limit="max_completion_tokens", auth_header="api-key"),
        Dialect(
            "openrouter",
            frozenset({"top_k", "min_p", "repetition_penalty"}),
            reasoning_history="reasoning",
            effort_field="reasoning",
        ),
        Dialect("vllm", frozenset({"top_k", "min_p", "repetition_penalty"})),
        Dialect("llama.cpp", frozenset({"top_k", "min_p", "typical_p", "repeat_penalty"})),
        Dialect("lmstudio", frozenset({"top_k", "min_p", "repeat_penalty"})),
        # Ollama's /v1 ignores what it does not know, and reads `reasoning` on messages.
        Dialect("ollama", frozenset(), reasoning_history="reasoning"),
        # An unknown server: every extra, under both names; servers that do not know one ignore it.
        Dialect("generic", SAMPLING_EXTRAS),
    )
}
KINDS = tuple(DIALECTS)

# Well-known hosts and the default ports of local servers.
_HOSTS = {"api.openai.com": "openai", "openrouter.ai": "openrouter"}
_HOST_SUFFIXES = ((".openai.azure.com", "azure"), (".cognitiveservices.azure.com", "azure"))
_PORTS = {11434: "ollama", 1234: "lmstudio"}
# What servers write as `owned_by` in /models.
_OWNERS = {"vllm": "vllm", "llamacpp": "llama.cpp", "library": "ollama", "ollama": "ollama"}


def kind_from_host(host: str, port: int | None) -> str | None:
    host = host.lower().rstrip(".")
    if host in _HOSTS:
        return _HOSTS[host]
    for suffix, kind in _HOST_SUFFIXES:
        if host.endswith(suffix):
            return kind
    local = host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
    return _PORTS.get(port or 0) if local else None


def kind_from_models(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """The kind a /models answer gives away: llama.cpp's `meta`, vLLM's `max_model_len`, `owned_by`."""
    for entry in entries[:5]:
        if isinstance(entry.get("meta"), dict) and "n_ctx_train" in entry["meta"]:
            return "llama.cpp"
        if "max_model_len" in entry:
            return "vllm"
        owner = entry.get("owned_by")
        if isinstance(owner, str) and owner.lower() in _OWNERS:
            return _OWNERS[owner.lower()]
    return None


def adapt(body: dict[str, Any], dialect: Dialect, *, translated: bool) -> dict[str, Any]:
    """A chat-completions body made acceptable to `dialect`.

    The token limit is renamed on every route. The rest only where we wrote the body (native,
    Anthropic, Responses): a client's own /v1 request is its own, and it reaches the upstream as sent.
    """
    if dialect.token_limit != "max_tokens" and "max_tokens" in body:
        body[dialect.token_limit] = body.pop("max_tokens")
    if not translated:
        return body
    for name in SAMPLING_EXTRAS - dialect.extras:
        body.pop(name, None)
    if dialect.effort_field == "reasoning" and "reasoning_effort" in body:
        body["reasoning"] = {"effort": body.pop("reasoning_effort")}
    if dialect.reasoning_history != "reasoning_content":
        for message in body.get("messages") or ():
            if isinstance(message, dict) and "reasoning_content" in message:
                message[dialect.reasoning_history] = message.pop("reasoning_content")
    return body
