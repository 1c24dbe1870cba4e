"""GET /metrics: the Prometheus text format, read back with prometheus_client's own parser, in one
process and with several (multiprocess mode, each worker a real process writing to a temp dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from oai2ollama import metrics as metrics_module
from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.metrics import Metrics
from oai2ollama.records import RequestRecord, Usage
from oai2ollama.translate.models import ModelCard
from oai2ollama.upstream import Upstreams

from .conftest import PROXY_URL
from .fakes import BASE_URL, FakeUpstream, embeddings_response, openai_error, text_stream

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


CHAT = {"gen_ai_provider_name": "default", "gen_ai_operation_name": "chat"}


async def scrape(client: httpx.AsyncClient, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


async def test_requests_tokens_and_durations(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hello"))
    fake.on("POST", "/embeddings", embeddings_response([0.1], prompt_tokens=5))
    chat = {"messages": [{"role": "user", "content": "Hi"}]}
    await client.post("/api/chat", json={"model": "gpt-test", **chat})
    await client.post("/api/chat", json={"model": "some-unlisted-model:7b", **chat})  # goes upstream all the same
    await client.post("/v1/embeddings", json={"model": "text-embedding-test", "input": "x"})
    await client.get("/v1/models/gpt-test")
    await client.get("/no/such/route")
    found = await scrape(client)

    assert value(found, "oai2ollama_requests_total", route="/api/chat", status="200") == 2
    assert value(found, "oai2ollama_requests_total", route="/v1/embeddings", status="200") == 1
    assert value(found, "oai2ollama_requests_total", route="/v1/models/{model}", status="200") == 1
    assert value(found, "oai2ollama_requests_total", route="other", status="404") == 1
    for model in ("gpt-test", "other"):
        tokens = {**CHAT, "gen_ai_request_model": model}
        assert value(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **tokens) == 11
        assert value(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="output", **tokens) == 7
        assert value(found, "gen_ai_client_token_usage_bucket", gen_ai_token_type="output", le="4.0", **tokens) == 0
        assert value(found, "gen_ai_client_token_usage_bucket", gen_ai_token_type="output", le="16.0", **tokens) == 1
        assert value(found, "gen_ai_server_time_to_first_token_seconds_count", **tokens) == 1
        ok = {**tokens, "error_type": ""}
        assert value(found, "gen_ai_server_request_duration_seconds_count", **ok) == 1
        assert value(found, "gen_ai_client_operation_duration_seconds_count", **ok) == 1
    embeddings = {
        "gen_ai_provider_name": "default",
        "gen_ai_operation_name": "embeddings",
        "gen_ai_request_model": "text-embedding-test",
    }
    assert value(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **embeddings) == 5
    assert value(found, "gen_ai_client_token_usage_count", gen_ai_token_type="output", **embeddings) is None
    assert value(found, "oai2ollama_upstream_up", upstream="default") == 1
    assert not any(name.endswith("_created") for name, _ in found)


async def test_errors_are_labelled(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("POST", "/chat/completions", openai_error(429, "slow down", "rate_limit_error"))
    await client.post("/v1/chat/completions", json={"model": "gpt-test", "messages": []})
    found = await scrape(client)
    labels = {**CHAT, "gen_ai_request_model": "gpt-test", "error_type": "upstream_4xx"}
    assert value(found, "gen_ai_server_request_duration_seconds_count", **labels) == 1
    assert value(found, "oai2ollama_requests_total", route="/v1/chat/completions", status="429") == 1


async def test_an_upstream_that_cannot_list_is_down(client: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.on("GET", "/models", openai_error(500, "broken"))
    assert (await client.get("/api/tags")).status_code == 502  # the catalog asks (a server does at start)
    found = await scrape(client)
    assert value(found, "oai2ollama_upstream_up", upstream="default") == 0


@pytest.mark.parametrize("settings_overrides", [{"server_api_key": ["admin"]}])
async def test_metrics_need_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 401
    await scrape(client, authorization="Bearer admin")


@pytest.mark.parametrize("settings_overrides", [{"server_api_key": ["admin"], "metrics_public": True}])
async def test_metrics_public(client: httpx.AsyncClient) -> None:
    await scrape(client)
    assert (await client.get("/api/tags")).status_code == 401  # nothing else is


async def test_a_key_limited_to_some_models_may_not_read_them(tmp_path: Path, fake: FakeUpstream) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text('[[keys]]\nkey = "team-key"\nmodels = ["gpt-*"]\n')
    settings = Settings(_env_file=None, base_url=BASE_URL, config=config)  # type: ignore[call-arg]
    upstreams = Upstreams(transport=fake.transport())
    app = create_app(settings, upstreams=upstreams)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL) as client:
        answer = await client.get("/metrics", headers={"authorization": "Bearer team-key"})
    await upstreams.aclose()
    assert answer.status_code == 403


def record(model: str, **changes: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "started_at": 0.0,
        "method": "POST",
        "path": "/api/chat",
        "dialect": "ollama",
        "status": 200,
        "duration": 0.5,
        "first_byte": 0.05,
        "model": model,
        "upstream": "default",
        "streamed": True,
        "usage": Usage(input_tokens=100, output_tokens=10),
        "upstream_duration": 0.4,
    }
    return RequestRecord(**{**fields, **changes})


class Listed:
    """A stand-in catalog that lists the given names."""

    def __init__(self, *names: str, up: bool = True):
        self.names, self.up = names, up

    def listed_card(self, name: str) -> ModelCard | None:
        return ModelCard(name=name, upstream_id=name, client_id=name) if name in self.names else None

    def listing_outcomes(self) -> dict[str, bool]:
        return {"default": self.up}


def test_model_labels_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_MODELS", 2)
    metrics = Metrics(route_paths=["/api/chat"])
    metrics.bind_catalog(Listed("a", "b", "c"))
    for model in ("a", "b", "c", "unlisted", "a"):
        metrics.observe(record(model))
    found = samples(metrics.exposition()[0].decode())
    counts = {
        model: value(found, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model=model, **CHAT)
        for model in ("a", "b", "c", "other")
    }
    assert counts == {"a": 2, "b": 1, "c": None, "other": 2}


def test_the_ledger_queue_through_its_hook() -> None:
    metrics = Metrics()
    depth, drops = [3], [0]
    metrics.register_queue(lambda: depth[0], lambda: drops[0])
    found = samples(metrics.exposition()[0].decode())
    assert (value(found, "oai2ollama_ledger_queue_depth"), value(found, "oai2ollama_ledger_dropped_records_total")) == (
        3,
        0,
    )
    depth[0], drops[0] = 0, 5
    metrics.exposition()
    drops[0] = 7
    found = samples(metrics.exposition()[0].decode())
    assert (value(found, "oai2ollama_ledger_queue_depth"), value(found, "oai2ollama_ledger_dropped_records_total")) == (
        0,
        7,
    )


WORKER = textwrap.dedent(
    """
    import json, sys
    from oai2ollama.metrics import Metrics
    from oai2ollama.records import RequestRecord, Usage
    from tests.test_metrics import Listed, record

    requests, depth, stays = json.loads(sys.argv[1])
    metrics = Metrics.from_environment(["/api/chat"])
    assert metrics.multiprocess_dir is not None
    metrics.bind_catalog(Listed("gpt-test"))
    metrics.register_queue(lambda: depth, lambda: 1)
    for _ in range(requests):
        metrics.observe(record("gpt-test"))
    metrics.refresh()
    if not stays:
        metrics.close()
    """
)
SCRAPER = textwrap.dedent(
    """
    import sys
    from oai2ollama.metrics import Metrics
    sys.stdout.write(Metrics.from_environment().exposition()[0].decode())
    """
)


def run(script: str, directory: Path, *args: str) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_several_processes_are_added_up(tmp_path: Path) -> None:
    """Three workers (one has stopped) write their values; a scrape served by another process
    counts every request of all three, and the queue of the live ones only."""
    for requests, depth, stays in ((3, 2, True), (4, 5, True), (2, 100, False)):
        run(WORKER, tmp_path, json.dumps([requests, depth, stays]))
    found = samples(run(SCRAPER, tmp_path))
    model = {**CHAT, "gen_ai_request_model": "gpt-test"}
    assert value(found, "oai2ollama_requests_total", route="/api/chat", status="200") == 9
    assert value(found, "gen_ai_client_token_usage_sum", gen_ai_token_type="input", **model) == 900
    assert value(found, "gen_ai_server_time_to_first_token_seconds_count", **model) == 9
    assert value(found, "oai2ollama_ledger_queue_depth") == 7
    assert value(found, "oai2ollama_ledger_dropped_records_total") == 3
    assert value(found, "oai2ollama_upstream_up", upstream="default") == 1
