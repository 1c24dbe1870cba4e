"""The official Ollama VS Code extension (ollama/ollama-vscode 0.0.8), replayed call by call.

Each request is the one the extension makes through ollama-js 0.6.3 (`src/provider.ts`,
`src/convert.ts`, `src/contextLength.ts`, `src/recommendations.ts`), with its headers and body, and
each answer is read the way the extension reads it: the helpers below are its TypeScript, written
out in Python, so a field it needs that goes missing fails here as it would fail in VS Code.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from .fakes import FakeUpstream, text_stream, tool_stream

pytestmark = pytest.mark.anyio

KEY = "vscode-key-1"
# ollama-js sends these on every call, plus the extension's `headers` setting (here a key).
OLLAMA_JS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": "ollama-js/0.6.3 (x64 linux Node.js/v22.15.0)",
    "Authorization": f"Bearer {KEY}",
}
# The recommendations request is a plain fetch: the configured headers and an Accept.
PLAIN_FETCH = {"Authorization": f"Bearer {KEY}", "accept": "application/json"}

FALLBACK_CONTEXT_WINDOW = 32768
DEFAULT_MAX_OUTPUT_TOKENS = 4096
MINIMUM_MACHINE_CONTEXT = 64 * 1024

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
READ_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file of the workspace",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"server_api_key": [KEY], "capabilities": ["tools", "vision"]}


# ---- the extension's own reading of answers, from src/provider.ts and src/contextLength.ts -------


def is_tags_model(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("name"), str) and len(entry["name"]) > 0


def numeric_field(value: Any, keys: tuple[str, ...]) -> int | float | None:
    if not isinstance(value, dict):
        return None
    for key in keys:
        field = value.get(key)
        if isinstance(field, int | float) and not isinstance(field, bool):
            return field
    return None


def numeric_parameter(text: str | None, name: str) -> int | None:
    if not text:
        return None
    match = re.search(rf"^\s*(?:PARAMETER\s+)?{re.escape(name)}\s+(-?\d+)\b", text, re.IGNORECASE | re.MULTILINE)
    return int(match.group(1)) if match else None


def numeric_model_info(model_info: Any, keys: tuple[str, ...]) -> int | float | None:
    for key, value in (model_info or {}).items():
        if any(key.endswith(f".{k}") or key == k for k in keys) and isinstance(value, int | float):
            return value
    return None


def shared_context_window(model: dict[str, Any], show: dict[str, Any] | None) -> int | float | None:
    keys = ("max_context_length", "context_length")
    show = show or {}
    for value in (
        numeric_parameter(show.get("parameters"), "num_ctx"),
        numeric_parameter(show.get("modelfile"), "num_ctx"),
        numeric_field(model, keys),
        numeric_field(show, keys),
        numeric_field(model.get("details"), keys),
        numeric_field(show.get("details"), keys),
        numeric_model_info(model.get("model_info"), keys),
        numeric_model_info(show.get("model_info"), keys),
    ):
        if value is not None and value > 0:
            return value
    return None


def explicit_input_limit(model: dict[str, Any]) -> int | float | None:
    return numeric_field(model, ("max_input_tokens",)) or numeric_field(model.get("details"), ("max_input_tokens",))


def is_remote(model: dict[str, Any]) -> bool:
    return isinstance(model.get("remote_host"), str) and len(model["remote_host"]) > 0


def should_hydrate(model: dict[str, Any]) -> bool:
    """Whether the extension calls /api/show for a tags entry."""
    if not is_remote(model):
        return True
    return model.get("capabilities") is None or (
        shared_context_window(model, None) is None and explicit_input_limit(model) is None
    )


def is_cloud_model(name: str) -> bool:
    tag = name.split(":")[-1].lower()
    return tag == "cloud" or tag.endswith("-cloud")


def language_model(model: dict[str, Any], show: dict[str, Any] | None) -> dict[str, Any]:
    """`toLanguageModel`: what VS Code is told about the model."""
    capabilities = {c.lower() for c in [*(model.get("capabilities") or []), *((show or {}).get("capabilities") or [])]}
    window = shared_context_window(model, show) or FALLBACK_CONTEXT_WINDOW
    max_output = min(DEFAULT_MAX_OUTPUT_TOKENS, window - 1)
    family = (model.get("details") or {}).get("family") or ((show or {}).get("details") or {}).get("family")
    return {
        "id": model["name"],
        "family": family if isinstance(family, str) and family else model["name"].split(":")[0],
        "maxInputTokens": window - max_output,
        "maxOutputTokens": max_output,
        "toolCalling": bool(capabilities & {"tools", "tool"}),
        "imageInput": bool(capabilities & {"vision", "image"}),
        "local": not is_remote(model) and not is_cloud_model(model["name"]),
    }


def recommendations(payload: Any) -> list[str]:
    """`parseModelRecommendations`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("recommendations"), list):
        return []
    return [item["model"] for item in payload["recommendations"] if isinstance(item, dict) and "model" in item]


