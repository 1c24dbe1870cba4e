"""Runtime API keys, more cases (complementing test_runtime_keys): CLI mistakes, config-file keys, both limits
on every dialect's route with a process's own written records not counted twice, and the start before the
database is read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from oai2ollama import cli
from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.upstream import Upstreams

from .fakes import API_KEY, BASE_URL, FakeUpstream, isolate_settings, text_stream
from .polling import until

pytestmark = pytest.mark.anyio

ASK = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "gpt-test", "messages": ASK}


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)


def keys(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | str | None, str, str]:
    """The real entry point; it runs its own event loop, so async tests call it in a thread (`akeys`)."""
    code: int | str | None = 0
    try:
        cli.main(["keys", *args])
    except SystemExit as exited:
        code = exited.code
    out, err = capsys.readouterr()
    return code, out, err


async def akeys(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | str | None, str, str]:
    return await asyncio.to_thread(keys, capsys, *args)


async def add(capsys: pytest.CaptureFixture[str], url: str, name: str, *options: str) -> str:
    code, out, err = await akeys(capsys, "add", name, "--database-url", url, *options)
    assert code == 0, err
    return out.splitlines()[-1]


def settings_for(url: str, **values: Any) -> Settings:
    return Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, database_url=url, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running(url: str, fake: FakeUpstream, **values: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """An app on `url` with its lifespan (ledger, poller) running, and a client of it in process."""
    async with AsyncExitStack() as stack:
        upstreams = Upstreams(transport=fake.transport())
        stack.push_async_callback(upstreams.aclose)
        app = create_app(settings_for(url, **values), upstreams=upstreams)
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:11434")
        yield app, await stack.enter_async_context(http)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["add", "bad\nname"], "printable"),
        (["add", ""], "empty"),
        (["add", "x" * 201], "at most 200"),
        (["add", "ok", "--expires", "soon"], "invalid duration"),
        (["add", "ok", "--requests-per-minute", "0"], "at least 1"),
    ],
)
def test_mistakes_are_named(
    database_url: str, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    code, out, err = keys(capsys, *args, "--database-url", database_url)
    assert code in (1, 2) and problem in err and out == ""


async def test_database_keys_combine_with_flag_and_config_keys(
    database_url: str, fake: FakeUpstream, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "o.toml"
    config.write_text('[[keys]]\nkey = "config-key-123"\nname = "cfg"\n')
    key = await add(capsys, database_url, "db", "--models", "text-*")
    async with running(database_url, fake, server_api_key=["flag-key-123"], config=config) as (_, http):
        for presented in ("flag-key-123", "config-key-123", key):
            assert (await http.get("/api/tags", headers=bearer(presented))).status_code == 200
        listed = (await http.get("/api/tags", headers=bearer(key))).json()
        assert [m["name"] for m in listed["models"]] == ["text-embedding-test:latest"]
        refused = await http.post("/api/chat", json=CHAT, headers=bearer(key))
        assert refused.status_code == 403
        assert (await http.get("/api/tags", headers=bearer("nope"))).status_code == 401


ROUTES = [
    ("/api/chat", CHAT, lambda body: body["error"]),
    ("/v1/chat/completions", CHAT, lambda body: body["error"]["message"]),
    ("/v1/messages", {**CHAT, "max_tokens": 9}, lambda body: body["error"]["message"]),
]


@pytest.mark.parametrize(("path", "body", "message_of"), ROUTES)
async def test_requests_per_minute(
    database_url: str, fake: FakeUpstream, capsys: pytest.CaptureFixture[str], path: str, body: Any, message_of: Any
) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hi"))
    key = await add(capsys, database_url, "ci", "--requests-per-minute", "2")
    async with running(database_url, fake) as (app, http):
        for _ in range(2):
            assert (await http.post(path, json=body, headers=bearer(key))).status_code == 200
        refused = await http.post(path, json=body, headers=bearer(key))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        message = message_of(refused.json())
        assert message.startswith("API key 'ci' is over its limit of 2 requests per minute; retry in ")
        ledger = app.state.ledger
        await until(lambda: ledger.written >= 3, 5)
        # The records written and read back by the poll are this process's own: they do not count twice.
        await app.state.shared.poll()
        assert app.state.guards.limits.requests_in_window("ci", time.time()) == 2
    code, out, _ = await akeys(capsys, "list", "--database-url", database_url)
    assert code == 0 and "3 / 36" in out  # the refused request is listed, its tokens were none


@pytest.mark.parametrize(("path", "body", "message_of"), ROUTES)
async def test_tokens_per_day(
    database_url: str, fake: FakeUpstream, capsys: pytest.CaptureFixture[str], path: str, body: Any, message_of: Any
) -> None:
    fake.on("POST", "/chat/completions", text_stream("Hi"))  # 11 + 7 tokens
    key = await add(capsys, database_url, "ci", "--tokens-per-day", "10")
    async with running(database_url, fake) as (_, http):
        assert (await http.post(path, json=body, headers=bearer(key))).status_code == 200
        refused = await http.post(path, json=body, headers=bearer(key))
    assert refused.status_code == 429
    midnight = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC)
    assert abs(int(refused.headers["retry-after"]) - (midnight - datetime.now(UTC)).total_seconds()) < 5
    assert message_of(refused.json()).startswith("API key 'ci' is over its limit of 10 tokens per day (UTC); retry in")


async def test_until_the_database_is_read_only_other_keys_let_in(tmp_path: Path, fake: FakeUpstream) -> None:
    """Without the lifespan nothing polls: the server cannot tell whether the database holds keys."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    for extra, key, status in (({}, None, 503), ({"server_api_key": ["flag-key-123"]}, "flag-key-123", 200)):
        upstreams = Upstreams(transport=fake.transport())
        app = create_app(settings_for(url, **extra), upstreams=upstreams)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:11434") as http:
            answer = await http.get("/api/tags", headers=bearer(key) if key else {})
        await upstreams.aclose()
        assert answer.status_code == status, answer.text
        if status == 503:
            assert answer.headers["retry-after"] == "1" and "API keys" in answer.json()["error"]
