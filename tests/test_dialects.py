"""Upstream kinds: which kind each server is, and requests adapted to what it accepts.

OpenAI's own API rejects the sampling extras vLLM and llama.cpp take (400 "Unrecognized request
argument") and wants `max_completion_tokens`; Azure takes its key as `api-key`; OpenRouter and
Ollama read reasoning history from `reasoning`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from oai2ollama.config import Settings
from oai2ollama.target import Target
from oai2ollama.translate.dialects import DIALECTS, adapt, kind_from_models

from .conftest import ClientFor
from .fakes import completion, text_stream

pytestmark = pytest.mark.anyio

EXTRAS = {"top_k": 40, "min_p": 0.05, "typical_p": 0.9, "repeat_penalty": 1.1, "repetition_penalty": 1.1}


@pytest.mark.parametrize(
    ("base_url", "kind"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://my-resource.openai.azure.com/openai/v1", "azure"),
        ("https://x.cognitiveservices.azure.com/openai/deployments/d?api-version=2024-10-21", "azure"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:1234/v1", "lmstudio"),
        ("http://localhost:8000/v1", None),
        ("https://api.deepseek.com", None),
        ("http://gpu-box:11434/v1", None),  # a remote port says nothing about the server
    ],
)
def test_kind_from_host(base_url: str, kind: str | None) -> None:
    assert Target(base_url=base_url).host_kind == kind


@pytest.mark.parametrize(
    ("entries", "kind"),
    [
        ([{"id": "tiny", "owned_by": "llamacpp", "meta": {"n_ctx_train": 4096}}], "llama.cpp"),
        ([{"id": "Qwen/Qwen3-8B", "owned_by": "vllm", "max_model_len": 32768}], "vllm"),
        ([{"id": "qwen3:8b", "object": "model", "owned_by": "library"}], "ollama"),
        ([{"id": "gpt-4o", "owned_by": "system"}], None),
        ([], None),
    ],
)
def test_kind_from_models(entries: list[dict[str, Any]], kind: str | None) -> None:
    assert kind_from_models(entries) == kind


@pytest.mark.parametrize(
    ("kind", "sent"),
    [
        ("openai", set()),
        ("azure", set()),
        ("openrouter", {"top_k", "min_p", "repetition_penalty"}),
        ("vllm", {"top_k", "min_p", "repetition_penalty"}),
        ("llama.cpp", {"top_k", "min_p", "typical_p", "repeat_penalty"}),
        ("lmstudio", {"top_k", "min_p", "repeat_penalty"}),
        ("ollama", set()),
        ("generic", set(EXTRAS)),
    ],
)
def test_each_kind_gets_only_the_sampling_fields_it_takes(kind: str, sent: set[str]) -> None:
    body = adapt({"model": "m", "temperature": 0.2, **EXTRAS}, DIALECTS[kind], translated=True)
    assert set(body) - {"model", "temperature"} == sent
    assert body["temperature"] == 0.2


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("openai", {"max_tokens": 5}, {"max_completion_tokens": 5}),
        ("azure", {"max_tokens": 5}, {"max_completion_tokens": 5}),
        ("vllm", {"max_tokens": 5}, {"max_tokens": 5}),
        ("openai", {"temperature": 1}, {"temperature": 1}),
    ],
)
def test_the_token_limit_field(kind: str, body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert adapt(body, DIALECTS[kind], translated=False) == expected


@pytest.mark.parametrize(
    ("kind", "field"), [("openrouter", "reasoning"), ("ollama", "reasoning"), ("vllm", "reasoning_content")]
)
def test_reasoning_history_goes_where_the_kind_reads_it(kind: str, field: str) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "reasoning_content": "r"}]
    body = adapt({"messages": messages}, DIALECTS[kind], translated=True)
    assert body["messages"][1] == {"role": "assistant", "content": "a", field: "r"}


@pytest.mark.parametrize(
    ("kind", "sent"), [("openrouter", {"reasoning": {"effort": "high"}}), ("vllm", {"reasoning_effort": "high"})]
)
def test_the_effort_goes_where_the_kind_reads_it(kind: str, sent: dict[str, Any]) -> None:
    assert adapt({"reasoning_effort": "high"}, DIALECTS[kind], translated=True) == sent


async def test_think_on_v1_reaches_openrouter_as_its_reasoning_object(client_for: ClientFor, fake: Any) -> None:
    fake.models[:] = [{"id": "deepseek/deepseek-r1", "supported_parameters": ["reasoning", "tools"]}]
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    http = await client_for(Settings(_env_file=None, base_url="https://openrouter.ai/v1", api_key="k"))  # type: ignore[call-arg]
    request = {"model": "deepseek/deepseek-r1", "messages": [{"role": "user", "content": "hi"}], "think": "high"}
    assert (await http.post("/v1/chat/completions", json=request)).status_code == 200
    assert fake.last_body["reasoning"] == {"effort": "high"} and "reasoning_effort" not in fake.last_body


def test_a_clients_own_v1_request_keeps_its_fields() -> None:
    body = adapt({"max_tokens": 5, **EXTRAS}, DIALECTS["openai"], translated=False)
    assert body == {"max_completion_tokens": 5, **EXTRAS}


@pytest.mark.parametrize(
    ("base_url", "path", "url"),
    [
        ("https://a.test/v1", "/chat/completions", "https://a.test/v1/chat/completions"),
        (
            "https://r.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21",
            "/chat/completions",
            "https://r.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
    ],
)
def test_a_base_url_keeps_its_query_on_every_request(base_url: str, path: str, url: str) -> None:
    assert Target(base_url=base_url).url(path) == url


async def test_azure_gets_its_key_as_api_key_and_its_query(client_for: ClientFor, fake: Any) -> None:
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    base = "https://res.openai.azure.com/v1?api-version=2024-10-21"
    http = await client_for(Settings(_env_file=None, base_url=base, api_key="az-key", models=["gpt-test"]))  # type: ignore[call-arg]
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    assert (await http.post("/api/chat", json=request)).status_code == 200
    sent = fake.requests[-1]
    assert sent.url.path.endswith("/chat/completions") and sent.url.params["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == "az-key" and "authorization" not in sent.headers


async def test_native_options_reach_openai_without_its_unknown_fields(client_for: ClientFor, fake: Any) -> None:
    fake.on("POST", "/chat/completions", text_stream("ok"))
    http = await client_for(Settings(_env_file=None, base_url="https://api.openai.com/v1", api_key="sk-x"))  # type: ignore[call-arg]
    options = {"top_k": 20, "min_p": 0.1, "typical_p": 0.7, "repeat_penalty": 1.2, "temperature": 0.3}
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "options": options}
    assert (await http.post("/api/chat", json={**request, "stream": False})).status_code == 200
    assert not set(EXTRAS) & set(fake.last_body)
    assert fake.last_body["temperature"] == 0.3


async def test_a_kind_set_in_the_config_file_wins(client_for: ClientFor, fake: Any, tmp_path: Any) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[upstreams]]\nname = "box"\nbase_url = "http://upstream.test/v1"\nkind = "llama.cpp"\n')
    fake.on("POST", "/chat/completions", text_stream("ok"))
    http = await client_for(Settings(_env_file=None, config=path))  # type: ignore[call-arg]
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "options": {"repeat_penalty": 1.3}}
    assert (await http.post("/api/chat", json={**request, "stream": False})).status_code == 200
    assert fake.last_body["repeat_penalty"] == 1.3 and "repetition_penalty" not in fake.last_body


@pytest.fixture
async def openai_hosted(client_for: ClientFor) -> httpx.AsyncClient:
    return await client_for(Settings(_env_file=None, base_url="https://api.openai.com/v1", api_key="sk-x"))  # type: ignore[call-arg]


async def test_native_chat_to_openai_sends_max_completion_tokens(openai_hosted, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 9}}
    assert (await openai_hosted.post("/api/chat", json={**request, "stream": False})).status_code == 200
    assert fake.last_body["max_completion_tokens"] == 9
    assert "max_tokens" not in fake.last_body


async def test_fill_in_the_middle_keeps_max_tokens(openai_hosted, fake):
    fake.on("POST", "/completions", text_stream("ok"))
    request = {"model": "gpt-test", "prompt": "def f(", "suffix": ")", "options": {"num_predict": 9}, "stream": False}
    assert (await openai_hosted.post("/api/generate", json=request)).status_code == 200
    assert fake.last_body["max_tokens"] == 9


async def test_anthropic_messages_to_openai_send_max_completion_tokens(openai_hosted, fake):
    fake.on("POST", "/chat/completions", text_stream("ok"))
    request = {"model": "gpt-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    assert (await openai_hosted.post("/v1/messages", json=request)).status_code == 200
    assert fake.last_body["max_completion_tokens"] == 100
    assert "max_tokens" not in fake.last_body


async def test_openai_relay_to_openai_renames_max_tokens(openai_hosted, fake):
    """A client's (or a model override's) `max_tokens` reaches OpenAI's API under the name all its models take."""
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
    assert (await openai_hosted.post("/v1/chat/completions", json=request)).status_code == 200
    assert fake.last_body["max_completion_tokens"] == 7
    assert "max_tokens" not in fake.last_body


async def test_openai_relay_elsewhere_keeps_max_tokens(client, fake):
    fake.on("POST", "/chat/completions", httpx.Response(200, json=completion("ok")))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    assert fake.last_body["max_tokens"] == 7
