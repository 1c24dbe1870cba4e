"""The models in use: what /api/ps lists.

A model counts as loaded for a keep-alive window after it last answered, like a model Ollama
keeps in memory; a request with `keep_alive: 0` (`ollama stop`) unloads it at once.

With a database (`share`), every process and replica lists the same models: each one writes its
uses to the `models_in_use` table from a background task (write-behind: the request path only
appends to a list), and /api/ps reads that table. A use is written as the request *starts*, so
that it has landed long before the client, having read the answer, asks /api/ps through another
process; a request the upstream then refuses takes its use back. A model already written in the
last `REWRITE_SECONDS` is not written again, so a busy model costs one small write every ten
seconds per process, and another process's /api/ps may show its expiry up to that much early. An
unload deletes the row everywhere and raises the topic's version, so that every process forgets
what it believed it had written. Without a database, or while it is away, each
process lists its own uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .translate.models import ModelCard

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from .shared_state import SharedState

log = logging.getLogger("oai2ollama.in_use")

# How long a model stays in /api/ps after its last use, like Ollama's default keep_alive.
KEEP_ALIVE_SECONDS = 300.0
TOPIC = "models_in_use"
# A model written this recently is not written again. Each write costs the serving thread ~4 ms
# (SQLAlchemy over aiosqlite's thread); once a second that was ~0.4% of a busy server's time.
REWRITE_SECONDS = 10.0
READ_TIMEOUT = 1.0  # /api/ps lists this process's own uses when the database takes longer
RETRY_SECONDS = 1.0
MAX_PENDING = 10_000  # writes kept while the database is away; older ones are dropped
WARN_EVERY = 60.0


@dataclasses.dataclass(eq=False)
class Use:
    """A use written at a request's start; `previous` is the row's time before it (read by the writer)."""

    card: ModelCard
    at: float
    previous: float | None = None


_CARD_FIELDS = tuple(field.name for field in dataclasses.fields(ModelCard) if field.init)


def card_json(card: ModelCard) -> str:
    # default=str: an option the TOML file gave as a date (or anything else JSON lacks) never stops the writer.
    return json.dumps({name: getattr(card, name) for name in _CARD_FIELDS}, default=str)


def card_from_json(text: str) -> ModelCard:
    data = {name: value for name, value in json.loads(text).items() if name in _CARD_FIELDS}
    data["capabilities"] = tuple(data.get("capabilities", ("completion",)))
    return ModelCard(**data)


class ModelsInUse:
    """Models in use by the name clients used, each with the wall-clock time its keep-alive ends."""

    def __init__(self, *, keep_alive: float = KEEP_ALIVE_SECONDS, clock: Callable[[], float] = time.time):
        self._keep_alive = keep_alive
        self._clock = clock
        self._used: dict[str, tuple[ModelCard, float]] = {}  # lower-cased name → card, last use
        # Shared through a database (`share`):
        self._engine: AsyncEngine | None = None
        self._ops: list[tuple[str, Any]] = []  # ("use", Use) | ("undo", Use) | ("forget", names)
        self._writing: list[tuple[str, Any]] = []  # the ops of the transaction under way
        self._written: dict[str, float] = {}  # name → the last use this process wrote
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -WARN_EVERY
        self._ready: Callable[[], Awaitable[object]] | None = None
        self._flushing = asyncio.Lock()

    # ---- the request path (never waits)

    def touch(self, card: ModelCard) -> None:
        self._used[card.name.lower()] = (card, self._clock())

    def starting(self, card: ModelCard) -> Use | None:
        """A request for `card` is about to be sent upstream: have the use written to the database
        now (in the background). Returns what `failed` takes back, or None when nothing was written."""
        if self._engine is None:
            return None
        now = self._clock()
        name = card.name.lower()
        if now - self._written.get(name, -REWRITE_SECONDS) < REWRITE_SECONDS:
            return None
        self._written[name] = now
        use = Use(card, now)
        self._queue(("use", use))
        return use

    def failed(self, use: Use | None) -> None:
        """The upstream did not answer the request `use` was written for: take it back."""
        if use is not None and self._engine is not None:
            self._written.pop(use.card.name.lower(), None)
            self._queue(("undo", use))

    def forget(self, name: str) -> None:
        """Unload (`keep_alive: 0`, `ollama stop`): by any name of the model, in every process."""
        names = (name.lower(), name.lower() + ":latest")
        for each in names:
            self._used.pop(each, None)
            self._written.pop(each, None)
        if self._engine is not None:
            self._queue(("forget", names))

    async def unload(self, name: str) -> None:
        """`forget`, and wait (a second at most) until every process's /api/ps no longer lists it."""
        self.forget(name)
        if self._engine is not None and self._task is not None:
            try:
                await asyncio.wait_for(self.flush(), READ_TIMEOUT)
            except Exception as exc:  # written by the background task once the database is back
                self._warn("cannot write the models in use", exc)

    def local(self) -> list[tuple[ModelCard, float]]:
        """(card, expires) of the models this process used within the window."""
        now = self._clock()
        expired = [name for name, (_, used) in self._used.items() if used + self._keep_alive <= now]
        for name in expired:
            del self._used[name]
        return [(card, used + self._keep_alive) for card, used in self._used.values()]

    def loaded(self) -> list[tuple[ModelCard, float]]:
        """This process's own view, longest remaining lifetime first (see `everywhere`)."""
        return _sorted(self.local())

    async def everywhere(self) -> list[tuple[ModelCard, float]]:
        """(card, expires) of the models any process used within the window, longest lifetime first:
        the database's rows and this process's own uses (which may not be written yet)."""
        local = self.local()
        if self._engine is None:
            return _sorted(local)
        # Taken before the read: what commits while it runs is in one or the other.
        pending = [*self._writing, *self._ops]  # being written, then waiting
        try:
            rows = await asyncio.wait_for(self._read(), READ_TIMEOUT)
        except Exception as exc:  # the database is away: this process's own view
            self._warn("cannot read the models in use", exc)
            return _sorted(local)
        # The database's rows, with this process's uses and unloads not written yet.
        merged: dict[str, tuple[ModelCard, float]] = {}
        now = self._clock()
        for name, card_text, used_at in rows:
            with contextlib.suppress(ValueError, TypeError):
                merged[name] = (card_from_json(card_text), used_at + self._keep_alive)
        for kind, value in pending:
            if kind == "use":
                name, expires = value.card.name.lower(), value.at + self._keep_alive
                if expires > merged.get(name, (None, 0.0))[1]:
                    merged[name] = (value.card, expires)
            elif kind == "undo":
                if merged.get(value.card.name.lower(), (None, 0.0))[1] == value.at + self._keep_alive:
                    del merged[value.card.name.lower()]
            else:
                for name in value:
                    merged.pop(name, None)
        return _sorted([(card, expires) for card, expires in merged.values() if expires > now])

    # ---- sharing through the database

    def share(self, engine: AsyncEngine, shared: SharedState, ready: Callable[[], Awaitable[object]]) -> None:
        """Share through `engine`'s database; `ready` is awaited before the first write (the migration)."""
        self._engine = engine
        self._ready = ready
        shared.watch(TOPIC, self._unloaded_elsewhere)

    async def _unloaded_elsewhere(self, connection: AsyncConnection) -> None:
        # A model was unloaded somewhere: what this process believes it wrote may be gone.
        self._written.clear()

    async def start(self) -> None:
        if self._engine is not None:
            self._wake = asyncio.Event()
            if self._ops:
                self._wake.set()
            self._task = asyncio.create_task(self._run(), name="models in use writer")

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._ops:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), READ_TIMEOUT)

    def _queue(self, op: tuple[str, Any]) -> None:
        self._ops.append(op)
        if len(self._ops) > MAX_PENDING:
            del self._ops[: len(self._ops) - MAX_PENDING]
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        if self._ready is not None:
            await self._ready()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                self._warn("cannot write the models in use", exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()

    async def flush(self) -> None:
        """Write what is queued, after any write under way: once it returns, every process sees it."""
        async with self._flushing:  # FIFO: what was queued first commits first
            await self._flush()

    async def _flush(self) -> None:
        """Write what is queued, in order, in one transaction."""
        import sqlalchemy as sa

        from .ledger import tables
        from .shared_state import bump

        assert self._engine is not None
        ops, self._ops = self._ops, []
        if not ops:
            return
        self._writing = ops  # still listed by `everywhere` until committed
        table = tables.models_in_use
        try:
            async with self._engine.begin() as connection:
                forgot = False
                for kind, value in ops:
                    if kind == "use":
                        await self._write(connection, value)
                    elif kind == "undo":
                        await _undo(connection, value)
                    else:
                        await connection.execute(sa.delete(table).where(table.c.name.in_(value)))
                        forgot = True
                if forgot:
                    await bump(connection, TOPIC)
        except BaseException:
            self._ops[:0] = ops  # again at the next try, in the same order
            raise
        finally:
            self._writing = []

    async def _write(self, connection: AsyncConnection, use: Use) -> None:
        import sqlalchemy as sa
        from sqlalchemy.dialects import postgresql, sqlite

        from .ledger import tables

        table = tables.models_in_use
        name = use.card.name.lower()
        use.previous = (
            await connection.execute(sa.select(table.c.used_at).where(table.c.name == name))
        ).scalar_one_or_none()
        postgres = connection.dialect.name == "postgresql"
        insert = (postgresql if postgres else sqlite).insert(table)
        later = (sa.func.greatest if postgres else sa.func.max)(table.c.used_at, insert.excluded.used_at)
        statement = insert.values(name=name, card=card_json(use.card), used_at=use.at).on_conflict_do_update(
            index_elements=[table.c.name], set_={"card": insert.excluded.card, "used_at": later}
        )
        await connection.execute(statement)

    async def _read(self) -> list[tuple[str, str, float]]:
        import sqlalchemy as sa

        from .ledger import tables

        assert self._engine is not None
        table = tables.models_in_use
        since = self._clock() - self._keep_alive
        async with self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(table.c.name, table.c.card, table.c.used_at).where(table.c.used_at > since)
            )
            return [(row.name, row.card, row.used_at) for row in result]

    def _warn(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            if self._engine is not None:
                from .ledger.database import described  # SQLAlchemy only where there is a database

                log.warning("%s: %s", what, described(exc, self._engine.url))


async def _undo(connection: AsyncConnection, use: Use) -> None:
    """Put the row back as it was before `use`, unless another use has moved it since."""
    import sqlalchemy as sa

    from .ledger import tables

    table = tables.models_in_use
    mine = (table.c.name == use.card.name.lower()) & (table.c.used_at == use.at)
    if use.previous is None:
        await connection.execute(sa.delete(table).where(mine))
    else:
        await connection.execute(sa.update(table).where(mine).values(used_at=use.previous))


def as_now(
    loaded: list[tuple[ModelCard, float]], current: Callable[[ModelCard], ModelCard | None]
) -> list[tuple[ModelCard, float]]:
    """`loaded` (longest lifetime first) with each model's card as the catalog has it now (`current`:
    the card listed for the same upstream model, or None): a use keeps the card of its moment, and
    an edit since (a new alias, a context length) must show. Two uses that are now one model's are
    listed once, with the later expiry."""
    shown: dict[str, tuple[ModelCard, float]] = {}
    for card, expires in loaded:
        now = current(card)
        if now is not None and (now.upstream, now.upstream_id) == (card.upstream, card.upstream_id):
            card = now
        shown.setdefault(card.name.lower(), (card, expires))
    return list(shown.values())


def _sorted(items: list[tuple[ModelCard, float]]) -> list[tuple[ModelCard, float]]:
    items.sort(key=lambda item: item[1], reverse=True)
    return items
