"""The admin page's state in one process: its keyring (once known), failed logins, and how it starts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import Settings
from ..ledger import Ledger
from ..shared_state import SharedState, bump
from . import auth

log = logging.getLogger("oai2ollama.admin")


def page_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/admin"


class AdminState:
    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger | None,
        shared: SharedState | None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.logins = auth.FailedLogins()
        self._configured = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.keyring: auth.Keyring | None = None  # None: not ready yet (the database is being opened)
        self._task: asyncio.Task[None] | None = None
        self._cached: dict[str, tuple[float, Any]] = {}
        self.settled_hours: dict[str, tuple[int, int]] = {}  # the overview's hourly counts (queries.hours_counted)
        if ledger is None and self._configured is not None:
            self.keyring, _ = auth.keyring_without_database(self._configured)
        if shared is not None:
            shared.watch(auth.TOPIC, self._reload)

    async def cached(self, name: str, seconds: float, compute: Callable[[], Awaitable[Any]]) -> Any:
        """`compute()`, or what it gave less than `seconds` ago: several admins, or one reloading,
        read the ledger's aggregates once."""
        now = time.monotonic()
        hit = self._cached.get(name)
        if hit is not None and now - hit[0] < seconds:
            return hit[1]
        value = await compute()
        self._cached[name] = (time.monotonic(), value)
        return value

    async def start(self) -> None:
        """Learn the token: generate it (and print it) where none exists; in the background while
        the database is being migrated, so that a slow database never holds up the server."""
        if self.ledger is None:
            if self.keyring is None:
                self.keyring, token = auth.keyring_without_database(None)
                self._announce(token, stored=False)
            else:
                log.info("admin page: %s (token: --admin-token)", page_url(self.settings))
            return
        self._task = asyncio.create_task(self._load(), name="admin token")

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _load(self) -> None:
        assert self.ledger is not None
        await self.ledger.migrated.wait()
        while True:
            try:
                async with self.ledger.engine.begin() as connection:
                    keyring, token = await auth.keyring_from_database(connection, self._configured)
                break
            except Exception as exc:  # the database is away: the page waits for it
                log.warning("admin page: cannot read its token from the database (%s); retrying", type(exc).__name__)
                await asyncio.sleep(5)
        self.keyring = keyring
        if self._configured is not None:
            log.info("admin page: %s (token: --admin-token)", page_url(self.settings))
        elif token is not None:
            self._announce(token, stored=True)
        else:
            log.info(
                "admin page: %s (token: the one printed at the first start; `oai2ollama admin-token` sets a new one)",
                page_url(self.settings),
            )

    async def sign_out(self, session: auth.Session) -> None:
        """End `session` here at once; with a database, end every session on every process: a
        copied cookie must not outlive the sign-out. A database that is away leaves the others be."""
        if self.keyring is not None:
            self.keyring.end(session)
        if self.ledger is None:
            return
        try:
            async with self.ledger.engine.begin() as connection:
                await auth.renew_salt(connection)
                await bump(connection, auth.TOPIC)
                keyring, _ = await auth.keyring_from_database(connection, self._configured)
        except Exception as exc:  # the database is away: this session has ended here all the same
            log.warning("admin: cannot end the other sessions in the database (%s)", type(exc).__name__)
            return
        self.keyring = keyring

    def _announce(self, token: str, *, stored: bool) -> None:
        kept = "stored hashed, shown only this once" if stored else "no database: a new one at every start"
        log.warning("admin page: %s; generated admin token (%s): %s", page_url(self.settings), kept, token)

    async def _reload(self, connection: AsyncConnection) -> None:
        """Another process (the CLI) set a new token: read it, which ends every session."""
        if self.keyring is None or self.ledger is None:
            return  # `_load` has not finished; it reads the newest
        # Reading the token may write (a new one, if its row was deleted): not on the poll's
        # read-only connection, in a transaction of its own.
        async with self.ledger.engine.begin() as writing:
            self.keyring, token = await auth.keyring_from_database(writing, self._configured)
        if token is not None:  # the token's row was deleted by hand: a new one was made
            self._announce(token, stored=True)
