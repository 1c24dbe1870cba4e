"""Discovery and model-management routes, checked the way strict clients read them."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import httpx
import pytest

from .fakes import FakeUpstream, openai_error, text_stream

pytestmark = pytest.mark.anyio

DETAILS_KEYS = {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"extra_models": ["extra/model-x", "tagged:7b"], "capabilities": ["tools", "vision"]}


def upstream_model_calls(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.url.path == "/v1/models")


def rfc3339(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_tags_entry_like_zed(entry: dict[str, Any]) -> None:
    """Zed's, Roo Code's and Open WebUI's parsers, written out: any missing or mistyped key fails them."""
    assert isinstance(entry["name"], str) and entry["name"]
    assert entry["model"] == entry["name"]
    assert ":" in entry["name"].rsplit("/", 1)[-1], "names carry a tag, as Ollama lists them"
    rfc3339(entry["modified_at"])
    assert isinstance(entry["size"], int) and not isinstance(entry["size"], bool) and entry["size"] >= 0
    assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
    details = entry["details"]
    assert details.keys() >= DETAILS_KEYS
    for key in DETAILS_KEYS - {"families"}:
        assert isinstance(details[key], str), key
    assert details["family"], "Roo Code requires a non-empty family"
    assert isinstance(details["families"], list) and all(isinstance(f, str) for f in details["families"])
    capabilities = entry["capabilities"]
    assert isinstance(capabilities, list) and all(isinstance(c, str) for c in capabilities)
    assert "completion" in capabilities or capabilities == ["embedding"]


# ---- health and version -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_root(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == ("Ollama is running" if method == "GET" else "")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_version(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/api/version")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    if method == "GET":
        assert response.json() == {"version": "0.32.15"}


