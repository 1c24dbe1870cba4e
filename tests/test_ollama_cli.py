"""What the real `ollama` CLI reads from /api/show and /api/tags, replayed step by step.

The `ollama` binary is not packaged on the registries this project can reach, so `ollama show`'s
reading (cmd/cmd.go `showInfo`) is written out here: the current one, and the one before Ollama
0.12, which asserts each `model_info` key's Go type and panics on a missing or mistyped one. JSON
decodes into Go's `map[string]any` as float64 for every number, string for strings.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from .fakes import transcript_models

pytestmark = pytest.mark.anyio


class Panic(AssertionError):
    """Where the Go CLI would panic (a failed type assertion on an interface value)."""


def _go_float(value: Any, key: str) -> float:
    """`resp.ModelInfo[key].(float64)` without the `ok` form: a panic unless a JSON number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Panic(f"interface conversion: interface {{}} is {type(value).__name__}, not float64 ({key})")
    return float(value)


def _go_string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise Panic(f"interface conversion: interface {{}} is {type(value).__name__}, not string ({key})")
    return value


def human_number(b: int) -> str:
    """Go's format.HumanNumber."""
    if b >= 1_000_000_000:
        n = b / 1_000_000_000
        return f"{n:.0f}B" if n == math.floor(n) else f"{n:.1f}B"
    if b >= 1_000_000:
        n = b / 1_000_000
        return f"{n:.0f}M" if n == math.floor(n) else f"{n:.2f}M"
    if b >= 1000:
        return f"{b / 1000:.0f}K"
    return str(b)


def format_float(f: float) -> str:
    """strconv.FormatFloat(f, 'f', -1, 64) for the integral values seen here."""
    return str(int(f)) if f == int(f) else repr(f)


def show_rows_before_0_12(resp: dict[str, Any]) -> list[tuple[str, str]]:
    """The "Model" table of `ollama show` before 0.12 (cmd/cmd.go at 8b894933a^)."""
    rows = []
    info = resp.get("model_info")
    details = resp.get("details") or {}
    if info is not None:
        arch = _go_string(info.get("general.architecture"), "general.architecture")
        rows.append(("architecture", arch))
        count = _go_float(info.get("general.parameter_count"), "general.parameter_count")
        rows.append(("parameters", human_number(int(count))))
        key = f"{arch}.context_length"
        rows.append(("context length", format_float(_go_float(info.get(key), key))))
        key = f"{arch}.embedding_length"
        rows.append(("embedding length", format_float(_go_float(info.get(key), key))))
    else:
        rows += [("architecture", details.get("family", "")), ("parameters", details.get("parameter_size", ""))]
    rows.append(("quantization", _go_string(details.get("quantization_level", ""), "quantization_level")))
    return rows


def show_rows_now(resp: dict[str, Any]) -> list[tuple[str, str]]:
    """The "Model" table of the current `ollama show` (cmd/cmd.go `showInfo`)."""
    rows = []
    if resp.get("remote_host"):
        rows += [("Remote model", resp["remote_model"]), ("Remote URL", resp["remote_host"])]
    info = resp.get("model_info")
    details = resp.get("details") or {}
    if info is not None:
        arch = info.get("general.architecture") if isinstance(info.get("general.architecture"), str) else ""
        if arch:
            rows.append(("architecture", arch))
        size = details.get("parameter_size", "")
        count = info.get("general.parameter_count")
        if not size and isinstance(count, int | float) and not isinstance(count, bool):
            size = human_number(int(count))
        if size:
            rows.append(("parameters", size))
        for key, label in (
            (f"{arch}.context_length", "context length"),
            (f"{arch}.embedding_length", "embedding length"),
        ):
            value = info.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append((label, format_float(value)))
    rows.append(("quantization", details.get("quantization_level", "")))
    return rows


@pytest.fixture
def fake(fake):  # type: ignore[no-untyped-def]
    fake.models = [
        *transcript_models("llamacpp"),
        {"id": "llama3.1:8b", "object": "model"},
        {"id": "gpt-4o", "object": "model", "created": 1715367049},
    ]
    return fake


@pytest.mark.parametrize(
    ("model", "arch", "parameters", "context", "width"),
    [
        ("gemma-3-4b-it-Q4_K_M.gguf", "gemma", "3.9B", "131072", "2560"),  # llama.cpp's meta
        ("llama3.1:8b", "llama3.1", "8B", "131072", "4096"),  # the size in the tag
        ("gpt-4o", "gpt", "8B", "131072", "4096"),  # nothing tells: a plausible default
    ],
)
async def test_ollama_show(client: httpx.AsyncClient, model: str, arch: str, parameters: str, context: str, width: str):
    response = await client.post("/api/show", json={"model": model, "verbose": False})
    assert response.status_code == 200
    shown = response.json()
    expected = [
        ("architecture", arch),
        ("parameters", parameters),
        ("context length", context),
        ("embedding length", width),
        ("quantization", ""),
    ]
    assert show_rows_before_0_12(shown) == expected
    assert [row for row in show_rows_now(shown) if not row[0].startswith("Remote")] == expected
    assert shown["details"]["format"] == "gguf"


async def test_ollama_list_and_the_official_client(client: httpx.AsyncClient, ollama_client: Any) -> None:
    """`ollama list` prints name, digest[:12], size and modified from /api/tags; the Python client
    parses the same shapes."""
    tags = (await client.get("/api/tags")).json()["models"]
    assert {entry["details"]["format"] for entry in tags} == {"gguf"}
    sizes = {entry["name"]: entry["details"]["parameter_size"] for entry in tags}
    assert sizes["gemma-3-4b-it-Q4_K_M.gguf:latest"] == "3.9B" and sizes["llama3.1:8b"] == "8B"
    assert sizes["gpt-4o:latest"] == ""  # not guessed where a client shows it as a fact
    assert all(len(entry["digest"]) == 64 for entry in tags)
    shown = await ollama_client.show("llama3.1:8b")
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.parameter_count"] == 8_000_000_000
    assert shown.modelinfo["llama3.1.embedding_length"] == 4096
    assert shown.details is not None and shown.details.format == "gguf"
