"""Every SQL statement the ledger runs, over SQLAlchemy Core: the same code for SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables

# Rows deleted per statement while pruning: a long delete would hold SQLite's write lock.
PRUNE_CHUNK = 5000


async def insert_requests(connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (`rows.row_of`'s dicts) into `requests`, as the statement SQLAlchemy compiles
    for this database, once."""
    if rows:
        await _RequestsInsert.of(connection.dialect).run(connection, rows)


class _RequestsInsert:
    """The requests insert, compiled once per database, run with the driver's own parameters.

    `connection.execute(insert, rows)` builds and type-processes a parameter dict per row (~15 µs a
    row); this does the same type processing (SQLAlchemy's own bind processors, e.g. SQLite's
    datetime text) over plain tuples, and hands the batch to the driver's executemany: one call
    for SQLite (the statement prepared once, stepped per row), one round trip for PostgreSQL
    (asyncpg). It runs in the ledger's writer process, where no serving thread waits for Python's
    lock while SQLite's driver thread steps through the rows.
    """

    _compiled: ClassVar[dict[str, _RequestsInsert]] = {}

    def __init__(self, dialect: Dialect) -> None:
        self.columns = [column.name for column in tables.requests.columns if not column.primary_key]
        statement = tables.requests.insert().values({name: sa.bindparam(name) for name in self.columns})
        compiled = statement.compile(dialect=dialect)
        # Positional parameters in the columns' order, the only kind the SQL below is built for.
        assert dialect.positional and compiled.positiontup == self.columns, dialect.paramstyle
        self.sql = str(compiled)
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(self.columns):
            column_type = tables.requests.c[name].type
            processor = column_type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors.append((index, processor))

    @classmethod
    def of(cls, dialect: Dialect) -> _RequestsInsert:
        key = f"{dialect.name}+{dialect.driver}"
        compiled = cls._compiled.get(key)
        if compiled is None:
            compiled = cls._compiled[key] = cls(dialect)
        return compiled

    def parameters(self, row: Mapping[str, Any]) -> list[Any]:
        values = [row[name] for name in self.columns]
        for index, processor in self.processors:
            values[index] = processor(values[index])
        return values

    async def run(self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        await connection.exec_driver_sql(self.sql, [tuple(self.parameters(row)) for row in rows])


async def add_daily(connection: AsyncConnection, totals: Sequence[dict[str, Any]]) -> None:
    """Add `totals` to the day's rows, creating the ones not there yet; atomic per row, so
    several processes can add to one day."""
    if totals:
        await connection.execute(_daily_upsert(connection.dialect.name), list(totals))


@functools.cache
def _daily_upsert(database: str) -> sa.Insert:
    """One statement per database, so that SQLAlchemy compiles it once (~4 ms a batch otherwise)."""
    table = tables.usage_daily
    statement = (postgresql if database == "postgresql" else sqlite).insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in tables.DAILY_KEY],
        set_={name: table.c[name] + statement.excluded[name] for name in tables.DAILY_SUMS},
    )


async def prune(connection: AsyncConnection, requests_before: datetime, days_before: date) -> int:
    """Delete one chunk of requests older than `requests_before`, and the daily totals before
    `days_before`; the number of requests deleted (call again while it is a whole chunk)."""
    requests = tables.requests
    oldest = sa.select(requests.c.id).where(requests.c.at < requests_before).limit(PRUNE_CHUNK)
    deleted = await connection.execute(requests.delete().where(requests.c.id.in_(oldest.scalar_subquery())))
    await connection.execute(tables.usage_daily.delete().where(tables.usage_daily.c.day < days_before))
    return deleted.rowcount or 0


REPORTED = ("at", "upstream", "upstream_model", "model", "key_name", "status", "error_kind")
REPORTED += ("input_tokens", "output_tokens", "cost_usd", "duration", "first_byte", "streamed")


async def requests_since(connection: AsyncConnection, since: datetime) -> AsyncIterator[Mapping[str, Any]]:
    requests = tables.requests
    query = sa.select(*(requests.c[name] for name in REPORTED)).where(requests.c.at >= since)
    result = await connection.stream(query.execution_options(yield_per=2000))
    async for row in result.mappings():
        yield row


async def days_since(connection: AsyncConnection, day: date) -> list[Mapping[str, Any]]:
    daily = tables.usage_daily
    return list((await connection.execute(sa.select(daily).where(daily.c.day >= day))).mappings())
