"""State that every process and replica shares through the database, kept fresh by polling.

Runtime API keys, the admin page's edits to models, the models in use: each kind of state is a
*topic* with a version in the small `state_versions` table, raised (`bump`) in the same transaction
as the change. Each process polls that table every `interval` seconds (one tiny query) and reloads a
topic only when its version moved, so a change made by any process, or by the CLI, is seen
everywhere within about `interval` seconds, and nothing is read on the request path. Work that must
run at every poll whatever changed (counters for limits, write-behind of last-used times) registers
with `every_poll`.

A database that is slow or away never fails a request: polls are retried, and until the first
succeeds each topic keeps what its owner started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .ledger import tables
from .ledger.database import described

log = logging.getLogger("oai2ollama.shared")

POLL_SECONDS = 1.0  # a change is seen everywhere within about this long (the issues promise 2 s)
WARN_EVERY = 60.0
FIRST_POLL_SECONDS = 10.0  # how long start-up waits for the database's state before serving without it

Reload = Callable[[AsyncConnection], Awaitable[None]]


async def bump(connection: AsyncConnection, topic: str) -> None:
    """Raise `topic`'s version, inside the transaction that changed it: pollers reload it once it commits."""
    table = tables.state_versions
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(topic=topic, version=1)
    statement = statement.on_conflict_do_update(index_elements=[table.c.topic], set_={"version": table.c.version + 1})
    await connection.execute(statement)


async def versions(connection: AsyncConnection) -> dict[str, int]:
    table = tables.state_versions
    return {row.topic: row.version for row in await connection.execute(sa.select(table.c.topic, table.c.version))}


class SharedState:
    """The poller. `ready` is awaited before the first poll (the schema's migration)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ready: Callable[[], Awaitable[object]] | None = None,
        interval: float = POLL_SECONDS,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self._ready = ready
        self._topics: dict[str, list[Reload]] = {}
        self._every_poll: list[Reload] = []
        self._seen: dict[str, int] = {}
        self._loaded: set[str] = set()  # topics reloaded at least once
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._first = asyncio.Event()
        self._warned_at = -WARN_EVERY

    def watch(self, topic: str, reload: Reload) -> None:
        """Call `reload(connection)` at the first poll and whenever `topic`'s version moves."""
        self._topics.setdefault(topic, []).append(reload)

    def every_poll(self, callback: Reload) -> None:
        """Call `callback(connection)` at every poll, on a read-only connection."""
        self._every_poll.append(callback)

    async def poll(self) -> None:
        """One pass: reload the topics that changed, then run the every-poll work. Tests call it
        directly to see a change at once; the loop calls it every `interval` seconds."""
        # Read only: under SQLite a writing transaction would take the file's write lock every poll.
        # Work that writes opens its own transaction on `engine`.
        async with self._lock, self.engine.connect() as connection:
            await connection.execution_options(read_only=True)
            current = await versions(connection)
            await connection.rollback()  # each reload reads in a transaction of its own
            for topic, reloads in self._topics.items():
                version = current.get(topic, 0)
                if topic in self._loaded and self._seen.get(topic) == version:
                    continue
                for reload in reloads:
                    await reload(connection)
                    await connection.commit()
                self._seen[topic] = version
                self._loaded.add(topic)
            for callback in self._every_poll:
                await callback(connection)
                await connection.commit()

    async def start(self, first_within: float = FIRST_POLL_SECONDS) -> None:
        """Start polling; return after the first poll, or after `first_within` seconds if the
        database does not answer (polling goes on in the background)."""
        self._first.clear()
        self._task = asyncio.create_task(self._run(), name="shared state poller")
        try:
            await asyncio.wait_for(self._first.wait(), first_within)
        except TimeoutError:
            log.warning("shared state: the database did not answer within %g s; polling on", first_within)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        if self._ready is not None:
            await self._ready()
        while True:
            started = time.monotonic()
            try:
                await self.poll()
                self._first.set()
            except Exception as exc:  # the database is away: keep what we have, try again
                now = time.monotonic()
                if now - self._warned_at >= WARN_EVERY:
                    self._warned_at = now
                    log.warning("shared state: cannot poll the database: %s", described(exc, self.engine.url))
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
