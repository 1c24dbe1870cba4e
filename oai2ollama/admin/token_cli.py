"""`oai2ollama admin-token`: a new admin token for the database the server uses, printed once.

For a token that was lost: the old one stops opening the admin page, every session ends, and every
running server learns the new one within about a second. With `--admin-token` set, the server uses
that instead and this command is not needed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict, SettingsError
from sqlalchemy.engine import URL


class AdminTokenCommand(BaseSettings):
    """Make a new admin token, store its hash in the server's database and print it once.

    Uses the database the server uses (--database-url, env OAI2OLLAMA_DATABASE_URL, or .env).
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_prefix="OAI2OLLAMA_ADMIN_TOKEN_CLI_",  # only the database setting is shared with the server
        extra="ignore",
        populate_by_name=True,
        cli_kebab_case=True,
        cli_prog_name="oai2ollama admin-token",
        cli_hide_none_type=True,
    )

    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("database_url", "OAI2OLLAMA_DATABASE_URL"),
        description="The server's --database-url (env OAI2OLLAMA_DATABASE_URL)",
    )


def main(argv: Sequence[str]) -> None:
    from ..cli import command_database, describe_invalid, fail
    from ..ledger.database import described, shown

    try:
        command = CliApp.run(AdminTokenCommand, cli_args=list(argv), cli_exit_on_error=False)
    except ValidationError as exc:
        fail(describe_invalid(exc))
    except SettingsError as exc:
        fail(str(exc).removeprefix("error parsing CLI: "))
    setting = command.database_url.get_secret_value() if command.database_url else None
    url = command_database(
        setting, "there is no database (database-url is none): the server makes a new token at every start"
    )
    try:
        token = asyncio.run(_store(url))
    except Exception as exc:  # the database cannot be reached: one line, no traceback
        fail(f"cannot store the admin token at {shown(url)}: {described(exc, url)}")
    sys.stdout.write(f"{token}\n")
    print(
        "oai2ollama: the new admin token is above, shown only this once; the old one and every session have ended",
        file=sys.stderr,
    )


async def _store(url: URL) -> str:
    from ..ledger.database import migrate, open_engine
    from ..shared_state import bump
    from . import auth

    engine = open_engine(url)
    try:
        await migrate(engine)
        token = auth.new_token()
        async with engine.begin() as connection:
            await auth.replace_token(connection, token)
            await bump(connection, auth.TOPIC)
        return token
    finally:
        await engine.dispose()
