"""`oai2ollama keys`: API keys kept in the server's database, made, listed and revoked while it runs.

oai2ollama keys add NAME [--models GLOB …] [--expires 30d] [--tokens-per-day N] [--requests-per-minute N]
oai2ollama keys list [--json]
oai2ollama keys revoke NAME

The database is the server's own (--database-url, env OAI2OLLAMA_DATABASE_URL, or .env). A new key
is printed once, as the last line of standard output; the database keeps only its SHA-256.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import parse_duration

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection

    from .key_store import KeyUsage, StoredKey

T = TypeVar("T")
EXIT_REFUSED = 1  # the store refused the change (a name in use, no such key)


class DatabaseSetting(BaseSettings):
    """The server's --database-url as the environment and .env give it."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("database_url", "OAI2OLLAMA_DATABASE_URL")
    )


def _fail(message: str) -> NoReturn:
    from .cli import fail

    fail(message)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and status 2, as the server's flags
        _fail(f"{message}; see oai2ollama keys --help")


def parser() -> argparse.ArgumentParser:
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url", metavar="URL", help="the server's --database-url (env OAI2OLLAMA_DATABASE_URL, or .env)"
    )
    root = _Parser(prog="oai2ollama keys", description="API keys kept in the server's database.")
    commands = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add = commands.add_parser("add", parents=[database], help="make a key and print it once")
    add.add_argument("name", help="how requests, logs and reports name the key")
    add.add_argument(
        "--models", nargs="+", action="extend", metavar="GLOB", help="the models it may use (default: every model)"
    )
    add.add_argument("--expires", type=_duration, metavar="DURATION", help="valid this long: 30d, 12h, 2w …")
    add.add_argument("--tokens-per-day", type=_positive, metavar="N", help="input and output tokens per UTC day")
    add.add_argument("--requests-per-minute", type=_positive, metavar="N", help="requests in any 60 seconds")
    listing = commands.add_parser("list", parents=[database], help="every key, its limits and usage")
    listing.add_argument("--json", action="store_true", help="as JSON")
    revoke = commands.add_parser("revoke", parents=[database], help="refuse a key from now on")
    revoke.add_argument("name")
    return root


def main(argv: Sequence[str]) -> None:
    args = parser().parse_args(list(argv))
    url = _database(args.database_url)
    if args.command == "add":
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=args.expires) if args.expires is not None else None
        key = _run(url, lambda connection: _add(connection, args, expires, now))
        limits = _limits(args.models, expires, args.tokens_per_day, args.requests_per_minute)
        print(f"created key '{args.name}': {limits}")
        print("running servers accept it within about a second; it is shown this once:")
        print(key)
    elif args.command == "revoke":
        stored = _run(url, lambda connection: _revoke(connection, args.name))
        when = stored.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if stored.revoked_at else "now"
        print(f"key '{stored.name}' revoked ({when}); running servers refuse it within about a second")
    else:
        keys = _run(url, _list)
        sys.stdout.write(as_json(keys) + "\n" if args.json else as_table(keys, datetime.now(UTC)))


def _database(flag: str | None) -> URL:
    from .cli import command_database

    setting = flag if flag is not None else DatabaseSetting().database_url  # type: ignore[call-arg]
    text = setting.get_secret_value() if isinstance(setting, SecretStr) else setting
    return command_database(text, "runtime keys live in the database, and it is off (database-url is none)")


async def _add(connection: AsyncConnection, args: argparse.Namespace, expires: datetime | None, now: datetime) -> str:
    from .key_store import add_key

    return await add_key(
        connection,
        args.name,
        models=args.models,
        expires_at=expires,
        tokens_per_day=args.tokens_per_day,
        requests_per_minute=args.requests_per_minute,
        now=now,
    )


async def _revoke(connection: AsyncConnection, name: str) -> StoredKey:
    from .key_store import revoke_key

    return await revoke_key(connection, name)


async def _list(connection: AsyncConnection) -> list[tuple[StoredKey, KeyUsage]]:
    from .key_store import list_keys

    return await list_keys(connection)


def _run(url: URL, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    from .key_store import KeyStoreError
    from .ledger.database import described, shown

    try:
        return asyncio.run(_in_transaction(url, work))
    except KeyStoreError as exc:
        print(f"oai2ollama: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None
    except Exception as exc:  # the database cannot be reached or written: one line, no traceback
        _fail(f"cannot use the database at {shown(url)}: {described(exc, url)}")


async def _in_transaction(url: URL, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    from .ledger.database import migrate, open_engine

    engine = open_engine(url)
    try:
        await migrate(engine)  # a database of an older version (or none yet) is brought up to date
        async with engine.begin() as connection:
            return await work(connection)
    finally:
        await engine.dispose()


def _limits(models: Sequence[str] | None, expires: datetime | None, tokens: int | None, requests: int | None) -> str:
    parts = [f"models {', '.join(models)}" if models else "every model"]
    parts.append(f"expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "no expiry")
    if tokens:
        parts.append(f"{tokens} tokens per day")
    if requests:
        parts.append(f"{requests} requests per minute")
    return ", ".join(parts)


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


COLUMNS = ("NAME", "KEY", "STATE", "MODELS", "CREATED", "EXPIRES", "LAST USED", "LIMITS", "TODAY", "30 DAYS")


def as_table(keys: Sequence[tuple[StoredKey, KeyUsage]], now: datetime) -> str:
    """One line per key; times in UTC; usage as requests / tokens."""
    if not keys:
        return "no keys in the database; make one with: oai2ollama keys add NAME\n"
    rows = [COLUMNS]
    for key, usage in keys:
        limits = [f"{key.tokens_per_day} tok/day" if key.tokens_per_day else ""]
        limits.append(f"{key.requests_per_minute} req/min" if key.requests_per_minute else "")
        rows.append(
            (
                key.name,
                key.prefix + "…",
                key.state(now),
                ",".join(key.models) if key.models is not None else "*",
                _when(key.created_at),
                _when(key.expires_at),
                _when(key.last_used_at),
                " ".join(part for part in limits if part) or "-",
                f"{usage.requests_today} / {usage.tokens_today}",
                f"{usage.requests} / {usage.tokens}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "".join(line + "\n" for line in lines)


def as_json(keys: Sequence[tuple[StoredKey, KeyUsage]]) -> str:
    now = datetime.now(UTC)

    def time(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    listed: list[dict[str, Any]] = [
        {
            "name": key.name,
            "prefix": key.prefix,
            "state": key.state(now),
            "models": list(key.models) if key.models is not None else None,
            "created_at": time(key.created_at),
            "expires_at": time(key.expires_at),
            "revoked_at": time(key.revoked_at),
            "last_used_at": time(key.last_used_at),
            "tokens_per_day": key.tokens_per_day,
            "requests_per_minute": key.requests_per_minute,
            "usage": {
                "requests_today": usage.requests_today,
                "tokens_today": usage.tokens_today,
                "requests_30d": usage.requests,
                "tokens_30d": usage.tokens,
            },
        }
        for key, usage in keys
    ]
    return json.dumps(listed, indent=2)
