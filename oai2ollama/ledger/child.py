"""The ledger's writer process: `python -m oai2ollama.ledger.child`, started by `writer.Ledger`.

Why a process of its own: SQLite's driver runs in threads that take Python's lock back from the
event loop for every call, and each hand-over slows the serving thread far beyond the writer's own
work (about a tenth of a busy server's requests per second, measured). Here the server only pickles
its records and writes them to a pipe.

The protocol, over the standard streams the server owns:
- in: one JSON line (`url`, `log_level`, `batch_size`), then `frames`; end of input means: write
  what came, and exit.
- out: one JSON line per event: `{"done": n, "written": w, "dropped": d}` once a batch of n records
  is committed (d of them could not be rows), `{"warning": text}` for the server to log.

The server is the only writer of the input (a pipe it made), so unpickling it trusts no one else.
Interrupts and termination signals are ignored: the server's shutdown ends the input, and a server
that is killed ends it too, so the child writes what it was given and exits either way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from . import store
from .database import RETRY_SECONDS, described, open_engine, shown
from .frames import HEADER, WireRecord, record_of
from .rows import daily_totals, row_of

WARN_EVERY = 60.0
BUSY_MS = 60_000
TEXT_LIMIT = 4000


class _Writer:
    def __init__(self, engine: AsyncEngine, batch_size: int) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.pending: deque[WireRecord] = deque()
        self.arrived = asyncio.Event()
        self.ended = False
        self._warned: dict[str, float] = {}

    def say(self, **event: Any) -> None:
        # Texts cut short: the server reads lines of at most 64 KiB.
        event = {name: value[:TEXT_LIMIT] if isinstance(value, str) else value for name, value in event.items()}
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def warn(self, topic: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(topic, -WARN_EVERY) >= WARN_EVERY:
            self._warned[topic] = now
            self.say(warning=message)

    async def read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    header = await reader.readexactly(HEADER.size)
                except asyncio.IncompleteReadError:
                    return
                self.pending.extend(pickle.loads(await reader.readexactly(HEADER.unpack(header)[0])))
                self.arrived.set()
        finally:
            self.ended = True
            self.arrived.set()

    async def run(self) -> None:
        while True:
            while not self.pending:
                if self.ended:
                    return
                self.arrived.clear()
                await self.arrived.wait()
            count = min(self.batch_size, len(self.pending))
            batch = [self.pending.popleft() for _ in range(count)]
            rows, error = [], ""
            for wire in batch:
                try:
                    rows.append(row_of(*record_of(wire)))
                except Exception:  # a bug of ours: this record only, never the writer
                    error = error or traceback.format_exc()
            await self._retry(lambda rows=rows: self._write(rows))  # type: ignore[misc]
            self.say(done=len(batch), written=len(rows), dropped=len(batch) - len(rows), error=error)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        async with self.engine.begin() as connection:
            await store.insert_requests(connection, rows)
            await store.add_daily(connection, daily_totals(rows))

    async def _retry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await attempt()
                if failures:
                    self.say(warning=f"usage ledger: write succeeded after {failures} failure(s)")
                return
            except Exception as exc:  # any database failure: wait and try again
                failures += 1
                url = self.engine.url
                self.warn("write", f"usage ledger: cannot write to {shown(url)}: {described(exc, url)}")
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    settings = json.loads(await reader.readline())
    logging.basicConfig(level=settings.get("log_level", "WARNING"), stream=sys.stderr)
    # Waiting for SQLite's write lock is all this process does: a server too busy to finish its own
    # short transaction (the models in use) promptly must not make it warn and retry.
    engine = open_engine(make_url(settings["url"]), busy_ms=BUSY_MS)
    writer = _Writer(engine, int(settings["batch_size"]))
    try:
        await asyncio.gather(writer.read(reader), writer.run())
    finally:
        await engine.dispose()


def main() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    asyncio.run(_main())


if __name__ == "__main__":
    main()
