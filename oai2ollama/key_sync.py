"""The database's API keys in a running server: reloaded when they change, limits counted across processes.

`KeySync` hangs off the shared-state poller (`shared_state`): when the `keys` topic moves it
reloads every key into the guards' `KeyRing`; at every poll it reads what the other processes
sharing the database counted against limited keys (`guards.limits`), and writes when keys were
last used. Nothing here runs on the request path.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import key_store
from .guards.keys import KeyRing, RuntimeKey
from .guards.limits import WINDOW, Limits
from .model_rules import Globs
from .shared_state import SharedState


def runtime_key(stored: key_store.StoredKey) -> tuple[bytes, RuntimeKey]:
    """A stored key as the guards hold it: its digest, and what they check."""
    return bytes.fromhex(stored.digest), RuntimeKey(
        name=stored.name,
        models=Globs(stored.models) if stored.models is not None else None,
        expires_at=stored.expires_at.timestamp() if stored.expires_at is not None else None,
        revoked_at=stored.revoked_at.timestamp() if stored.revoked_at is not None else None,
        tokens_per_day=stored.tokens_per_day,
        requests_per_minute=stored.requests_per_minute,
    )


class KeySync:
    def __init__(self, ring: KeyRing, limits: Limits):
        self.ring = ring
        self.limits = limits
        self._engine: AsyncEngine | None = None

    def attach(self, shared: SharedState) -> None:
        self._engine = shared.engine
        # Until the first load, a database may hold keys this process has not seen: refuse (503)
        # rather than answer as an open server.
        self.ring.pending = True
        shared.watch(key_store.TOPIC, self.reload)
        shared.every_poll(self.exchange)

    async def reload(self, connection: AsyncConnection) -> None:
        keys = [runtime_key(stored) for stored in await key_store.load_keys(connection)]
        self.limits.use((key for _, key in keys), time.time())
        self.ring.use_runtime(keys)

    async def exchange(self, connection: AsyncConnection) -> None:
        """Read the other processes' counts for limited keys; write when keys were last used."""
        now = time.time()
        names = self.limits.names()
        if names:
            mark = self.limits.mark()
            at = datetime.fromtimestamp(now, UTC)
            tokens = await key_store.tokens_on(connection, names, at.date())
            starts = await key_store.requests_since(connection, names, at - timedelta(seconds=WINDOW))
            self.limits.update(now, tokens, starts, mark)
        used = self.limits.take_last_used()
        if used and self._engine is not None:
            async with self._engine.begin() as writing:  # the poll's own connection only reads
                await key_store.note_last_used(writing, used)
