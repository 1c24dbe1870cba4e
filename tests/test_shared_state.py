"""State shared through the database: a change bumped by one process is reloaded by every poller."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.ledger import tables
from oai2ollama.ledger.database import migrate, open_engine, resolve_url
from oai2ollama.shared_state import SharedState, bump, versions
from oai2ollama.upstream import Upstreams

from .conftest import BASE_URL
from .polling import until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database, as two processes would have."""
    resolved = resolve_url(database_url)
    assert resolved is not None
    first, second = open_engine(resolved), open_engine(resolved)
    await migrate(first)
    yield first, second
    await first.dispose()
    await second.dispose()


class Seen:
    def __init__(self) -> None:
        self.loads: list[int] = []

    async def reload(self, connection: AsyncConnection) -> None:
        self.loads.append((await versions(connection)).get("keys", 0))


async def change(engine: AsyncEngine, topic: str = "keys") -> None:
    async with engine.begin() as connection:
        await bump(connection, topic)


async def test_a_topic_is_loaded_at_the_first_poll_then_only_when_it_changes(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    writer, reader = engines
    seen = Seen()
    shared = SharedState(reader)
    shared.watch("keys", seen.reload)
    await shared.poll()
    await shared.poll()
    assert seen.loads == [0]
    await change(writer)  # another process changes the keys
    await change(writer, "model_edits")  # and something this poller does not watch
    await shared.poll()
    await shared.poll()
    await change(writer)
    await shared.poll()
    assert seen.loads == [0, 1, 2]


async def test_every_poll_work_runs_whatever_changed(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    calls: list[str] = []

    async def count(connection: AsyncConnection) -> None:
        await connection.execute(sa.select(sa.func.count()).select_from(tables.requests))
        calls.append("polled")

    shared = SharedState(engines[1])
    shared.every_poll(count)
    await shared.poll()
    await shared.poll()
    assert calls == ["polled", "polled"]


async def test_the_poller_sees_a_change_within_two_seconds(engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    writer, reader = engines
    seen = Seen()
    shared = SharedState(reader, interval=0.1)
    shared.watch("keys", seen.reload)
    await shared.start()
    try:
        await change(writer)
        await until(lambda: 1 in seen.loads, 2)
    finally:
        await shared.aclose()


async def test_a_database_away_is_retried_and_named_without_its_password(caplog: pytest.LogCaptureFixture) -> None:
    resolved = resolve_url("postgresql://ledger:sekret-password@127.0.0.1:1/usage")
    assert resolved is not None
    engine = open_engine(resolved)
    shared = SharedState(engine, interval=0.05)
    shared.watch("keys", Seen().reload)
    with caplog.at_level(logging.WARNING, logger="oai2ollama.shared"):
        await shared.start()
        try:
            await until(lambda: "cannot poll" in caplog.text, 10)
        finally:
            await shared.aclose()
            await engine.dispose()
    assert "sekret-password" not in caplog.text
    assert caplog.text.count("cannot poll") == 1  # once a minute, not once a poll


async def test_the_app_polls_its_database_while_it_runs(database_url: str, upstreams: Upstreams) -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL, database_url=database_url)  # type: ignore[call-arg]
    app = create_app(settings, upstreams=upstreams)
    shared: SharedState = app.state.shared
    seen = Seen()
    shared.watch("keys", seen.reload)
    async with app.router.lifespan_context(app):
        await until(lambda: bool(seen.loads), 10)
        await change(shared.engine)
        await until(lambda: 1 in seen.loads, 3)
    assert app.state.ledger.migrated.is_set()


async def test_without_a_database_nothing_is_shared(upstreams: Upstreams) -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL, database_url="none")  # type: ignore[call-arg]
    assert create_app(settings, upstreams=upstreams).state.shared is None
