"""API keys made at runtime (`oai2ollama keys`, the admin page), kept in the database all processes share.

A key is made here and shown once to whoever made it; the database keeps its SHA-256 (hex) and its
first characters (`prefix`), which tell keys apart in a listing and say nothing useful about the
rest. Every change raises the `keys` topic's version in the same transaction (`shared_state.bump`),
so each running server reloads its keys within about a second.

Each function runs in the caller's transaction: `async with engine.begin() as connection: key =
await add_key(connection, "ci")`. `KeyStoreError` carries a message for a person; no message or
log line here ever holds a key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from .ledger import tables
from .records import ErrorKind
from .shared_state import bump

TOPIC = "keys"
KEY_PREFIX = "o2o-"
PREFIX_LENGTH = len(KEY_PREFIX) + 6  # 36 of the key's 256 random bits: enough to tell keys apart
LONGEST_NAME = 200
USAGE_DAYS = 30  # `list_keys` sums usage over this many days, today included


class KeyStoreError(ValueError):
    """A change the store refuses: a bad name, a name in use, an unknown key."""


def new_key() -> str:
    """`o2o-` and 43 URL-safe characters: 256 random bits, and a prefix that says what it is."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_of(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def check_name(name: str) -> str:
    """A key's name is how requests, logs and reports refer to it: one printable line, ≤ 200 characters."""
    if not name.strip():
        raise KeyStoreError("a key's name must not be empty")
    if len(name) > LONGEST_NAME:
        raise KeyStoreError(f"a key's name must be at most {LONGEST_NAME} characters long")
    if not name.isprintable():
        raise KeyStoreError("a key's name must be printable: no control characters or line breaks")
    if name != name.strip():
        raise KeyStoreError("a key's name must not begin or end with a space")
    return name


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One row of `api_keys`; `models` None: every model."""

    name: str
    digest: str
    prefix: str
    models: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    tokens_per_day: int | None = None
    requests_per_minute: int | None = None
    last_used_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """`revoked`, `expired` or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """What a key used, from the ledger's daily totals: today (UTC) and the last `USAGE_DAYS` days."""

    requests_today: int = 0
    tokens_today: int = 0  # input and output tokens together
    requests: int = 0
    tokens: int = 0


def _utc(value: datetime | None) -> datetime | None:
    """SQLite gives back naive datetimes; they were written in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(row: Mapping[str, Any]) -> StoredKey:
    models = json.loads(row["models"]) if row["models"] is not None else None
    created_at = _utc(row["created_at"])
    assert created_at is not None
    return StoredKey(
        name=row["name"],
        digest=row["digest"],
        prefix=row["prefix"],
        models=tuple(models) if models is not None else None,
        created_at=created_at,
        expires_at=_utc(row["expires_at"]),
        revoked_at=_utc(row["revoked_at"]),
        tokens_per_day=row["tokens_per_day"],
        requests_per_minute=row["requests_per_minute"],
        last_used_at=_utc(row["last_used_at"]),
    )


def _positive(value: int | None, what: str) -> int | None:
    if value is not None and value <= 0:
        raise KeyStoreError(f"{what} must be a positive number")
    return value


async def add_key(
    connection: AsyncConnection,
    name: str,
    *,
    models: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    tokens_per_day: int | None = None,
    requests_per_minute: int | None = None,
    now: datetime | None = None,
) -> str:
    """Make a key named `name` and return it: the only time it is seen. A revoked or expired key's
    name may be given again (the new key replaces it); an active one's may not."""
    now = now or datetime.now(UTC)
    check_name(name)
    if models is not None:
        models = [pattern.strip() for pattern in models]
        if not models or not all(models):
            raise KeyStoreError("--models needs at least one model name or glob; leave it out to allow every model")
    if expires_at is not None and expires_at <= now:
        raise KeyStoreError("a key's expiry must be in the future")
    _positive(tokens_per_day, "tokens per day")
    _positive(requests_per_minute, "requests per minute")
    table = tables.api_keys
    existing = await _one(connection, name)
    if existing is not None:
        if existing.state(now) == "active":
            raise KeyStoreError(f"a key named {name!r} exists already; revoke it first or choose another name")
        await connection.execute(table.delete().where(table.c.name == name))
    key = new_key()
    values = {
        "name": name,
        "digest": digest_of(key),
        "prefix": key[:PREFIX_LENGTH],
        "models": json.dumps(list(models)) if models is not None else None,
        "created_at": now,
        "expires_at": expires_at,
        "tokens_per_day": tokens_per_day,
        "requests_per_minute": requests_per_minute,
    }
    try:
        await connection.execute(table.insert().values(values))
    except IntegrityError:  # another process added this name in the meantime (PostgreSQL)
        raise KeyStoreError(f"a key named {name!r} exists already; revoke it first or choose another name") from None
    await bump(connection, TOPIC)
    return key