def machine_context_length(models: list[Any], requested: str) -> int | None:
    """`machineContextLength`: the loaded model's context window from /api/ps."""

    def key(name: str) -> str:
        return name.strip().lower().removesuffix(":latest")

    for candidate in models:
        if not isinstance(candidate, dict):
            continue
        names = [candidate.get("name"), candidate.get("model")]
        matches = any(isinstance(name, str) and key(name) == key(requested) for name in names)
        length = candidate.get("context_length")
        if matches and isinstance(length, int) and not isinstance(length, bool) and length > 0:
            return length
    return None


def read_chat_stream(response: httpx.Response) -> dict[str, Any]:
    """ollama-js's NDJSON reader and the extension's loop over chunks."""
    assert response.status_code == 200, response.text
    text, calls, prompt_tokens, completion_tokens = [], [], None, None
    for line in response.text.split("\n"):
        if not line:
            continue
        chunk = json.loads(line)
        assert "error" not in chunk, chunk  # ollama-js throws on an error line
        if isinstance(chunk.get("prompt_eval_count"), int) and chunk["prompt_eval_count"] >= 0:
            prompt_tokens = chunk["prompt_eval_count"]
        if isinstance(chunk.get("eval_count"), int) and chunk["eval_count"] >= 0:
            completion_tokens = chunk["eval_count"]
        message = chunk.get("message") or {}
        if message.get("content"):
            text.append(message["content"])
        for call in message.get("tool_calls") or []:
            # The extension falls back to a random UUID; a stable id is what pairs the result.
            assert isinstance(call["id"], str) and call["id"]
            assert isinstance(call["function"]["name"], str)
            assert isinstance(call["function"]["arguments"], dict)
            calls.append(call)
    return {"text": "".join(text), "calls": calls, "usage": (prompt_tokens, completion_tokens)}


# ---- the sequence -------------------------------------------------------------------------------


