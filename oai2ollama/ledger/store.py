"""Every SQL statement the ledger runs, over SQLAlchemy Core: the same code for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from . import tables


async def insert_requests(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    await connection.execute(tables.requests.insert(), list(rows))
