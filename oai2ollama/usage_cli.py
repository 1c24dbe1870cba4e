"""`oai2ollama usage`: totals from the usage ledger, on the database the server uses (same setting).

oai2ollama usage [--since 7d] [--by model|key|upstream|day] [--json|--csv]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict, SettingsError

from .config import parse_duration

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from .ledger.report import Totals


class UsageCommand(BaseSettings):
    """Print totals from the usage ledger: requests, errors, tokens, estimated cost, latency.

    Reads the database the server writes (--database-url, env OAI2OLLAMA_DATABASE_URL, or .env).
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_prefix="OAI2OLLAMA_USAGE_",  # only the database settings below are shared with the server
        extra="ignore",
        populate_by_name=True,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="oai2ollama usage",
        cli_hide_none_type=True,
    )

    since: str = Field("7d", description="The period: 24h, 7d, 30d, 2w … back from now")
    by: Literal["model", "key", "upstream", "day"] | None = Field(None, description="One line per model, key, …")
    json_output: bool = Field(False, validation_alias=AliasChoices("json", "json_output"), description="As JSON")
    csv_output: bool = Field(False, validation_alias=AliasChoices("csv", "csv_output"), description="As CSV")
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("database_url", "OAI2OLLAMA_DATABASE_URL"),
        description="The server's --database-url (env OAI2OLLAMA_DATABASE_URL)",
    )
    usage_retention: float = Field(
        30 * 86400.0,
        validation_alias=AliasChoices("usage_retention", "USAGE_RETENTION"),
        description="The server's --usage-retention: older periods are read from the daily totals",
    )

    @field_validator("since")
    @classmethod
    def _since(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("usage_retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value


def main(argv: Sequence[str]) -> None:
    from .cli import command_database, describe_invalid, fail

    try:
        command = CliApp.run(UsageCommand, cli_args=list(argv), cli_exit_on_error=False)
    except ValidationError as exc:
        fail(describe_invalid(exc))
    except SettingsError as exc:
        fail(str(exc).removeprefix("error parsing CLI: "))
    if command.json_output and command.csv_output:
        fail("give --json or --csv, not both")
    from .ledger import report
    from .ledger.database import described, shown

    setting = command.database_url.get_secret_value() if command.database_url else None
    url = command_database(setting, "the usage ledger is off (database-url is none)")
    now = datetime.now(UTC)
    since = now - timedelta(seconds=parse_duration(command.since))
    daily = since < now - timedelta(seconds=command.usage_retention)
    try:
        result = asyncio.run(_read(url, since, command.by, daily))
    except Exception as exc:  # the database cannot be reached or read: one line, no traceback
        fail(f"cannot read the usage ledger at {shown(url)}: {described(exc, url)}")
    groups, overall = result
    if daily:  # whole days: the daily totals start at midnight UTC
        since = datetime(since.year, since.month, since.day, tzinfo=UTC)
    made = report.Report(since, command.by, daily, groups, overall)
    render = report.as_json if command.json_output else report.as_csv if command.csv_output else report.as_text
    sys.stdout.write(render(made) + ("\n" if command.json_output else ""))


async def _read(url: URL, since: datetime, by: str | None, daily: bool) -> tuple[dict[str, Totals], Totals]:
    from .ledger import report, store
    from .ledger.database import migrate, open_engine

    engine = open_engine(url)
    try:
        await migrate(engine)  # a database of an older version is brought up to date first
        async with engine.connect() as connection:
            await connection.execution_options(read_only=True)
            if daily:
                return report.totals(await store.days_since(connection, since.date()), by, daily=True)
            rows = [row async for row in store.requests_since(connection, since)]
            return report.totals(rows, by, daily=False)
    finally:
        await engine.dispose()