async def test_the_extensions_whole_sequence(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    # provideLanguageModelChatInformation: version (only logged), tags, recommendations.
    version = await client.get("/api/version", headers=OLLAMA_JS)
    assert version.status_code == 200 and isinstance(version.json()["version"], str)

    tags = await client.get("/api/tags", headers=OLLAMA_JS)
    assert tags.status_code == 200
    entries = [entry for entry in tags.json()["models"] if is_tags_model(entry)]
    assert {entry["name"] for entry in entries} == {"gpt-test:latest", "text-embedding-test:latest"}

    advice = await client.get("/api/experimental/model-recommendations", headers=PLAIN_FETCH)
    assert advice.status_code == 200
    assert advice.json() == {"recommendations": []}
    assert recommendations(advice.json()) == []

    # hydrateModels: a remote entry that carries capabilities and a context window needs no
    # /api/show, so a catalog of hundreds of models costs one request, not hundreds.
    assert [entry["name"] for entry in entries if should_hydrate(entry)] == []
    chat_model = next(entry for entry in entries if entry["name"] == "gpt-test:latest")
    assert chat_model["remote_model"] == "gpt-test" and chat_model["remote_host"] == "http://upstream.test"
    seen = language_model(chat_model, None)
    assert seen == {
        "id": "gpt-test:latest",
        "family": "gpt",
        "maxInputTokens": 131072 - 4096,
        "maxOutputTokens": 4096,
        "toolCalling": True,
        "imageInput": True,
        "local": False,  # so the extension never polls /api/ps for it
    }

    # provideLanguageModelChatResponse, first turn: the model asks for a tool.
    fake.on("POST", "/chat/completions", tool_stream(("call_read_1", "read_file", {"path": "README.md"})))
    first_turn = [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "Summarise the README."},
    ]
    request = {
        "model": seen["id"],
        "messages": first_turn,
        "stream": True,
        "tools": [READ_FILE_TOOL],
        "options": {"temperature": 0.2},
    }
    answer = read_chat_stream(await client.post("/api/chat", headers=OLLAMA_JS, json=request))
    assert answer["text"] == ""
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in answer["calls"]] == [
        ("call_read_1", "read_file", {"path": "README.md"})
    ]
    assert answer["usage"] == (11, 7)  # the usage data part needs both counts
    sent = fake.last_body
    assert sent["model"] == "gpt-test" and sent["tools"] == [READ_FILE_TOOL] and sent["temperature"] == 0.2

    # Second turn: convert.ts sends the call back with its id and the result by `tool_call_id`,
    # images of the result on the tool message.
    fake.on("POST", "/chat/completions", text_stream("It is ", "a proxy."))
    call = answer["calls"][0]
    second_turn = [
        *first_turn,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": call["id"], "function": call["function"]}],
        },
        {"role": "tool", "content": "# oai2ollama", "images": [PNG], "tool_call_id": call["id"]},
    ]
    request = {**request, "messages": second_turn}
    answer = read_chat_stream(await client.post("/api/chat", headers=OLLAMA_JS, json=request))
    assert answer == {"text": "It is a proxy.", "calls": [], "usage": (11, 7)}
    messages = fake.last_body["messages"]
    assert messages[2]["tool_calls"][0]["id"] == "call_read_1"
    assert messages[3] == {"role": "tool", "content": "# oai2ollama", "tool_call_id": "call_read_1"}
    assert messages[4]["role"] == "user"
    assert messages[4]["content"][1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}

    # checkMachineContextLength, were the model local: /api/ps names it with a window of 64K or more.
    loaded = (await client.get("/api/ps", headers=OLLAMA_JS)).json()["models"]
    length = machine_context_length(loaded, seen["id"])
    assert length is not None and length >= MINIMUM_MACHINE_CONTEXT


async def test_show_gives_what_the_extension_reads_when_it_hydrates(client: httpx.AsyncClient) -> None:
    # A model named in the extension's `models` setting but missing from /api/tags is hydrated.
    show = await client.post("/api/show", headers=OLLAMA_JS, json={"model": "gpt-test:latest", "verbose": False})
    assert show.status_code == 200
    answer = show.json()
    assert numeric_parameter(answer["parameters"], "num_ctx") == 131072
    seen = language_model({"name": "gpt-test:latest"}, answer)
    assert (seen["maxInputTokens"], seen["toolCalling"], seen["imageInput"]) == (131072 - 4096, True, True)


async def test_recommendations_accept_only_get(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/experimental/model-recommendations", headers=OLLAMA_JS)
    assert answer.status_code == 405
    assert "error" in answer.json()


async def test_without_the_key_the_extension_gets_401_it_can_show(client: httpx.AsyncClient) -> None:
    # throwIfNotOK reads `error` from the body for its message.
    answer = await client.get("/api/tags", headers={k: v for k, v in OLLAMA_JS.items() if k != "Authorization"})
    assert answer.status_code == 401 and isinstance(answer.json()["error"], str)
