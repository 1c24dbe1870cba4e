"""API keys made at runtime (`oai2ollama keys`): the CLI on a real database, and running servers on
loopback that see a key added or revoked within 2 s, also two servers sharing one database; keys
combined with flag keys; model globs; limits answered 429 in each route's shape."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

import oai2ollama
from oai2ollama import key_store
from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.ledger import tables
from oai2ollama.ledger.database import migrate, open_engine, resolve_url
from oai2ollama.shared_state import bump
from oai2ollama.upstream import Upstreams

from .fakes import API_KEY, BASE_URL, FakeUpstream, completion, text_stream
from .loopback import serve

pytestmark = pytest.mark.anyio

REPO = Path(oai2ollama.__file__).resolve().parent.parent
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}], "stream": False}


async def keys_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`oai2ollama keys …` as a user runs it, in a process of its own. Awaited, never run blocking:
    the servers under test share this event loop, and one may hold the SQLite file's write lock
    until the loop lets it commit."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OAI2OLLAMA_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "oai2ollama", "keys", *args]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, env=environment, cwd=REPO
    )


async def add_key(database_url: str, name: str, *options: str) -> str:
    made = await keys_cli(database_url, "add", name, *options)
    assert made.returncode == 0, made.stderr
    return made.stdout.splitlines()[-1]


@pytest.fixture
def answering(fake: FakeUpstream) -> FakeUpstream:
    fake.on("POST", "/chat/completions", text_stream("Hello"))  # 11 tokens in, 7 out
    return fake


@pytest.fixture
async def server_on(answering: FakeUpstream) -> AsyncIterator[Callable[..., Any]]:
    """`await server_on(database_url, **settings)`: a real server on loopback, on that database."""
    async with AsyncExitStack() as stack:

        async def start(database_url: str, **values: Any) -> str:
            upstreams = Upstreams(transport=answering.transport())
            stack.push_async_callback(upstreams.aclose)
            settings = Settings(_env_file=None, base_url=BASE_URL, api_key=API_KEY, database_url=database_url, **values)  # type: ignore[call-arg]
            return await stack.enter_async_context(serve(create_app(settings, upstreams=upstreams)))

        yield start


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def status(url: str, key: str | None = None, path: str = "/api/chat") -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        return (await http.post(path, json=CHAT, headers=bearer(key) if key else {})).status_code


# ---- the CLI ---------------------------------------------------------------------------------------


async def test_add_prints_the_key_once_and_stores_only_its_digest(database_url: str) -> None:
    made = await keys_cli(database_url, "add", "ci", "--models", "gpt-*", "llama*", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert key.startswith("o2o-") and len(key) > 40
    assert made.stdout.count(key) == 1 and key not in made.stderr
    rows = await rows_of(database_url, sa.select(tables.api_keys))
    (row,) = rows
    assert row["digest"] == key_store.digest_of(key) and key not in json.dumps(row, default=str)
    assert row["prefix"] == key[: key_store.PREFIX_LENGTH] and json.loads(row["models"]) == ["gpt-*", "llama*"]

    listed = await keys_cli(database_url, "list")
    assert listed.returncode == 0 and "ci" in listed.stdout and "gpt-*,llama*" in listed.stdout
    assert key not in listed.stdout and row["prefix"] + "…" in listed.stdout
    (entry,) = json.loads((await keys_cli(database_url, "list", "--json")).stdout)
    assert (entry["name"], entry["state"], entry["models"]) == ("ci", "active", ["gpt-*", "llama*"])
    expires = datetime.fromisoformat(entry["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=29) < expires <= timedelta(days=30)


async def test_names_revoke_and_errors(database_url: str) -> None:
    await add_key(database_url, "ci")
    again = await keys_cli(database_url, "add", "ci")
    assert again.returncode == 1 and "exists already" in again.stderr and again.stdout == ""
    revoked = await keys_cli(database_url, "revoke", "ci")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert json.loads((await keys_cli(database_url, "list", "--json")).stdout)[0]["state"] == "revoked"
    unknown = await keys_cli(database_url, "revoke", "nobody")
    assert unknown.returncode == 1 and "no key is named 'nobody'" in unknown.stderr
    for args, message in (
        (["add", "x", "--tokens-per-day", "0"], "must be at least 1"),
        (["add", "x", "--expires", "soon"], "expires"),
        (["add", "bad\nname"], "printable"),
        (["add"], "required: name"),
    ):
        refused = await keys_cli(database_url, *args)
        assert refused.returncode in (1, 2) and message in refused.stderr and refused.stderr.count("\n") == 1, args
    assert (await add_key(database_url, "ci")).startswith("o2o-"), "a revoked key's name may be given again"


async def test_the_cli_needs_a_database() -> None:
    off = await keys_cli("none", "list")
    assert off.returncode == 2 and "database-url is none" in off.stderr


async def test_a_database_password_is_never_shown() -> None:
    failed = await keys_cli("postgresql://ledger:sekret-pw-123@127.0.0.1:1/keys", "list")
    assert failed.returncode == 2 and "cannot use the database" in failed.stderr
    assert "sekret-pw-123" not in failed.stderr + failed.stdout


# ---- a running server ---------------------------------------------------------------------------------


async def test_a_server_sees_a_key_added_and_revoked_within_two_seconds(
    database_url: str, server_on: Callable[..., Any]
) -> None:
    first = await server_on(database_url)
    second = await server_on(database_url)  # another process on the same database
    assert await status(first) == 200, "no key anywhere: open, as without keys"
    key = await add_key(database_url, "ci")
    for url in (first, second):
        await until_status(url, None, 401)
        assert await status(url, key) == 200
        assert await status(url, "o2o-not-a-key") == 401
    assert (await keys_cli(database_url, "revoke", "ci")).returncode == 0
    for url in (first, second):
        await until_status(url, key, 401)
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert refused.json()["error"]["message"] == "API key 'ci' was revoked"


async def test_database_keys_combine_with_flag_keys_and_keep_their_models(
    database_url: str, server_on: Callable[..., Any], answering: FakeUpstream
) -> None:
    key = await add_key(database_url, "only-gpt", "--models", "gpt-*")
    url = await server_on(database_url, server_api_key=["flag-key-123"])
    assert await status(url, "flag-key-123") == 200
    assert await status(url, key) == 200
    async with httpx.AsyncClient(base_url=url, headers=bearer(key)) as http:
        assert (await http.post("/api/chat", json={**CHAT, "model": "text-embedding-test"})).status_code == 403
        assert [m["name"] for m in (await http.get("/api/tags")).json()["models"]] == ["gpt-test:latest"]
    assert all(
        "Bearer" not in str(r.headers.get("authorization")) or API_KEY in r.headers["authorization"]
        for r in answering.requests
    ), "our keys are never sent upstream"


async def test_an_expired_key_is_refused_by_name(database_url: str, server_on: Callable[..., Any]) -> None:
    key = await add_key(database_url, "temp", "--expires", "1h")
    url = await server_on(database_url)
    assert await status(url, key) == 200
    engine = open_engine(resolve_url(database_url))  # type: ignore[arg-type]
    try:
        async with engine.begin() as connection:
            past = datetime.now(UTC) - timedelta(minutes=1)
            await connection.execute(tables.api_keys.update().values(expires_at=past))
            await bump(connection, key_store.TOPIC)
    finally:
        await engine.dispose()
    await until_status(url, key, 401)
    async with httpx.AsyncClient(base_url=url) as http:
        refused = await http.post("/api/chat", json=CHAT, headers=bearer(key))
    assert refused.json()["error"].startswith("API key 'temp' expired on ")


async def test_requests_per_minute_are_refused_in_each_routes_shape(
    database_url: str, server_on: Callable[..., Any]
) -> None:
    key = await add_key(database_url, "slow", "--requests-per-minute", "2")
    url = await server_on(database_url)
    async with httpx.AsyncClient(base_url=url, headers=bearer(key)) as http:
        assert [(await http.post("/api/chat", json=CHAT)).status_code for _ in range(2)] == [200, 200]
        answers = {
            "ollama": await http.post("/api/chat", json=CHAT),
            "openai": await http.post("/v1/chat/completions", json=CHAT),
            "anthropic": await http.post("/v1/messages", json={**CHAT, "max_tokens": 16}),
        }
    for dialect, answer in answers.items():
        assert answer.status_code == 429, dialect
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        body = answer.json()
        message = body["error"] if dialect == "ollama" else body["error"]["message"]
        assert message.startswith("API key 'slow' is over its limit of 2 requests per minute; retry in "), message
    assert answers["anthropic"].json()["type"] == "error"
    await until_rows(database_url, 5)
    limited = await rows_of(database_url, sa.select(tables.requests.c.error_kind, tables.requests.c.key_name))
    assert sorted(str(row["error_kind"]) for row in limited) == ["None", "None", *["rate_limited"] * 3]
    assert {row["key_name"] for row in limited} == {"slow"}


async def test_tokens_per_day_hold_across_servers_sharing_a_database(
    database_url: str, server_on: Callable[..., Any]
) -> None:
    key = await add_key(database_url, "small", "--tokens-per-day", "10")
    first = await server_on(database_url)
    second = await server_on(database_url)
    assert await status(first, key) == 200  # 18 tokens: over the limit once it is counted
    assert await status(first, key) == 429, "this process counts its own answers at once"
    await until_status(second, key, 429)  # the other, once the ledger has the answer (about 2 s)
    client = openai.AsyncOpenAI(base_url=f"{second}/v1", api_key=key, max_retries=0)
    try:
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "Hi"}])
    finally:
        await client.close()
    assert "over its limit of 10 tokens per day (UTC)" in str(refused.value)
    assert int(refused.value.response.headers["retry-after"]) <= 86400


async def test_the_openai_sdk_with_a_runtime_key(
    database_url: str, server_on: Callable[..., Any], answering: FakeUpstream
) -> None:
    answering.on("POST", "/chat/completions", httpx.Response(200, json=completion("Hello")))
    key = await add_key(database_url, "sdk")
    url = await server_on(database_url)
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    try:
        answer = await client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "Hi"}])
        assert answer.choices[0].message.content == "Hello"
        assert (await keys_cli(database_url, "revoke", "sdk")).returncode == 0
        await until_status(url, key, 401)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    finally:
        await client.close()
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while not (await rows_of(database_url, sa.select(tables.api_keys.c.last_used_at)))[0]["last_used_at"]:
        assert datetime.now(UTC) < deadline, "last use written within a few polls"


async def test_an_exposed_server_without_any_key_warns_once_it_has_read_its_database(
    database_url: str, server_on: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="oai2ollama"):
        await server_on(database_url, host="0.0.0.0", allowed_hosts=["127.0.0.1"])
    assert "without an API key" in caplog.text and "oai2ollama keys add" in caplog.text
    caplog.clear()
    await add_key(database_url, "ci")
    with caplog.at_level(logging.WARNING, logger="oai2ollama"):
        await server_on(database_url, host="0.0.0.0", allowed_hosts=["127.0.0.1"])
    assert "without an API key" not in caplog.text


# ---- helpers --------------------------------------------------------------------------------------


async def until_status(url: str, key: str | None, expected: int, seconds: float = 2.5) -> None:
    """The server answers `expected` within `seconds` (the issue's promise: 2 s, plus the request's time)."""
    seen: list[int] = []
    deadline = datetime.now(UTC) + timedelta(seconds=seconds)
    while datetime.now(UTC) < deadline:
        seen.append(await status(url, key))
        if seen[-1] == expected:
            return
    raise AssertionError(f"expected {expected} within {seconds} s, got {seen[-5:]}")


async def rows_of(database_url: str, query: sa.Select[Any]) -> list[dict[str, Any]]:
    engine = open_engine(resolve_url(database_url))  # type: ignore[arg-type]
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            return [dict(row) for row in (await connection.execute(query)).mappings()]
    finally:
        await engine.dispose()


async def until_rows(database_url: str, count: int) -> None:
    found: list[int] = [0]

    async def check() -> bool:
        found[0] = len(await rows_of(database_url, sa.select(tables.requests.c.id)))
        return found[0] >= count

    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not await check():
        assert datetime.now(UTC) < deadline, f"{found[0]} of {count} rows"
