"""What an upstream's /models says about each model, as a `ModelCard`.

`detect` reads capabilities and context length from the metadata upstreams already publish
(OpenRouter, vLLM, llama.cpp, LM Studio, Mistral, Fireworks and others); `describe` turns one
/models entry plus configuration into a `ModelCard`. `model_views` renders cards.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .model_sizes import DEFAULT_PARAMETER_COUNT, embedding_length_for, human_number, parameters_from_id

ALL_CAPABILITIES = ("completion", "tools", "insert", "vision", "embedding", "thinking")
# The capabilities an upstream's metadata can speak for, one "dimension" at a time: a default
# (`--capabilities`) only fills a dimension the metadata is silent about.
_DIMENSIONS = ("tools", "insert", "vision", "thinking")

# Names providers use for a capability, in lists (`["tool_use"]`), maps (`{"function_calling": true}`)
# and `supports_*` flags (`supports_tools`), folded onto Ollama's names.
_CAPABILITY_NAMES = {
    "tools": "tools",
    "tool": "tools",
    "tool_use": "tools",
    "tool_calling": "tools",
    "function_calling": "tools",
    "functions": "tools",
    "vision": "vision",
    "image_input": "vision",
    "multimodal": "vision",  # llama.cpp server
    "thinking": "thinking",
    "reasoning": "thinking",
    "embedding": "embedding",
    "embeddings": "embedding",
    "insert": "insert",
    "fim": "insert",
    "completion_fim": "insert",  # Mistral
}
# Ids of common embedding models that do not say "embed" (bge-m3, multilingual-e5, gte-large, all-MiniLM).
_EMBEDDING_ID = re.compile(r"embed|(?:^|[/_.-])(?:bge|e5|gte)(?:[/_.-]|$)|minilm|mpnet", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ModelCard:
    name: str  # what clients see and send, Ollama-style with a tag
    upstream_id: str  # what the upstream calls it; sent upstream in the body
    upstream: str = "default"  # the name of the upstream Target that serves it
    capabilities: tuple[str, ...] = ("completion",)
    context_length: int = 131072
    created: int | None = None
    remote_host: str = ""
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)
    hidden: bool = False  # served, but not listed
    client_id: str = ""  # the id as clients see it before any alias (prefix + upstream id)
    alias: str | None = None
    published_parameters: int | None = None  # what the upstream says (llama.cpp `meta.n_params`)
    published_embedding_length: int | None = None  # llama.cpp `meta.n_embd`
    # Derived once: /api/tags renders every card on every call.
    family: str = field(init=False, compare=False, repr=False)
    digest: str = field(init=False, compare=False, repr=False)
    parameter_size: str = field(init=False, compare=False, repr=False)  # "8B"; "" when only guessed
    parameter_count: int = field(init=False, compare=False, repr=False)
    embedding_length: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "family", model_family(self.upstream_id))
        object.__setattr__(self, "digest", card_digest(self))
        known = self.published_parameters or parameters_from_id(self.upstream_id)
        count = known or DEFAULT_PARAMETER_COUNT
        object.__setattr__(self, "parameter_size", human_number(known) if known else "")
        object.__setattr__(self, "parameter_count", count)
        width = self.published_embedding_length or embedding_length_for(count)
        object.__setattr__(self, "embedding_length", width)


def card_digest(card: ModelCard) -> str:
    """A digest of what the card says, so that clients which cache a model's capabilities by its
    digest (llm-ollama) see a change when the configuration or the upstream's metadata changes."""
    said = [
        card.name,
        card.client_id,
        card.upstream_id,
        card.upstream,
        card.remote_host,
        list(card.capabilities),
        card.context_length,
        card.alias,
        dict(card.options),
    ]
    canonical = json.dumps(said, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, as the config file's `price = { input = …, output = … }` gives it."""

    input: float
    output: float


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """What configuration says about one model; None/empty means "not configured"."""

    alias: str | None = None
    capabilities: tuple[str, ...] | None = None  # replaces the detected list
    context_length: int | None = None
    hidden: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    price: Price | None = None  # for the usage ledger's estimated cost


@dataclass(frozen=True, slots=True)
class Detected:
    capabilities: frozenset[str]
    known: frozenset[str]  # the dimensions the metadata spoke about, present or not
    context_length: int | None


def ollama_name(model_id: str) -> str:
    """Ids without a tag are listed as `id:latest`, as Ollama lists its models."""
    return model_id if ":" in model_id.rsplit("/", 1)[-1] else model_id + ":latest"


def model_family(upstream_id: str) -> str:
    base = upstream_id.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    match = re.match(r"[a-z]+[0-9]*(?:\.[0-9]+)?", base)
    return match.group(0) if match else (base or "unknown")


def _first_int(*values: Any) -> int | None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def detected_context_length(entry: Mapping[str, Any]) -> int | None:
    meta = _object(entry.get("meta"))
    return _first_int(
        entry.get("context_length"),  # OpenRouter, Together, Fireworks, LiteLLM
        entry.get("max_model_len"),  # vLLM
        entry.get("context_window"),  # Groq
        # LM Studio: a loaded model's window is what a prompt must fit, whatever the model could take.
        entry.get("loaded_context_length"),
        entry.get("max_context_length"),  # LM Studio /api/v0, Mistral
        _object(entry.get("top_provider")).get("context_length"),  # OpenRouter
        # llama.cpp server: what a request may fill (its -c shared by -np slots), not what the
        # model was trained for; a prompt sized to the latter is refused.
        meta.get("n_ctx"),
        meta.get("n_ctx_train"),
    )


def detect(entry: Mapping[str, Any]) -> Detected:
    """What one /models entry says the model can do, and about which capabilities it spoke."""
    found: set[str] = set()
    known: set[str] = set()
    params = entry.get("supported_parameters")  # OpenRouter
    if isinstance(params, list):
        known |= {"tools", "thinking"}
        if "tools" in params:
            found.add("tools")
        if "reasoning" in params or "include_reasoning" in params:
            found.add("thinking")
    architecture = _object(entry.get("architecture"))
    modalities = architecture.get("input_modalities")
    if isinstance(modalities, list):
        known.add("vision")
        if "image" in modalities:
            found.add("vision")
    outputs = architecture.get("output_modalities")
    if isinstance(outputs, list) and outputs and all(kind in ("embedding", "embeddings") for kind in outputs):
        found.add("embedding")
    declared = entry.get("capabilities")
    if isinstance(declared, dict):  # Mistral: {"function_calling": true, "vision": false, …}
        for name, on in declared.items():
            capability = _CAPABILITY_NAMES.get(str(name).lower())
            if capability:
                known.add(capability)
                if on is True:
                    found.add(capability)
    elif isinstance(declared, list):  # LM Studio, llama.cpp, Ollama-style lists
        listed = {cap for name in declared if (cap := _CAPABILITY_NAMES.get(str(name).lower()))}
        found |= listed
        # Every style of list names image input when the model has it; tools and thinking are
        # left out by servers that support them for any model (llama.cpp), so only vision is
        # known to be absent when unlisted.
        known |= listed | {"vision"}
    for name, on in entry.items():  # Fireworks-style flags: supports_tools, supports_image_input
        capability = _CAPABILITY_NAMES.get(name.removeprefix("supports_")) if name.startswith("supports_") else None
        if capability and isinstance(on, bool):
            known.add(capability)
            if on:
                found.add(capability)
    kind = entry.get("type")
    if kind in ("embedding", "embeddings"):  # LM Studio, Together
        found.add("embedding")
    elif kind in ("llm", "vlm"):  # LM Studio says whether a model sees images
        known.add("vision")
        if kind == "vlm":
            found.add("vision")
    # llama.cpp's server writes `output_modalities: ["text"]` for every model it serves, embedding
    # models included: from it (the entry with `meta`) that says nothing.
    said_outputs = isinstance(outputs, list) and not isinstance(entry.get("meta"), dict)
    said_kind = kind in ("embedding", "embeddings", "llm", "vlm") or said_outputs
    if not said_kind and _EMBEDDING_ID.search(str(entry.get("id", ""))):
        found.add("embedding")
    return Detected(frozenset(found), frozenset(known), detected_context_length(entry))


def capabilities_of(detected: Detected, defaults: Iterable[str] = ()) -> tuple[str, ...]:
    """Ollama's capability list: detection, with defaults only where the metadata was silent.

    An embedding model gets `embedding` and not `completion`: clients that offer every model for
    chat (Zed, Copilot) would otherwise list it as a chat model.
    """
    if "embedding" in detected.capabilities:
        caps = {"embedding"} | (detected.capabilities & {"vision"})
    else:
        unknown = set(_DIMENSIONS) - detected.known
        caps = {"completion"} | detected.capabilities | (set(defaults) & unknown)
    return tuple(name for name in ALL_CAPABILITIES if name in caps)


def describe(
    entry: Mapping[str, Any],
    *,
    upstream: str = "default",
    remote_host: str = "",
    prefix: str = "",
    capabilities: Iterable[str] = (),
    context_length: int | None = None,
    default_context_length: int = 131072,
    settings: ModelSettings | None = None,
) -> ModelCard:
    """A catalog card for one entry of an upstream's /models.

    Configuration wins over detection, detection over defaults: `settings` (the model's
    `[models."…"]` rules) and `context_length` (`--context-lengths`) are explicit; `capabilities`
    and `default_context_length` apply only where the metadata says nothing.
    """
    settings = settings or ModelSettings()
    upstream_id = str(entry["id"])
    detected = detect(entry)
    if settings.capabilities is not None:
        caps = set(settings.capabilities)
        if "embedding" not in caps:
            caps.add("completion")
        ordered = tuple(name for name in ALL_CAPABILITIES if name in caps)
    else:
        ordered = capabilities_of(detected, capabilities)
    client_id = prefix + upstream_id
    created = entry.get("created")
    meta = _object(entry.get("meta"))
    return ModelCard(
        name=ollama_name(settings.alias or client_id),
        upstream_id=upstream_id,
        upstream=upstream,
        capabilities=ordered,
        context_length=(context_length or settings.context_length or detected.context_length or default_context_length),
        created=created if isinstance(created, int) and not isinstance(created, bool) and created > 0 else None,
        remote_host=remote_host,
        options=dict(settings.options),
        hidden=settings.hidden,
        client_id=client_id,
        alias=settings.alias,
        published_parameters=_first_int(meta.get("n_params")),
        published_embedding_length=_first_int(meta.get("n_embd")),
    )


def listing_entries(listing: Any) -> list[dict[str, Any]] | None:
    """The model entries of a /models answer, or None when it holds no model list.

    llama.cpp's server answers with OpenAI's `data` and, beside it, Ollama-style `models`
    whose `capabilities` (e.g. `multimodal`) are merged into the matching `data` entry.
    """
    entries = listing.get("data") if isinstance(listing, dict) else listing
    if not isinstance(entries, list):
        return None
    entries = [entry for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str | int)]
    extra = listing.get("models") if isinstance(listing, dict) else None
    if isinstance(extra, list):
        described = {
            str(item.get("model") or item.get("name")): item["capabilities"]
            for item in extra
            if isinstance(item, dict) and isinstance(item.get("capabilities"), list)
        }
        entries = [
            {**entry, "capabilities": described[str(entry["id"])]}
            if str(entry["id"]) in described and "capabilities" not in entry
            else entry
            for entry in entries
        ]
    return [entry for entry in entries if str(entry["id"])]
