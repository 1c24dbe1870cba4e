"""The catalog end to end: several upstreams, names, aliases, filters, failures and the cache.

Each upstream is a `FakeUpstream` on its own host (`http://<host>/v1`), all behind one transport;
the server is driven with the official clients where a user's client would be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from oai2ollama.app import create_app
from oai2ollama.catalog import Catalog
from oai2ollama.config import Settings
from oai2ollama.config_file import ConfigError
from oai2ollama.configuration import CatalogConfig, Source, assemble
from oai2ollama.errors import NotFound
from oai2ollama.model_rules import ModelRule
from oai2ollama.target import Target
from oai2ollama.upstream import Upstreams

from .fakes import TRANSCRIPTS, FakeUpstream, hosts_transport, model_not_there, text_stream, transcript_models

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from .fakes import isolate_settings

    isolate_settings(monkeypatch, tmp_path)


def fake_with(models: list[dict[str, Any]]) -> FakeUpstream:
    fake = FakeUpstream(models=models)
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    return fake


def models_calls(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.url.path == "/v1/models")


def chat_models(fake: FakeUpstream) -> list[str]:
    return [body["model"] for body in fake.bodies("/chat/completions")]


def upstream(name: str, host: str, *extra: str) -> str:
    lines = ["[[upstreams]]", f'name = "{name}"', f'base_url = "http://{host}/v1"', *extra]
    return "\n".join(lines) + "\n"


@dataclass
class Served:
    app: Any
    http: httpx.AsyncClient
    ollama: ollama.AsyncClient
    openai: openai.AsyncOpenAI

    @property
    def catalog(self) -> Catalog:
        return self.app.state.catalog

    async def names(self) -> list[str]:
        return [m.model or "" for m in (await self.ollama.list()).models]


@asynccontextmanager
async def served(tmp_path: Path, toml: str, fakes: dict[str, FakeUpstream], **values: Any) -> AsyncIterator[Served]:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(toml, encoding="utf-8")
    settings = Settings(_env_file=None, config=path, **values)  # type: ignore[call-arg]
    upstreams = Upstreams(transport=hosts_transport(fakes))
    app = create_app(settings, upstreams=upstreams)
    transport = httpx.ASGITransport(app)
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:11434") as http,
            openai.AsyncOpenAI(
                base_url="http://127.0.0.1:11434/v1",
                api_key="client-key",
                http_client=httpx.AsyncClient(transport=transport),
            ) as openai_client,
        ):
            yield Served(
                app, http, ollama.AsyncClient(host="http://127.0.0.1:11434", transport=transport), openai_client
            )
    finally:
        await upstreams.aclose()


# ---- metadata styles, through the official client ------------------------------------------------


STYLES = ("openrouter", "vllm", "llamacpp", "lmstudio")
EVERY_STYLE = upstream("openai", "openai.test") + "".join(
    upstream(style, f"{style}.test", f'prefix = "{style}/"') for style in STYLES
)


def recorded(style: str) -> FakeUpstream:
    """A fake answering /models with the whole recorded file (llama.cpp's has more than `data`)."""
    fake = fake_with(transcript_models(style))
    listing = json.loads((TRANSCRIPTS / f"models_{style}.json").read_text())
    fake.on("GET", "/models", httpx.Response(200, json=listing))
    return fake


@pytest.fixture
def every_style() -> dict[str, FakeUpstream]:
    fakes = {f"{style}.test": recorded(style) for style in STYLES}
    fakes["openai.test"] = fake_with(transcript_models("openai"))
    return fakes


async def test_the_union_of_every_upstream_under_client_names(tmp_path: Path, every_style: dict[str, Any]) -> None:
    async with served(tmp_path, EVERY_STYLE, every_style) as server:
        assert await server.names() == [
            "gpt-4o:latest",
            "gpt-4o-mini:latest",
            "o3-mini:latest",
            "text-embedding-3-small:latest",
            "dall-e-3:latest",
            "openrouter/openai/gpt-4o:latest",
            "openrouter/deepseek/deepseek-r1:free",
            "openrouter/anthropic/claude-sonnet-4:latest",
            "openrouter/openai/text-embedding-3-small:latest",
            "vllm/Qwen/Qwen2.5-Coder-32B-Instruct:latest",
            "vllm/BAAI/bge-m3:latest",
            "llamacpp/gemma-3-4b-it-Q4_K_M.gguf:latest",
            "lmstudio/qwen2-vl-7b-instruct:latest",
            "lmstudio/meta-llama-3.1-8b-instruct:latest",
            "lmstudio/text-embedding-nomic-embed-text-v1.5:latest",
        ]
        v1 = [m.id async for m in server.openai.models.list()]
        assert v1 == await server.names()
        tags = {m["name"]: m for m in (await server.http.get("/api/tags")).json()["models"]}
        entry = tags["openrouter/openai/gpt-4o:latest"]
        assert (entry["remote_model"], entry["remote_host"]) == ("openai/gpt-4o", "http://openrouter.test")
        assert tags["gpt-4o:latest"]["remote_host"] == "http://openai.test"
        assert tags["vllm/Qwen/Qwen2.5-Coder-32B-Instruct:latest"]["details"]["context_length"] == 32768
        assert all(models_calls(fake) == 1 for fake in every_style.values())


@pytest.mark.parametrize(
    ("name", "capabilities", "context_length"),
    [
        ("openrouter/openai/gpt-4o", ["completion", "tools", "vision"], 128000),
        ("openrouter/deepseek/deepseek-r1:free", ["completion", "thinking"], 163840),
        ("openrouter/openai/text-embedding-3-small:latest", ["embedding"], 8192),
        ("vllm/Qwen/Qwen2.5-Coder-32B-Instruct", ["completion"], 32768),
        ("vllm/BAAI/bge-m3", ["embedding"], 8192),
        ("llamacpp/gemma-3-4b-it-Q4_K_M.gguf", ["completion", "vision"], 131072),
        ("lmstudio/qwen2-vl-7b-instruct", ["completion", "vision"], 32768),
        ("lmstudio/meta-llama-3.1-8b-instruct:latest", ["completion", "tools"], 16384),
        ("lmstudio/text-embedding-nomic-embed-text-v1.5", ["embedding"], 2048),
        ("gpt-4o", ["completion"], 131072),  # plain OpenAI: the defaults
    ],
)
async def test_show_through_the_official_client(
    tmp_path: Path, every_style: dict[str, Any], name: str, capabilities: list[str], context_length: int
) -> None:
    async with served(tmp_path, EVERY_STYLE, every_style) as server:
        shown = await server.ollama.show(name)
        assert shown.capabilities == capabilities
        info = shown.modelinfo or {}
        assert info[f"{info['general.architecture']}.context_length"] == context_length
        assert (shown.parameters or "").splitlines()[0].split() == ["num_ctx", str(context_length)]


# ---- routing: prefixes, aliases, names ----------------------------------------------------------


CLASH = upstream("primary", "primary.test", 'api_key = "sk-primary"') + upstream(
    "backup", "backup.test", 'api_key = "sk-backup"', 'prefix = "backup/"', 'headers = { X-Team = "blue" }'
)


@pytest.fixture
def clash() -> dict[str, FakeUpstream]:
    shared = {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"}
    return {
        "primary.test": fake_with([shared]),
        "backup.test": fake_with([shared, {"id": "only-backup", "object": "model"}]),
    }


async def test_a_clash_resolved_by_prefix(tmp_path: Path, clash: dict[str, FakeUpstream]) -> None:
    primary, backup = clash["primary.test"], clash["backup.test"]
    async with served(tmp_path, CLASH, clash) as server:
        assert await server.names() == ["gpt-4o:latest", "backup/gpt-4o:latest", "backup/only-backup:latest"]
        await server.ollama.chat(model="gpt-4o", messages=HI)
        await server.ollama.chat(model="backup/gpt-4o:latest", messages=HI)
        stream = await server.openai.chat.completions.create(model="backup/gpt-4o", messages=HI, stream=True)  # type: ignore[arg-type]
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Hello"
        stream = await server.openai.chat.completions.create(model="gpt-4o:latest", messages=HI, stream=True)  # type: ignore[arg-type]
        _ = [c async for c in stream]
    assert chat_models(primary) == ["gpt-4o", "gpt-4o"]
    assert chat_models(backup) == ["gpt-4o", "gpt-4o"]
    chats = [r for r in primary.requests + backup.requests if r.url.path == "/v1/chat/completions"]
    for request in chats:
        expected = "sk-primary" if request.url.host == "primary.test" else "sk-backup"
        assert request.headers["authorization"] == f"Bearer {expected}"
        assert request.headers.get("x-team") == ("blue" if request.url.host == "backup.test" else None)


async def test_a_clash_without_prefix_keeps_the_first_and_warns_once(
    tmp_path: Path, clash: dict[str, FakeUpstream], caplog: pytest.LogCaptureFixture
) -> None:
    toml = CLASH.replace('prefix = "backup/"\n', "")
    with caplog.at_level(logging.WARNING, logger="oai2ollama.catalog"):
        async with served(tmp_path, toml, clash) as server:
            assert await server.names() == ["gpt-4o:latest", "only-backup:latest"]
            for _ in range(3):
                await server.catalog.refresh()
                await server.ollama.chat(model="gpt-4o", messages=HI)
    assert chat_models(clash["primary.test"]) == ["gpt-4o"] * 3
    warnings = [r.getMessage() for r in caplog.records if "is hidden" in r.getMessage()]
    assert warnings == [
        "model gpt-4o of upstream backup is hidden: upstream primary already serves gpt-4o:latest "
        "(set a prefix or an alias)"
    ]


ALIASED = (
    upstream("openrouter", "openrouter.test", 'prefix = "openrouter/"')
    + upstream("openai", "openai.test")
    + """
[models."openrouter/openai/gpt-4o"]
alias = "smart"
options = { temperature = 0.3, stop = ["<END>"], think = "low" }
"""
)


@pytest.fixture
def aliased() -> dict[str, FakeUpstream]:
    return {
        "openrouter.test": fake_with(transcript_models("openrouter")),
        "openai.test": fake_with(transcript_models("openai")),
    }


async def test_an_alias_reaches_its_upstream_with_the_upstreams_id(
    tmp_path: Path, aliased: dict[str, FakeUpstream]
) -> None:
    async with served(tmp_path, ALIASED, aliased) as server:
        names = await server.names()
        assert "smart:latest" in names and "openrouter/openai/gpt-4o:latest" not in names
        await server.ollama.chat(model="smart", messages=HI)
        _ = [part async for part in await server.ollama.chat(model="SMART:latest", messages=HI, stream=True)]
        await server.ollama.generate(model="smart", prompt="hi")
        stream = await server.openai.chat.completions.create(model="smart", messages=HI, stream=True)  # type: ignore[arg-type]
        _ = [c async for c in stream]
        await server.ollama.chat(model="openrouter/openai/gpt-4o", messages=HI)  # its own id still answers
        shown = await server.ollama.show("smart")
    assert chat_models(aliased["openrouter.test"]) == ["openai/gpt-4o"] * 5
    assert chat_models(aliased["openai.test"]) == []
    assert shown.capabilities == ["completion", "tools", "vision"]
    assert shown.parameters == (
        "num_ctx                        128000\n"
        "temperature                    0.3\n"
        'stop                           "<END>"'
    )


@pytest.mark.parametrize(
    ("name", "host", "upstream_id"),
    [
        ("gpt-4o", "openai.test", "gpt-4o"),
        ("gpt-4o:latest", "openai.test", "gpt-4o"),
        ("GPT-4o:Latest", "openai.test", "gpt-4o"),
        ("smart", "openrouter.test", "openai/gpt-4o"),
        ("smart:latest", "openrouter.test", "openai/gpt-4o"),
        ("openrouter/deepseek/deepseek-r1:free", "openrouter.test", "deepseek/deepseek-r1:free"),
        ("openrouter/anthropic/claude-sonnet-4:latest", "openrouter.test", "anthropic/claude-sonnet-4"),
    ],
)
async def test_names_resolve_exact_then_alias_then_without_latest(
    tmp_path: Path, aliased: dict[str, FakeUpstream], name: str, host: str, upstream_id: str
) -> None:
    async with served(tmp_path, ALIASED, aliased) as server:
        answer = await server.ollama.chat(model=name, messages=HI)
    assert answer.model == name, "answers echo the name the client sent"
    assert chat_models(aliased[host]) == [upstream_id]


async def test_an_unlisted_name_reaches_the_upstream_that_would_take_it(
    tmp_path: Path, aliased: dict[str, FakeUpstream]
) -> None:
    for fake in aliased.values():
        fake.on("POST", "/chat/completions", model_not_there)
    async with served(tmp_path, ALIASED, aliased) as server:
        with pytest.raises(ollama.ResponseError) as native:
            await server.ollama.chat(model="gpt-4o:mini", messages=HI)
        assert native.value.status_code == 404 and "`gpt-4o:mini` does not exist" in native.value.error
        with pytest.raises(openai.NotFoundError) as relayed:
            await server.openai.chat.completions.create(model="openrouter/x-ai/grok-9", messages=HI)  # type: ignore[arg-type]
        assert "`x-ai/grok-9` does not exist" in relayed.value.message
        shown = await server.http.post("/api/show", json={"model": "smarter"})
        assert (shown.status_code, shown.json()) == (404, {"error": "model 'smarter' not found"})
    assert chat_models(aliased["openai.test"]) == ["gpt-4o:mini"]
    assert chat_models(aliased["openrouter.test"]) == ["x-ai/grok-9"]


async def test_a_variant_is_sent_as_asked_and_described_as_its_base(
    tmp_path: Path, aliased: dict[str, FakeUpstream]
) -> None:
    async with served(tmp_path, ALIASED, aliased) as server:
        await server.ollama.chat(model="openrouter/deepseek/deepseek-r1:nitro", messages=HI)
        await server.ollama.chat(model="smart:online", messages=HI)
        variant = await server.ollama.show("smart:online")
        base = await server.ollama.show("smart")
    assert chat_models(aliased["openrouter.test"]) == ["deepseek/deepseek-r1:nitro", "openai/gpt-4o:online"]
    assert variant.capabilities == base.capabilities
    assert variant.modelinfo["gpt.context_length"] == base.modelinfo["gpt.context_length"] == 128000


async def test_only_a_name_no_upstream_can_take_is_our_404() -> None:
    sources = [
        Source(Target("http://a.test/v1", name="a"), prefix="a/"),
        Source(Target("http://b.test/v1", name="b"), prefix="b/"),
    ]
    async with direct({"a.test": fake_with([]), "b.test": fake_with([])}, sources) as (catalog, _):
        with pytest.raises(NotFound, match="model 'c/model' not found"):
            await catalog.resolve("c/model")
        assert (await catalog.resolve("B/Model:latest")).upstream_id == "Model"


async def test_embedding_routes_reach_the_right_upstream(tmp_path: Path) -> None:
    vllm = fake_with(transcript_models("vllm"))
    vllm.on(
        "POST",
        "/embeddings",
        lambda request: httpx.Response(
            200, json={"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]}
        ),
    )
    fakes = {"vllm.test": vllm, "openai.test": fake_with(transcript_models("openai"))}
    toml = upstream("openai", "openai.test") + upstream("vllm", "vllm.test", 'prefix = "local/"')
    async with served(tmp_path, toml, fakes) as server:
        embedded = await server.ollama.embed(model="local/BAAI/bge-m3", input="hi")
        assert embedded.embeddings == [[0.5, 0.25]]
        answer = await server.openai.embeddings.create(model="local/BAAI/bge-m3:latest", input="hi")
        assert answer.data[0].embedding == [0.5, 0.25]
    assert [body["model"] for body in vllm.bodies("/embeddings")] == ["BAAI/bge-m3", "BAAI/bge-m3"]


# ---- filters and hidden models -------------------------------------------------------------------


async def test_include_exclude_and_hidden(tmp_path: Path) -> None:
    fakes = {"openai.test": fake_with(transcript_models("openai"))}
    toml = upstream("openai", "openai.test", 'models = { include = ["gpt-*", "o3*"], exclude = ["*-mini"] }') + (
        '[models."gpt-4o"]\nhidden = true\n'
    )
    async with served(tmp_path, toml, fakes) as server:
        assert await server.names() == []
        fakes["openai.test"].models.append({"id": "gpt-5", "object": "model"})
        await server.catalog.refresh()
        assert await server.names() == ["gpt-5:latest"]
        assert [m.id async for m in server.openai.models.list()] == ["gpt-5:latest"]
        # Hidden is unlisted, not unreachable.
        assert (await server.ollama.show("gpt-4o")).capabilities == ["completion"]
        await server.ollama.chat(model="gpt-4o", messages=HI)
        with pytest.raises(ollama.ResponseError):
            await server.ollama.chat(model="o3-mini", messages=HI)  # excluded is gone
    assert chat_models(fakes["openai.test"]) == ["gpt-4o"]


# ---- failures and the cache ----------------------------------------------------------------------


async def test_an_upstream_down_hides_nothing_else_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    up = fake_with([{"id": "gpt-4o", "object": "model"}])
    fakes = {"up.test": up}  # down.test has no server: connection refused
    toml = upstream("down", "down.test", 'prefix = "down/"') + upstream("up", "up.test")
    with caplog.at_level(logging.INFO, logger="oai2ollama.catalog"):
        async with served(tmp_path, toml, fakes, models_ttl=0.0) as server:
            for _ in range(5):
                assert await server.names() == ["gpt-4o:latest"]
                await server.ollama.show("gpt-4o")
                await server.catalog.refresh()
            failures = [r for r in caplog.records if "could not list" in r.getMessage()]
            assert len(failures) == 1
            assert failures[0].levelno == logging.WARNING
            assert failures[0].getMessage() == (
                "could not list the models of upstream down (down.test): cannot reach upstream down.test: "
                "[Errno 111] Connection refused: down.test; its models are unavailable until it answers"
            )
            fakes["down.test"] = fake_with([{"id": "llama3.2:3b", "object": "model"}])
            await server.catalog.refresh()
            assert await server.names() == ["down/llama3.2:3b", "gpt-4o:latest"]
            assert any(r.getMessage() == "upstream down lists its models again" for r in caplog.records)
            # Gone again: its last known models stay listed.
            del fakes["down.test"]
            await server.catalog.refresh()
            assert await server.names() == ["down/llama3.2:3b", "gpt-4o:latest"]
            await server.ollama.chat(model="gpt-4o", messages=HI)
    failures = [r.getMessage() for r in caplog.records if "could not list" in r.getMessage()]
    assert len(failures) == 2 and failures[1].endswith("keeping its 1 known models")


async def test_a_slow_upstream_is_waited_for_once(tmp_path: Path) -> None:
    delay = 0.5

    async def slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay)
        return httpx.Response(200, json={"object": "list", "data": [{"id": "big-model", "object": "model"}]})

    slow, fast = FakeUpstream(models=[]), fake_with([{"id": "gpt-4o", "object": "model"}])
    slow.on("GET", "/models", slowly)  # type: ignore[arg-type]
    toml = upstream("slow", "slow.test", 'prefix = "slow/"') + upstream("fast", "fast.test")
    # A zero TTL makes every call want a refresh: none of them may wait for it.
    async with served(tmp_path, toml, {"slow.test": slow, "fast.test": fast}, models_ttl=0.0) as server:
        began = time.perf_counter()
        assert await server.names() == ["slow/big-model:latest", "gpt-4o:latest"]
        assert time.perf_counter() - began >= delay
        began = time.perf_counter()
        for _ in range(20):
            await asyncio.sleep(0.001)  # a real server's socket I/O lets the background refresh run
            assert (await server.http.get("/api/tags")).status_code == 200
            assert (await server.http.post("/api/show", json={"model": "slow/big-model"})).status_code == 200
            assert len((await server.http.get("/v1/models")).json()["data"]) == 2
        assert time.perf_counter() - began < delay / 2
        assert models_calls(slow) == 2, "the first fetch, then one refresh in the background"


async def test_a_hanging_upstream_delays_the_first_answer_only_up_to_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    hanging, fast = FakeUpstream(), fake_with([{"id": "gpt-4o", "object": "model"}])
    hanging.on("GET", "/models", never)  # type: ignore[arg-type]
    upstreams = Upstreams(transport=hosts_transport({"hanging.test": hanging, "fast.test": fast}))
    sources = [
        Source(Target("http://hanging.test/v1", name="hanging")),
        Source(Target("http://fast.test/v1", name="fast")),
    ]
    catalog = Catalog(upstreams, CatalogConfig(sources=sources, timeout=0.2))
    try:
        began = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="oai2ollama.catalog"):
            names = [card.name for card in await catalog.cards()]
        assert time.perf_counter() - began < 1.0
        assert names == ["gpt-4o:latest"]
        assert "upstream hanging (hanging.test): no answer within 0.2 s" in caplog.text
    finally:
        await upstreams.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def direct(
    fakes: dict[str, FakeUpstream], sources: list[Source], **config: Any
) -> AsyncIterator[tuple[Catalog, Clock]]:
    upstreams = Upstreams(transport=hosts_transport(fakes))
    clock = Clock()
    try:
        yield Catalog(upstreams, CatalogConfig(sources=sources, **config), clock=clock), clock
    finally:
        await upstreams.aclose()


async def settle(catalog: Catalog) -> None:
    """Let a background refresh, if one was started, finish."""
    task = catalog._refresh
    if task is not None:
        await task


async def test_refresh_on_demand_and_after_the_ttl() -> None:
    fake = fake_with([{"id": "a", "object": "model"}])
    async with direct({"u.test": fake}, [Source(Target("http://u.test/v1", name="u"))], ttl=60.0) as (catalog, clock):
        assert [c.name for c in await catalog.cards()] == ["a:latest"]
        fake.models.append({"id": "b", "object": "model"})
        clock.now += 59
        assert [c.name for c in await catalog.cards()] == ["a:latest"]
        assert models_calls(fake) == 1
        await catalog.refresh()
        assert [c.name for c in await catalog.cards()] == ["a:latest", "b:latest"]
        fake.models.append({"id": "c", "object": "model"})
        clock.now += 61
        assert len(await catalog.cards()) == 2, "stale answers at once"
        await settle(catalog)
        assert len(await catalog.cards()) == 3
        assert models_calls(fake) == 3


async def test_an_unlisted_name_refreshes_in_the_background_at_most_every_few_seconds() -> None:
    fake = fake_with([{"id": "a", "object": "model"}])
    async with direct({"u.test": fake}, [Source(Target("http://u.test/v1", name="u"))], ttl=600.0) as (catalog, clock):
        await catalog.cards()
        fake.models.append({"id": "new", "object": "model", "context_length": 8192})
        clock.now += 1
        assert (await catalog.resolve("new")).context_length == 131072, "not listed yet: passed on as asked"
        await settle(catalog)
        assert models_calls(fake) == 1, "a miss right after a refresh does not refresh again"
        clock.now += 30
        await catalog.resolve("new")
        await settle(catalog)
        assert (await catalog.resolve("new:latest")).context_length == 8192, "listed now, with what it says"
        assert models_calls(fake) == 2


async def test_passthrough_while_no_list_could_be_fetched() -> None:
    sources = [
        Source(Target("http://down-a.test/v1", name="a")),
        Source(Target("http://down-b.test/v1", name="b"), prefix="b/"),
    ]
    async with direct({}, sources) as (catalog, _):
        card = await catalog.resolve("whatever:latest")
        assert (card.upstream, card.upstream_id) == ("a", "whatever")
        card = await catalog.resolve("B/some/model")
        assert (card.upstream, card.upstream_id) == ("b", "some/model")


async def test_an_alias_passes_through_to_its_silent_upstream() -> None:
    sources = [Source(Target("http://down.test/v1", name="down"), prefix="nw/")]
    rules = [ModelRule("nw/org/model-x", alias="ex")]
    async with direct({}, sources, rules=rules) as (catalog, _):
        card = await catalog.resolve("ex:latest")
        assert (card.upstream, card.upstream_id, card.name) == ("down", "org/model-x", "ex:latest")


async def test_an_unprefixed_name_goes_to_the_upstream_without_a_prefix() -> None:
    listed = fake_with([{"id": "gpt-4o", "object": "model"}])
    sources = [
        Source(Target("http://listed.test/v1", name="listed")),
        Source(Target("http://silent.test/v1", name="silent"), prefix="silent/"),
    ]
    async with direct({"listed.test": listed}, sources) as (catalog, _):
        card = await catalog.resolve("silent/llama3.2:3b")
        assert (card.upstream, card.upstream_id) == ("silent", "llama3.2:3b")
        card = await catalog.resolve("llama3.2:3b")
        assert (card.upstream, card.upstream_id) == ("listed", "llama3.2:3b")


# ---- settings and the file together --------------------------------------------------------------


def config_for(tmp_path: Path, toml: str, **values: Any) -> CatalogConfig:
    path = tmp_path / "oai2ollama.toml"
    path.write_text(toml, encoding="utf-8")
    return assemble(Settings(_env_file=None, config=path, **values)).catalog  # type: ignore[call-arg]


async def test_base_url_is_the_default_upstream_beside_the_files(tmp_path: Path) -> None:
    config = config_for(
        tmp_path,
        upstream("local", "gpu.test"),
        base_url="https://api.openai.com/v1",
        api_key="sk-x",
        extra_models=["m"],
    )
    assert [(s.name, s.target.base_url, s.target.api_key, s.extra_models) for s in config.sources] == [
        ("default", "https://api.openai.com/v1", "sk-x", ("m",)),
        ("local", "http://gpu.test/v1", None, ()),
    ]


async def test_extra_models_go_to_the_first_upstream_without_base_url(tmp_path: Path) -> None:
    config = config_for(tmp_path, upstream("a", "a.test") + upstream("b", "b.test"), extra_models=["m"])
    assert [s.extra_models for s in config.sources] == [("m",), ()]


async def test_api_key_env_is_read_at_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OR_KEY", "sk-or-1")
    path = tmp_path / "c.toml"
    path.write_text(upstream("or", "or.test", 'api_key_env = "OR_KEY"'))
    sources = assemble(Settings(_env_file=None, config=path)).catalog.sources  # type: ignore[call-arg]
    assert [(s.target.name, s.target.api_key) for s in sources] == [("or", "sk-or-1")]


@pytest.mark.parametrize(
    ("values", "capabilities", "context_length"),
    [
        ({}, ["vision"], 32000),
        ({"capabilities": ["tools"]}, ["tools"], 32000),
        ({"context_length": "8k"}, ["vision"], 8000),
    ],
)
async def test_flags_win_over_the_files_defaults(
    tmp_path: Path, values: dict[str, Any], capabilities: list[str], context_length: int
) -> None:
    toml = upstream("a", "a.test") + '[defaults]\ncapabilities = ["vision"]\ncontext_length = "32k"\n'
    config = config_for(tmp_path, toml, **values)
    assert (list(config.capabilities), config.default_context_length) == (capabilities, context_length)


async def test_defaults_and_flags_shape_the_cards(tmp_path: Path) -> None:
    fakes = {
        "openai.test": fake_with(transcript_models("openai")),
        "or.test": fake_with(transcript_models("openrouter")),
    }
    toml = (
        upstream("openai", "openai.test")
        + upstream("or", "or.test", 'prefix = "or/"')
        + '[defaults]\ncapabilities = ["tools", "thinking"]\ncontext_length = 64000\n'
    )
    async with served(tmp_path, toml, fakes, context_lengths={"gpt-4o": 128000, "or/openai/gpt-4o": 1000}) as server:
        shown = await server.ollama.show("gpt-4o")
        assert (shown.capabilities, (shown.modelinfo or {})["gpt.context_length"]) == (
            ["completion", "tools", "thinking"],
            128000,
        )
        shown = await server.ollama.show("gpt-4o-mini")
        assert (shown.modelinfo or {})["gpt.context_length"] == 64000
        shown = await server.ollama.show("or/openai/gpt-4o")
        assert (shown.capabilities, (shown.modelinfo or {})["gpt.context_length"]) == (
            ["completion", "tools", "vision"],
            1000,
        )


async def test_a_bad_file_stops_create_app(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[models.m]\ncapabilities = ["tools", "telepathy"]\n')
    with pytest.raises(ConfigError, match=r"c\.toml: \[models\.\"m\"\] capabilities: unknown capability 'telepathy'"):
        create_app(Settings(_env_file=None, base_url="http://a.test/v1", config=path))  # type: ignore[call-arg]


async def test_keys_never_appear_in_answers(tmp_path: Path, clash: dict[str, FakeUpstream]) -> None:
    async with served(tmp_path, CLASH, clash) as server:
        bodies = [
            (await server.http.get("/api/tags")).text,
            (await server.http.post("/api/show", json={"model": "backup/gpt-4o"})).text,
            (await server.http.get("/v1/models")).text,
        ]
    assert not any("sk-" in body for body in bodies)


async def test_rendered_views_are_computed_once_per_refresh() -> None:
    fake = fake_with([{"id": "a", "object": "model"}])
    renders: list[int] = []

    def render(cards: list[Any]) -> list[str]:
        renders.append(len(cards))
        return [card.name for card in cards]

    async with direct({"u.test": fake}, [Source(Target("http://u.test/v1", name="u"))]) as (catalog, _):
        await catalog.cards()
        assert catalog.index.rendered("names", render) == ["a:latest"]
        assert catalog.index.rendered("names", render) == ["a:latest"]
        fake.models.append({"id": "b", "object": "model"})
        await catalog.refresh()
        assert catalog.index.rendered("names", render) == ["a:latest", "b:latest"]
    assert renders == [1, 2]


async def test_aclose_stops_a_refresh_under_way() -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    fake = fake_with([{"id": "a", "object": "model"}])
    async with direct({"u.test": fake}, [Source(Target("http://u.test/v1", name="u"))], ttl=0.0) as (catalog, _):
        await catalog.cards()
        fake.on("GET", "/models", never)  # type: ignore[arg-type]
        await catalog.cards()  # starts a background refresh that will hang
        await asyncio.sleep(0.01)
        task = catalog._refresh
        assert task is not None and not task.done()
        await catalog.aclose()
        assert task.cancelled()