@pytest.mark.parametrize("settings_overrides", [{"ollama_version": "0.13.5"}])
async def test_version_is_configurable(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/version")).json() == {"version": "0.13.5"}


# ---- /api/tags ----------------------------------------------------------------------------------


async def test_tags_through_the_official_client(ollama_client: Any) -> None:
    listing = await ollama_client.list()
    names = [m.model for m in listing.models]
    assert names == ["gpt-test:latest", "text-embedding-test:latest", "extra/model-x:latest", "tagged:7b"]
    for model in listing.models:
        assert model.modified_at is not None and model.modified_at.tzinfo is not None
        assert model.size == 0 and model.digest and model.details is not None
        assert model.details.family and model.details.families == [model.details.family]


async def test_tags_full_schema(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/tags")
    assert response.headers["content-type"].startswith("application/json")
    models = response.json()["models"]
    assert len(models) == 4
    for entry in models:
        check_tags_entry_like_zed(entry)
    by_name = {m["name"]: m for m in models}
    assert by_name["gpt-test:latest"]["capabilities"] == ["completion", "tools", "vision"]
    assert by_name["gpt-test:latest"]["modified_at"] == "2023-11-14T22:13:20Z"  # the upstream's `created`


async def test_tags_digest_is_stable_and_distinct(client: httpx.AsyncClient, app: Any) -> None:
    first = {m["name"]: m["digest"] for m in (await client.get("/api/tags")).json()["models"]}
    await app.state.catalog.refresh()
    second = {m["name"]: m["digest"] for m in (await client.get("/api/tags")).json()["models"]}
    assert first == second
    assert len(set(first.values())) == len(first)


async def test_digest_changes_after_a_restart_with_other_capabilities(client_for: Any, settings: Any) -> None:
    """llm-ollama caches a model's capabilities by its digest: a restart with other `-c` shows."""

    async def digests(**changes: Any) -> dict[str, str]:
        client = await client_for(settings.model_copy(update=changes))
        return {m["name"]: m["digest"] for m in (await client.get("/api/tags")).json()["models"]}

    before, again = await digests(), await digests()
    after = await digests(capabilities=["tools"])
    assert before == again  # a restart alone changes nothing
    assert after["gpt-test:latest"] != before["gpt-test:latest"]
    assert after["text-embedding-test:latest"] == before["text-embedding-test:latest"]  # its card is unchanged


async def test_tags_head(client: httpx.AsyncClient) -> None:
    response = await client.head("/api/tags")
    assert response.status_code == 200 and response.content == b""


async def test_tags_served_from_the_cache(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    for _ in range(25):
        assert (await client.get("/api/tags")).status_code == 200
    await client.post("/api/show", json={"model": "gpt-test"})
    await client.get("/v1/models")
    assert upstream_model_calls(fake) == 1


async def test_concurrent_first_calls_share_one_fetch(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    import asyncio

    answers = await asyncio.gather(*(client.get("/api/tags") for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert upstream_model_calls(fake) == 1


@pytest.mark.parametrize("settings_overrides", [{"models_ttl": 0.0, "extra_models": []}])
async def test_list_refreshes_after_the_ttl(client: httpx.AsyncClient, fake: FakeUpstream, app: Any) -> None:
    await client.get("/api/tags")
    fake.models.append({"id": "newcomer", "object": "model", "created": 1700000001, "owned_by": "x"})
    await client.get("/api/tags")  # stale: answered at once, refreshed behind it
    refresh = app.state.catalog._refresh
    if refresh is not None:
        await refresh
    names = [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
    assert "newcomer:latest" in names
    assert upstream_model_calls(fake) >= 2


@pytest.mark.parametrize(
    "failure",
    [
        openai_error(500, "models endpoint is down", "api_error"),
        openai_error(401, "no key"),
        httpx.Response(200, json={"unexpected": True}),
    ],
    ids=["500", "401", "no-list"],
)
async def test_extras_listed_when_upstream_list_fails(
    client: httpx.AsyncClient, fake: FakeUpstream, caplog: pytest.LogCaptureFixture, failure: httpx.Response
) -> None:
    fake.on("GET", "/models", failure)
    with caplog.at_level(logging.WARNING):
        response = await client.get("/api/tags")
    assert response.status_code == 200
    assert [m["name"] for m in response.json()["models"]] == ["extra/model-x:latest", "tagged:7b"]
    assert any("upstream.test" in record.getMessage() for record in caplog.records if record.levelno >= 30)


async def test_extras_listed_when_upstream_list_is_empty(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.models.clear()
    names = [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
    assert names == ["extra/model-x:latest", "tagged:7b"]


async def test_unreachable_upstream_still_lists_extras(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    fake.on("GET", "/models", refuse)
    response = await client.get("/api/tags")
    assert response.status_code == 200
    assert len(response.json()["models"]) == 2


# ---- /api/show ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["model", "name"])
@pytest.mark.parametrize("name", ["gpt-test", "gpt-test:latest", "GPT-Test:latest"])
async def test_show_accepts_model_or_name(client: httpx.AsyncClient, key: str, name: str) -> None:
    response = await client.post("/api/show", json={key: name})
    assert response.status_code == 200, response.text
    assert response.json()["model_info"]["general.basename"] == "gpt-test"


async def test_show_full_answer(client: httpx.AsyncClient) -> None:
    shown = (await client.post("/api/show", json={"model": "gpt-test"})).json()
    assert shown["capabilities"] == ["completion", "tools", "vision"]
    info = shown["model_info"]
    arch = info["general.architecture"]
    assert isinstance(arch, str) and arch
    assert info[f"{arch}.context_length"] == 131072
    assert info["general.basename"] == "gpt-test"
    assert shown["details"].keys() >= DETAILS_KEYS
    assert re.search(r"(?m)^num_ctx\s+131072$", shown["parameters"])
    assert "stop" not in shown["parameters"], "Continue would send fake stop words upstream"
    assert isinstance(shown["template"], str) and ".Suffix" not in shown["template"]
    assert shown["modelfile"].startswith('# Modelfile generated by "ollama show"')
    assert isinstance(shown["license"], str)
    rfc3339(shown["modified_at"])


@pytest.mark.parametrize("settings_overrides", [{"capabilities": ["insert"]}])
async def test_show_template_mentions_suffix_only_with_insert(client: httpx.AsyncClient) -> None:
    shown = (await client.post("/api/show", json={"model": "gpt-test"})).json()
    assert shown["capabilities"] == ["completion", "insert"]
    assert ".Suffix" in shown["template"]


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_show_without_configured_capabilities(client: httpx.AsyncClient) -> None:
    shown = (await client.post("/api/show", json={"name": "gpt-test"})).json()
    assert shown["capabilities"] == ["completion"]


async def test_show_through_the_official_client(ollama_client: Any) -> None:
    shown = await ollama_client.show("gpt-test:latest")
    assert shown.capabilities == ["completion", "tools", "vision"]
    assert shown.modelinfo["general.architecture"]
    assert shown.details is not None and shown.details.family


async def test_show_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/show", json={"model": "nope"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope' not found"}


async def test_show_without_a_model_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/show", json={"verbose": True})
    assert response.status_code == 400
    assert response.json() == {"error": "model is required"}


async def test_show_makes_no_upstream_call_per_model(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    # Copilot asks for every model in turn when it starts.
    for _ in range(10):
        for name in ("gpt-test", "text-embedding-test", "extra/model-x", "tagged:7b"):
            assert (await client.post("/api/show", json={"model": name})).status_code == 200
    assert len(fake.requests) == 1 and upstream_model_calls(fake) == 1


# ---- /api/ps ------------------------------------------------------------------------------------


async def test_ps_empty_before_any_use(client: httpx.AsyncClient, ollama_client: Any) -> None:
    assert (await client.get("/api/ps")).json() == {"models": []}
    assert (await ollama_client.ps()).models == []


async def test_ps_lists_a_model_after_use(ollama_client: Any, fake: FakeUpstream, client: httpx.AsyncClient) -> None:
    fake.on("POST", "/chat/completions", text_stream("hi"))
    await ollama_client.chat(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    loaded = (await ollama_client.ps()).models
    assert [m.model for m in loaded] == ["gpt-test:latest"]
    (model,) = loaded
    assert model.name == "gpt-test:latest"
    assert model.expires_at is not None and model.expires_at.timestamp() > datetime.now().timestamp()
    assert model.size_vram == 0 and model.context_length == 131072
    assert model.details is not None and model.details.family
    raw = (await client.get("/api/ps")).json()["models"][0]
    assert {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"} <= raw.keys()
    rfc3339(raw["expires_at"])


async def test_ps_after_use_on_v1(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("hi"))
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert [m["name"] for m in (await client.get("/api/ps")).json()["models"]] == ["gpt-test:latest"]


async def test_ps_ignores_failed_requests(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", openai_error(400, "bad"))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 400
    assert (await client.get("/api/ps")).json() == {"models": []}


# ---- model management ---------------------------------------------------------------------------


async def test_pull_streamed_through_the_official_client(ollama_client: Any) -> None:
    steps = [step async for step in await ollama_client.pull("gpt-test", stream=True)]
    assert steps[-1].status == "success"
    assert all(step.status for step in steps)


async def test_pull_not_streamed_through_the_official_client(ollama_client: Any) -> None:
    assert (await ollama_client.pull("gpt-test:latest")).status == "success"


async def test_pull_raw_ndjson(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/pull", json={"name": "gpt-test"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.content.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1]), "one object per line, no blank lines"
    assert lines[-2] == b'{"status":"success"}'


async def test_pull_of_an_unknown_model_is_404(client: httpx.AsyncClient, ollama_client: Any) -> None:
    import ollama

    response = await client.post("/api/pull", json={"model": "llama9:70b"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'llama9:70b' not found"}
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.pull("llama9:70b")
    assert caught.value.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/push", {"model": "gpt-test"}),
        ("POST", "/api/create", {"model": "mine", "from": "gpt-test"}),
        ("POST", "/api/copy", {"source": "gpt-test", "destination": "copy"}),
        ("DELETE", "/api/delete", {"model": "gpt-test"}),
        ("POST", "/api/blobs/sha256:" + "0" * 64, None),
        ("HEAD", "/api/blobs/sha256:" + "0" * 64, None),
    ],
)
async def test_management_refused_clearly(client: httpx.AsyncClient, method: str, path: str, body: Any) -> None:
    response = await client.request(method, path, json=body)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/json")
    if method != "HEAD":
        error = response.json()["error"]
        assert isinstance(error, str) and "upstream" in error


async def test_management_refused_through_the_official_client(ollama_client: Any) -> None:
    import ollama

    for call in (
        lambda: ollama_client.delete("gpt-test"),
        lambda: ollama_client.copy("gpt-test", "other"),
        lambda: ollama_client.push("gpt-test"),
        lambda: ollama_client.create("mine", from_="gpt-test"),
    ):
        with pytest.raises(ollama.ResponseError) as caught:
            await call()
        assert 400 <= caught.value.status_code < 500
        assert "upstream" in caught.value.error
