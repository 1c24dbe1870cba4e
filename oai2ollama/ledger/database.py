"""Which database the ledger uses, opening it, and bringing its schema up to date.

One setting names it (`--database-url`): `sqlite:///PATH`, `postgresql://…`, or `none`; unset means
SQLite in the user's data directory. URLs are mapped to the async drivers (aiosqlite, asyncpg).
A URL may carry a password, so nothing here puts a URL in a message except through `shown`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

OFF = "none"
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SCHEMES = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+asyncpg": "postgresql",
}
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_HELP = "use sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DATABASE or none"
# Two processes starting at once against one PostgreSQL must not both create the tables.
_MIGRATION_LOCK = 0x0A120117
# A writer waiting on a locked SQLite file (another process writing) waits this long, off the request path.
_SQLITE_BUSY_MS = 5000
# Seconds between attempts while a database is away (the ledger's migration and writes), growing.
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# Connections kept open per process: the ledger's writer, the shared-state poller, /api/ps's writer.
# More (the admin page, a report) are opened for the moment and closed.
_SQLITE_POOL = 3
_SQLITE_OVERFLOW = 5
# Alembic's `context` is one per process: two migrations at once in one process (two apps, as in
# tests) would run inside each other. One lock per event loop.
_migrating: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def default_path(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/oai2ollama/oai2ollama.db`, else `~/.local/share/oai2ollama/oai2ollama.db`."""
    environ = os.environ if environ is None else environ
    data_home = environ.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(data_home) if data_home and Path(data_home).is_absolute() else Path.home() / ".local" / "share"
    return base / "oai2ollama" / "oai2ollama.db"


def resolve_url(setting: str | None) -> URL | None:
    """The async URL for a `--database-url` value; None when the ledger is off. A ValueError names the
    problem, never the value."""
    if setting is None or not setting.strip():
        return make_url(f"{DRIVERS['sqlite']}:///{default_path()}")
    if setting.strip().lower() == OFF:
        return None
    try:
        url = make_url(setting.strip())
    except ArgumentError:
        raise ValueError(f"not a database URL; {_HELP}") from None
    engine = _SCHEMES.get(url.drivername)
    if engine is None:
        raise ValueError(f"unsupported database {url.drivername!r}; {_HELP}")
    if engine == "sqlite" and not url.database:
        raise ValueError("a SQLite URL needs a file: sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if engine == "sqlite" and url.database == ":memory:":
        raise ValueError("an in-memory SQLite database would lose every record at exit; give a file")
    url = url.set(drivername=DRIVERS[engine])
    return _ssl_for_asyncpg(url) if engine == "postgresql" else url


def _ssl_for_asyncpg(url: URL) -> URL:
    """libpq's `?sslmode=require` (what managed PostgreSQL services hand out) is asyncpg's `ssl`:
    SQLAlchemy passes query options to the driver as they are, and asyncpg has no `sslmode`."""
    mode = url.query.get("sslmode")
    if mode is None:
        return url
    if isinstance(mode, tuple):
        mode = mode[-1]
    if mode not in _SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(_SSL_MODES)}")
    return url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})


def shown(url: URL) -> str:
    """The URL as it may appear in a log line or a message: the password masked."""
    return url.render_as_string(hide_password=True)


def described(exc: BaseException, url: URL) -> str:
    """A database failure in one line for a log or a message: the driver's own first line
    (SQLAlchemy's wrapper adds the statement and its parameters), `url`'s password masked."""
    text = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0] or type(exc).__name__
    return text.replace(url.password, "***") if url.password else text


def open_engine(url: URL, *, busy_ms: int = _SQLITE_BUSY_MS) -> AsyncEngine:
    """A pooled async engine; SQLite files get WAL (readers never block the writer) and their directory.
    `busy_ms`: how long a SQLite statement waits for another connection's write lock."""
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        # Pooled: opening a connection (its thread, the file, the pragmas, the schema read on its first
        # statement) costs ~4 ms of CPU, and the writer process's batches, the poller (every second) and
        # /api/ps's sharing each use one often. SQLite keeps no server-side state, so one left open by a
        # crash costs nothing.
        engine = create_async_engine(url, pool_size=_SQLITE_POOL, max_overflow=_SQLITE_OVERFLOW)
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_pragmas, busy_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # Few connections: one writer per process, and the odd report.
    return create_async_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True, connect_args={"timeout": 10})


def _sqlite_pragmas(busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    # Transactions are ours (see `_sqlite_begin`), not the driver's: it would run DDL outside any.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # The busy timeout first: switching a new file to WAL needs a lock that another process (a worker
    # starting at the same moment) may hold; without it the switch fails at once, "database is locked".
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Safe with WAL: a power cut may lose the last transactions, never corrupt the file.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Writers take the file's write lock when they begin, not when they first write: a deferred
    transaction that reads and then writes fails at once (no busy wait) if another process wrote
    in between. Readers (`read_only=True`) never block anyone under WAL."""
    read_only = connection.get_execution_options().get("read_only")
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def _upgrade(connection: Any, revision: str) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` (every table the ledger needs), keeping every row."""
    lock = _migrating.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await connection.run_sync(_upgrade, revision)


async def current_revision(connection: AsyncConnection) -> str | None:
    def read(sync: Any) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(sync).get_current_revision()

    return await connection.run_sync(read)
