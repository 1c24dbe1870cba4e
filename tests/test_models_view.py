"""The pure model views: detection from recorded /models answers, names, and Ollama's shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oai2ollama.translate.model_sizes import DEFAULT_PARAMETER_COUNT, human_number, parameters_from_id
from oai2ollama.translate.model_views import openai_model, parameters_text, ps_entry, show_answer, tags_entry
from oai2ollama.translate.models import ModelCard, ModelSettings, describe, listing_entries, ollama_name

from .fakes import TRANSCRIPTS

STARTED = 1_700_000_000.0


def described(style: str, **kwargs: Any) -> dict[str, tuple[tuple[str, ...], int]]:
    listing = json.loads((TRANSCRIPTS / f"models_{style}.json").read_text())
    entries = listing_entries(listing)
    assert entries is not None
    cards = [describe(entry, default_context_length=4096, **kwargs) for entry in entries]
    return {card.upstream_id: (card.capabilities, card.context_length) for card in cards}


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (
            "openrouter",
            {
                "openai/gpt-4o": (("completion", "tools", "vision"), 128000),
                "deepseek/deepseek-r1:free": (("completion", "thinking"), 163840),
                "anthropic/claude-sonnet-4": (("completion", "tools", "vision", "thinking"), 1000000),
                "openai/text-embedding-3-small": (("embedding",), 8192),
            },
        ),
        (
            "vllm",
            {
                "Qwen/Qwen2.5-Coder-32B-Instruct": (("completion",), 32768),
                "BAAI/bge-m3": (("embedding",), 8192),
            },
        ),
        ("llamacpp", {"gemma-3-4b-it-Q4_K_M.gguf": (("completion", "vision"), 131072)}),
        (
            "lmstudio",
            {
                "qwen2-vl-7b-instruct": (("completion", "vision"), 32768),
                # A loaded model's window is the one prompts must fit.
                "meta-llama-3.1-8b-instruct": (("completion", "tools"), 16384),
                "text-embedding-nomic-embed-text-v1.5": (("embedding",), 2048),
            },
        ),
        (
            "mistral",
            {
                "codestral-latest": (("completion", "tools", "insert"), 262144),
                "mistral-embed": (("embedding",), 8192),
            },
        ),
        (
            "openai",
            {
                "gpt-4o": (("completion",), 4096),
                "gpt-4o-mini": (("completion",), 4096),
                "o3-mini": (("completion",), 4096),
                "text-embedding-3-small": (("embedding",), 4096),
                "dall-e-3": (("completion",), 4096),
            },
        ),
    ],
)
def test_detection_from_recorded_listings(style: str, expected: dict[str, Any]) -> None:
    assert described(style) == expected


@pytest.mark.parametrize(
    ("style", "model", "expected"),
    [
        # Plain OpenAI says nothing: the defaults apply.
        ("openai", "gpt-4o", ("completion", "tools", "vision", "thinking")),
        # OpenRouter says what gpt-4o does: no thinking, whatever the defaults say.
        ("openrouter", "openai/gpt-4o", ("completion", "tools", "vision")),
        # OpenRouter says R1 has no tools and no image input.
        ("openrouter", "deepseek/deepseek-r1:free", ("completion", "thinking")),
        # vLLM says only the context length.
        ("vllm", "Qwen/Qwen2.5-Coder-32B-Instruct", ("completion", "tools", "vision", "thinking")),
        # llama.cpp names image input; tools and thinking are up to the defaults.
        ("llamacpp", "gemma-3-4b-it-Q4_K_M.gguf", ("completion", "tools", "vision", "thinking")),
        # LM Studio's type says it cannot see; its list says tools.
        ("lmstudio", "meta-llama-3.1-8b-instruct", ("completion", "tools", "thinking")),
        # Mistral's map speaks for tools and vision, not for thinking.
        ("mistral", "codestral-latest", ("completion", "tools", "insert", "thinking")),
        # Defaults never turn an embedding model into a chat model.
        ("openai", "text-embedding-3-small", ("embedding",)),
    ],
)
def test_defaults_fill_only_what_metadata_is_silent_about(style: str, model: str, expected: tuple[str, ...]) -> None:
    found = described(style, capabilities=["tools", "vision", "thinking"])
    assert found[model][0] == expected


@pytest.mark.parametrize(
    ("entry", "capabilities"),
    [
        # llama.cpp says `output_modalities: ["text"]` for embedding models too: the id decides.
        (
            {"id": "nomic-embed-text", "meta": {"n_ctx": 2048}, "architecture": {"output_modalities": ["text"]}},
            ("embedding",),
        ),
        ({"id": "tiny", "meta": {"n_ctx": 2048}, "architecture": {"output_modalities": ["text"]}}, ("completion",)),
        # OpenRouter's word is taken.
        ({"id": "org/embed-like-chat", "architecture": {"output_modalities": ["text"]}}, ("completion",)),
    ],
)
def test_what_output_modalities_say(entry: dict[str, Any], capabilities: tuple[str, ...]) -> None:
    assert describe(entry).capabilities == capabilities


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"id": "m", "context_window": 131072}, 131072),  # Groq
        ({"id": "m", "top_provider": {"context_length": 65536}}, 65536),
        ({"id": "m", "meta": {"n_ctx": 8192}}, 8192),
        ({"id": "m", "meta": {"n_ctx": 2048, "n_ctx_train": 4096}}, 2048),  # llama.cpp: what a request may fill
        ({"id": "m", "meta": {"n_ctx_train": 4096}}, 4096),  # older llama.cpp builds publish only this
        ({"id": "m", "context_length": "32768"}, 32768),
        ({"id": "m", "context_length": 0, "max_model_len": 4096}, 4096),
        ({"id": "m", "context_length": True}, 999),
        ({"id": "m", "context_length": None}, 999),
    ],
)
def test_context_length_fields(entry: dict[str, Any], expected: int) -> None:
    assert describe(entry, default_context_length=999).context_length == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"id": "x", "supports_tools": True, "supports_image_input": False}, ("completion", "tools")),
        ({"id": "x", "capabilities": ["completion", "tools", "thinking"]}, ("completion", "tools", "thinking")),
        ({"id": "x", "capabilities": ["embedding"]}, ("embedding",)),
        ({"id": "x", "type": "embedding"}, ("embedding",)),  # Together
        ({"id": "intfloat/multilingual-e5-large"}, ("embedding",)),
        ({"id": "sentence-transformers/all-MiniLM-L6-v2"}, ("embedding",)),
        ({"id": "nomic-embed-text", "type": "llm"}, ("completion",)),  # the type is believed over the name
        ({"id": "qwen2.5-7b-instruct"}, ("completion",)),
    ],
)
def test_other_metadata_styles(entry: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert describe(entry).capabilities == expected


@pytest.mark.parametrize(
    ("listing", "ids"),
    [
        ({"data": [{"id": "a"}, {"id": ""}, {"object": "model"}, "junk", {"id": "b"}]}, ["a", "b"]),
        ([{"id": "bare-list"}], ["bare-list"]),
        ({"data": []}, []),
        ({"object": "list"}, None),
        ({"error": "nope"}, None),
        ("text", None),
    ],
)
def test_listing_entries(listing: Any, ids: list[str] | None) -> None:
    entries = listing_entries(listing)
    assert (None if entries is None else [e["id"] for e in entries]) == ids


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("gpt-4o", "gpt-4o:latest"),
        ("llama3.2:3b", "llama3.2:3b"),
        ("openai/gpt-4o", "openai/gpt-4o:latest"),
        ("deepseek/deepseek-r1:free", "deepseek/deepseek-r1:free"),
        ("registry:5000/ns/model", "registry:5000/ns/model:latest"),
        ("ft:gpt-4o-mini:acme::abc123", "ft:gpt-4o-mini:acme::abc123"),
    ],
)
def test_ollama_name(model_id: str, name: str) -> None:
    assert ollama_name(model_id) == name


def test_prefix_and_alias_name_the_model() -> None:
    entry = {"id": "openai/gpt-4o"}
    prefixed = describe(entry, prefix="openrouter/")
    assert (prefixed.name, prefixed.client_id, prefixed.upstream_id) == (
        "openrouter/openai/gpt-4o:latest",
        "openrouter/openai/gpt-4o",
        "openai/gpt-4o",
    )
    aliased = describe(entry, prefix="openrouter/", settings=ModelSettings(alias="smart"))
    assert (aliased.name, aliased.upstream_id, aliased.alias) == ("smart:latest", "openai/gpt-4o", "smart")


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        (("tools", "vision"), ("completion", "tools", "vision")),  # completion is implied for a chat model
        (("embedding",), ("embedding",)),
        (("completion", "embedding"), ("completion", "embedding")),
        ((), ("completion",)),
    ],
)
def test_configured_capabilities_replace_detection(configured: tuple[str, ...], expected: tuple[str, ...]) -> None:
    entry = {"id": "m", "supported_parameters": ["tools", "reasoning"], "architecture": {"input_modalities": ["image"]}}
    card = describe(entry, capabilities=["insert"], settings=ModelSettings(capabilities=configured))
    assert card.capabilities == expected


def test_context_length_precedence() -> None:
    entry = {"id": "m", "context_length": 32000}
    assert describe(entry, default_context_length=1).context_length == 32000
    assert describe(entry, settings=ModelSettings(context_length=64000)).context_length == 64000
    # --context-lengths (a flag) is the most explicit of all.
    assert describe(entry, context_length=8000, settings=ModelSettings(context_length=64000)).context_length == 8000


def card(**kwargs: Any) -> ModelCard:
    values: dict[str, Any] = {
        "name": "gpt-4o:latest",
        "upstream_id": "gpt-4o",
        "upstream": "openai",
        "capabilities": ("completion", "tools", "vision"),
        "context_length": 128000,
        "created": 1715367049,
        "remote_host": "https://api.openai.com",
        "client_id": "gpt-4o",
    }
    values.update(kwargs)
    return ModelCard(**values)


def test_tags_entry() -> None:
    assert tags_entry(card(), STARTED) == {
        "name": "gpt-4o:latest",
        "model": "gpt-4o:latest",
        "remote_model": "gpt-4o",
        "remote_host": "https://api.openai.com",
        "modified_at": "2024-05-10T18:50:49Z",
        "size": 0,
        "digest": card().digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "gpt",
            "families": ["gpt"],
            "parameter_size": "",
            "quantization_level": "",
            "context_length": 128000,
            "embedding_length": 4096,
        },
        "capabilities": ["completion", "tools", "vision"],
    }


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"upstream": "openrouter"}, id="upstream"),
        pytest.param({"remote_host": "https://openrouter.ai"}, id="upstream-host"),
        pytest.param({"upstream_id": "gpt-4o-2024-08-06"}, id="upstream-id"),
        pytest.param({"name": "openai/gpt-4o:latest", "client_id": "openai/gpt-4o"}, id="prefixed-id"),
        pytest.param({"capabilities": ("completion", "tools")}, id="capabilities"),
        pytest.param({"context_length": 64000}, id="context-length"),
        pytest.param({"options": {"temperature": 0.2}}, id="options"),
        pytest.param({"name": "fast:latest", "alias": "fast"}, id="alias"),
    ],
)
def test_digest_changes_with_what_the_card_says(change: dict[str, Any]) -> None:
    """llm-ollama caches capabilities by digest: a restart with other `-c` must show a change."""
    assert card(**change).digest != card().digest
    assert card(**change).digest == card(**change).digest  # stable across restarts
    assert len(card().digest) == 64


def test_digest_ignores_what_the_card_does_not_say() -> None:
    assert card(created=1).digest == card().digest
    assert card(options={"a": 1, "b": 2}).digest == card(options={"b": 2, "a": 1}).digest


@pytest.mark.parametrize(
    ("model_id", "count"),
    [
        ("llama3.1:8b", 8_000_000_000),
        ("meta-llama/Llama-3.3-70B-Instruct", 70_000_000_000),
        ("deepseek-r1-distill-qwen-1.5b", 1_500_000_000),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 135_000_000),
        ("qwen2.5:0.5b", 500_000_000),
        ("Qwen/Qwen2.5-Coder-32B-Instruct", 32_000_000_000),
        ("mistralai/mixtral-8x7b-instruct", 56_000_000_000),
        ("qwen3-30b-a3b", 30_000_000_000),  # total, not active, parameters
        ("openai/gpt-oss-120b", 120_000_000_000),
        ("gemma-3-4b-it-Q4_K_M.gguf", 4_000_000_000),
        ("gpt-4o", None),
        ("phi-3-mini-4k-instruct", None),  # 4k is a context length
        ("claude-3-5-sonnet-20241022", None),
        ("text-embedding-3-small", None),
        ("bge-m3", None),
        ("meta-llama/llama-3.1-8b/instruct", None),  # only the last segment names the model
    ],
)
def test_parameters_from_id(model_id: str, count: int | None) -> None:
    assert parameters_from_id(model_id) == count


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (8_000_000_000, "8B"),
        (3_880_263_168, "3.9B"),
        (1_500_000_000, "1.5B"),
        (494_032_768, "494.03M"),
        (135_000_000, "135M"),
        (22_700, "23K"),
        (999, "999"),
    ],
)
def test_human_number_as_ollama_writes_it(count: int, text: str) -> None:
    assert human_number(count) == text


@pytest.mark.parametrize(
    ("entry", "parameters", "size", "width"),
    [
        pytest.param(
            {"id": "gemma-3-4b-it-Q4_K_M.gguf", "meta": {"n_params": 3880263168, "n_embd": 2560}},
            3_880_263_168,
            "3.9B",
            2560,
            id="llamacpp-meta",
        ),
        pytest.param({"id": "llama3.1:8b"}, 8_000_000_000, "8B", 4096, id="size-in-the-tag"),
        pytest.param({"id": "SmolLM2-135M-Instruct"}, 135_000_000, "135M", 576, id="millions"),
        pytest.param({"id": "Llama-3.1-405B-Instruct"}, 405_000_000_000, "405B", 16384, id="largest"),
        pytest.param({"id": "gpt-4o"}, DEFAULT_PARAMETER_COUNT, "", 4096, id="nothing-tells"),
        pytest.param({"id": "x-7b", "meta": {"n_params": "junk", "n_embd": -1}}, 7_000_000_000, "7B", 4096, id="junk"),
    ],
)
def test_size_of_a_model(entry: dict[str, Any], parameters: int, size: str, width: int) -> None:
    described_card = describe(entry)
    assert (described_card.parameter_count, described_card.parameter_size) == (parameters, size)
    assert described_card.embedding_length == width


def test_parameters_in_ollamas_format() -> None:
    options = {
        "temperature": 0.2,
        "num_predict": 2048,
        "stop": ["<|im_end|>", 'say "end"'],
        "top_p": 1.0,
        "think": False,
    }
    text = parameters_text(card(options=options))
    assert text == (
        "num_ctx                        128000\n"
        "temperature                    0.2\n"
        "num_predict                    2048\n"
        'stop                           "<|im_end|>"\n'
        'stop                           "say \\"end\\""\n'
        "top_p                          1"
    )


def test_show_answer() -> None:
    answer = show_answer(card(options={"temperature": 0.2, "stop": ["<|im_end|>"]}), STARTED)
    assert answer["model_info"] == {
        "general.architecture": "gpt",
        "general.basename": "gpt-4o",
        "general.parameter_count": DEFAULT_PARAMETER_COUNT,
        "gpt.context_length": 128000,
        "gpt.embedding_length": 4096,
    }
    assert answer["details"]["format"] == "gguf"
    assert answer["capabilities"] == ["completion", "tools", "vision"]
    assert answer["parameters"].splitlines()[0] == "num_ctx                        128000"
    assert answer["modelfile"] == (
        '# Modelfile generated by "ollama show"\n'
        "FROM gpt-4o\n"
        'TEMPLATE """{{ .Prompt }}"""\n'
        "PARAMETER num_ctx 128000\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER stop <|im_end|>\n"
    )
    assert (answer["remote_model"], answer["remote_host"]) == ("gpt-4o", "https://api.openai.com")


def test_show_answer_omits_an_unknown_remote_host() -> None:
    assert "remote_host" not in show_answer(card(remote_host=""), STARTED)
    assert "remote_host" not in tags_entry(card(remote_host=""), STARTED)


def test_ps_and_openai_views() -> None:
    entry = ps_entry(card(), STARTED + 300)
    assert (entry["name"], entry["model"], entry["context_length"]) == ("gpt-4o:latest", "gpt-4o:latest", 128000)
    assert entry["expires_at"] == "2023-11-14T22:18:20Z"
    assert openai_model(card(), STARTED) == {
        "id": "gpt-4o:latest",
        "object": "model",
        "created": 1715367049,
        "owned_by": "openai",
    }