async def revoke_key(connection: AsyncConnection, name: str, *, now: datetime | None = None) -> StoredKey:
    """Revoke the key named `name` (at once, in every process within about a second); the key as
    stored afterwards. Revoking a revoked key changes nothing: its `revoked_at` tells when it was."""
    now = now or datetime.now(UTC)
    table = tables.api_keys
    revoked = await connection.execute(
        table.update().where(table.c.name == name, table.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    if revoked.rowcount:
        await bump(connection, TOPIC)
    stored = await _one(connection, name)
    if stored is None:
        raise KeyStoreError(f"no key is named {name!r}")
    return stored


async def load_keys(connection: AsyncConnection) -> list[StoredKey]:
    """Every key, revoked and expired ones too (so that they are refused by name), by name."""
    table = tables.api_keys
    result = await connection.execute(sa.select(table).order_by(table.c.name))
    return [_stored(row) for row in result.mappings()]


async def _one(connection: AsyncConnection, name: str) -> StoredKey | None:
    table = tables.api_keys
    row = (await connection.execute(sa.select(table).where(table.c.name == name))).mappings().first()
    return _stored(row) if row is not None else None


async def key_usage(connection: AsyncConnection, today: date) -> dict[str, KeyUsage]:
    """Each key name's usage (see `KeyUsage`), from the daily totals."""
    daily = tables.usage_daily
    tokens = daily.c.input_tokens + daily.c.output_tokens
    query = (
        sa.select(daily.c.key_name, daily.c.day, sa.func.sum(daily.c.requests), sa.func.sum(tokens))
        .where(daily.c.day > today - timedelta(days=USAGE_DAYS), daily.c.key_name != "")
        .group_by(daily.c.key_name, daily.c.day)
    )
    found: dict[str, KeyUsage] = {}
    for name, day, requests, used in await connection.execute(query):
        before = found.get(name, KeyUsage())
        requests, used = int(requests or 0), int(used or 0)
        found[name] = KeyUsage(
            requests_today=before.requests_today + (requests if day == today else 0),
            tokens_today=before.tokens_today + (used if day == today else 0),
            requests=before.requests + requests,
            tokens=before.tokens + used,
        )
    return found


async def list_keys(connection: AsyncConnection, *, now: datetime | None = None) -> list[tuple[StoredKey, KeyUsage]]:
    """Every key with its usage, by name."""
    now = now or datetime.now(UTC)
    usage = await key_usage(connection, now.date())
    return [(key, usage.get(key.name, KeyUsage())) for key in await load_keys(connection)]


# ---- what the servers' poll reads and writes (see `key_sync`)


async def tokens_on(connection: AsyncConnection, names: Iterable[str], day: date) -> dict[str, int]:
    """Input and output tokens each of `names` used on `day` (UTC), by every process."""
    daily = tables.usage_daily
    query = (
        sa.select(daily.c.key_name, sa.func.sum(daily.c.input_tokens + daily.c.output_tokens))
        .where(daily.c.day == day, daily.c.key_name.in_(list(names)))
        .group_by(daily.c.key_name)
    )
    return {name: int(total or 0) for name, total in await connection.execute(query)}


async def requests_since(
    connection: AsyncConnection, names: Iterable[str], since: datetime
) -> list[tuple[str, datetime]]:
    """(key name, start) of each request of `names` recorded since `since`, oldest first; requests
    refused for a limit do not count against it. Starts are naive UTC, as the ledger stores them."""
    requests = tables.requests
    query = (
        sa.select(requests.c.key_name, requests.c.at)
        .where(
            requests.c.at >= since,
            requests.c.key_name.in_(list(names)),
            sa.or_(requests.c.error_kind.is_(None), requests.c.error_kind != ErrorKind.RATE_LIMITED),
        )
        .order_by(requests.c.at)
    )
    return [(name, _naive(at)) for name, at in await connection.execute(query)]


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


async def note_last_used(connection: AsyncConnection, used: Mapping[str, datetime]) -> None:
    """Write when each key was last used; never moves a time back (another process may be later)."""
    if not used:
        return
    table = tables.api_keys
    statement = (
        table.update()
        .where(
            table.c.name == sa.bindparam("key_name"),
            sa.or_(table.c.last_used_at.is_(None), table.c.last_used_at < sa.bindparam("used_at")),
        )
        .values(last_used_at=sa.bindparam("used_at"))
    )
    await connection.execute(statement, [{"key_name": name, "used_at": at} for name, at in used.items()])
