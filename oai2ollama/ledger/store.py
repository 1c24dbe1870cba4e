"""Every SQL statement the ledger runs, over SQLAlchemy Core: the same code for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables

# Rows deleted per statement while pruning: a long delete would hold SQLite's write lock.
PRUNE_CHUNK = 5000


async def insert_requests(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await connection.execute(tables.requests.insert(), list(rows))


async def add_daily(connection: AsyncConnection, totals: Sequence[dict[str, Any]]) -> None:
    """Add `totals` to the day's rows, creating the ones not there yet; atomic per row, so
    several processes can add to one day."""
    if not totals:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    table = tables.usage_daily
    statement = dialect.insert(table).values(list(totals))
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in tables.DAILY_KEY],
        set_={name: table.c[name] + statement.excluded[name] for name in tables.DAILY_SUMS},
    )
    await connection.execute(statement)


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
