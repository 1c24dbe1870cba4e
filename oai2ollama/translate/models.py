"""The model catalog's views: what an upstream's /models says, and how Ollama shows a model.

`describe` reads capabilities and context length from the metadata upstreams already publish
(OpenRouter, vLLM, llama.cpp, LM Studio and others); the `*_entry`/`show_answer` functions
render a `ModelCard` in the exact shapes of Ollama's /api/tags, /api/show and /api/ps.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ALL_CAPABILITIES = ("completion", "tools", "insert", "vision", "embedding", "thinking")


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str  # what clients see and send, Ollama-style with a tag
    upstream_id: str  # what the upstream calls it
    upstream: str = "default"  # which upstream serves it
    capabilities: tuple[str, ...] = ("completion",)
    context_length: int = 131072
    created: int | None = None
    remote_host: str = ""
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def family(self) -> str:
        return model_family(self.upstream_id)


def ollama_name(upstream_id: str) -> str:
    """Ids without a tag are listed as `id:latest`, as Ollama lists its models."""
    return upstream_id if ":" in upstream_id.rsplit("/", 1)[-1] else upstream_id + ":latest"


def model_family(upstream_id: str) -> str:
    base = upstream_id.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    match = re.match(r"[a-z]+[0-9]*(?:\.[0-9]+)?", base)
    return match.group(0) if match else (base or "unknown")


def _first_int(*values: Any) -> int | None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def detected_context_length(entry: dict[str, Any]) -> int | None:
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    top = entry.get("top_provider") if isinstance(entry.get("top_provider"), dict) else {}
    return _first_int(
        entry.get("context_length"),  # OpenRouter, LiteLLM
        entry.get("max_model_len"),  # vLLM
        entry.get("context_window"),  # Groq, Together
        entry.get("max_context_length"),  # LM Studio
        entry.get("loaded_context_length"),
        top.get("context_length"),
        meta.get("n_ctx_train"),  # llama.cpp server
        meta.get("n_ctx"),
    )


def detected_capabilities(entry: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    params = entry.get("supported_parameters")
    if isinstance(params, list):
        if "tools" in params:
            found.add("tools")
        if "reasoning" in params or "include_reasoning" in params:
            found.add("thinking")
    architecture = entry.get("architecture")
    if isinstance(architecture, dict):
        modalities = architecture.get("input_modalities") or []
        if "image" in modalities:
            found.add("vision")
        if architecture.get("output_modalities") == ["embeddings"]:
            found.add("embedding")
    declared = entry.get("capabilities")
    if isinstance(declared, dict):
        declared = [name for name, on in declared.items() if on]
    if isinstance(declared, list):
        aliases = {
            "tool_use": "tools",
            "function_calling": "tools",
            "tool_calling": "tools",
            "reasoning": "thinking",
            "image_input": "vision",
            "embeddings": "embedding",
            "fim": "insert",
        }
        for name in declared:
            if isinstance(name, str):
                name = aliases.get(name.lower(), name.lower())
                if name in ALL_CAPABILITIES:
                    found.add(name)
    kind = entry.get("type")
    if kind in ("embedding", "embeddings"):
        found.add("embedding")
    elif kind == "vlm":
        found.add("vision")
    return found


def describe(
    entry: dict[str, Any],
    *,
    upstream: str = "default",
    remote_host: str = "",
    capabilities: Iterable[str] = (),
    context_length: int | None = None,
    default_context_length: int = 131072,
) -> ModelCard:
    """A catalog card for one entry of an upstream's /models: configuration wins over detection."""
    upstream_id = str(entry["id"])
    detected = detected_capabilities(entry)
    if "embed" in upstream_id.lower():
        detected.add("embedding")
    if "embedding" in detected:
        # An embedding model cannot chat; global capabilities are meant for the chat models.
        caps = {"embedding"} | (detected & {"vision"})
    else:
        caps = {"completion"} | detected | set(capabilities)
    ordered = tuple(name for name in ALL_CAPABILITIES if name in caps)
    created = entry.get("created")
    return ModelCard(
        name=ollama_name(upstream_id),
        upstream_id=upstream_id,
        upstream=upstream,
        capabilities=ordered,
        context_length=context_length or detected_context_length(entry) or default_context_length,
        created=created if isinstance(created, int) and created > 0 else None,
        remote_host=remote_host,
    )


def _timestamp(seconds: int | None, fallback: float) -> str:
    moment = datetime.fromtimestamp(seconds if seconds else fallback, UTC)
    return moment.isoformat().replace("+00:00", "Z")


def digest(card: ModelCard) -> str:
    return hashlib.sha256(f"{card.upstream}/{card.upstream_id}".encode()).hexdigest()


def details(card: ModelCard) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "",
        "family": card.family,
        "families": [card.family],
        "parameter_size": "",
        "quantization_level": "",
    }


def tags_entry(card: ModelCard, started: float) -> dict[str, Any]:
    entry = {
        "name": card.name,
        "model": card.name,
        "remote_model": card.upstream_id,
        "remote_host": card.remote_host,
        "modified_at": _timestamp(card.created, started),
        "size": 0,
        "digest": digest(card),
        "details": {**details(card), "context_length": card.context_length},
        "capabilities": list(card.capabilities),
    }
    if not card.remote_host:
        del entry["remote_host"]
    return entry


def parameters_text(card: ModelCard) -> str:
    # Ollama pads keys to 30 columns; Continue and Zed read `num_ctx` from here.
    return f"{'num_ctx':<30} {card.context_length}"


def template_text(card: ModelCard) -> str:
    # Continue enables fill-in-the-middle only when the template mentions .Suffix.
    if "insert" in card.capabilities:
        return "{{ if .Suffix }}{{ .Prompt }}{{ .Suffix }}{{ else }}{{ .Prompt }}{{ end }}"
    return "{{ .Prompt }}"


def show_answer(card: ModelCard, started: float) -> dict[str, Any]:
    arch = card.family
    model_info: dict[str, Any] = {
        "general.architecture": arch,
        "general.basename": card.upstream_id,
        f"{arch}.context_length": card.context_length,
    }
    return {
        "license": "",
        "modelfile": (
            '# Modelfile generated by "ollama show"\n'
            f"FROM {card.upstream_id}\nTEMPLATE {template_text(card)!r}\nPARAMETER num_ctx {card.context_length}\n"
        ),
        "parameters": parameters_text(card),
        "template": template_text(card),
        "details": details(card),
        "model_info": model_info,
        "capabilities": list(card.capabilities),
        "modified_at": _timestamp(card.created, started),
        "remote_model": card.upstream_id,
        "remote_host": card.remote_host,
    }


def ps_entry(card: ModelCard, expires_at: float) -> dict[str, Any]:
    return {
        "name": card.name,
        "model": card.name,
        "size": 0,
        "digest": digest(card),
        "details": details(card),
        "expires_at": _timestamp(int(expires_at), expires_at),
        "size_vram": 0,
        "context_length": card.context_length,
    }


def openai_model(card: ModelCard, started: float) -> dict[str, Any]:
    return {"id": card.name, "object": "model", "created": card.created or int(started), "owned_by": card.upstream}
