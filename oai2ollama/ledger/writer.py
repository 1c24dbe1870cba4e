"""The ledger's queue and its background writer: the request path only enqueues.

`observe` (a request-log observer) appends the record to a bounded queue and returns; when the
queue is full the record is dropped and counted (`dropped`), with a warning at most once a minute.
A background task takes up to `batch_size` records, or what came within `batch_seconds` of the
first, prices them and hands them to the writer process (`child`), which writes each batch in one
transaction. While the database is slow or unreachable that process holds its batch and retries,
and the pipe to it fills, so records wait in the queue and requests never wait on any of it; a
crash loses at most what was queued and in flight. `aclose` (the app's shutdown) writes everything
queued before it returns. This process keeps the schema's migration and the pruning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from ..records import RequestRecord
from . import store
from .costs import Prices
from .database import RETRY_SECONDS, described, migrate, open_engine, shown
from .frames import frame, wire_record

log = logging.getLogger("oai2ollama.ledger")

BATCH_SIZE = 500
BATCH_SECONDS = 1.0
QUEUE_SIZE = 20_000  # records waiting while the database is away: some minutes of a busy server
WARN_EVERY = 60.0  # seconds between two warnings about the same trouble
CLOSE_SECONDS = 5.0  # how long shutdown waits for an unreachable database before giving up
RETENTION = 30 * 86400.0  # seconds each request's row is kept (--usage-retention)
DAILY_RETENTION_DAYS = 366  # daily totals: a year
PRUNE_EVERY = 3600.0
ACK_LIMIT = 2**16  # the longest line the writer process may answer with (it cuts its texts to fit)


class Ledger:
    def __init__(
        self,
        url: URL,
        *,
        batch_size: int = BATCH_SIZE,
        batch_seconds: float = BATCH_SECONDS,
        queue_size: int = QUEUE_SIZE,
        prices: Prices | None = None,
        retention: float = RETENTION,
        prune_every: float | None = PRUNE_EVERY,  # None: only when `prune` is called
    ) -> None:
        self.url = url
        self.prices = prices or Prices()
        self.retention = retention
        self.prune_every = prune_every
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.queue_size = queue_size
        # Counters other code (the metrics) reads; they only grow.
        self.dropped = 0  # records refused because the queue was full, or that could not be made a row
        self.written = 0
        self.lost = 0  # records still unwritten when shutdown gave up on the database
        self._pending: deque[RequestRecord] = deque()
        self._in_flight = 0  # records handed to the writer process and not yet written by it
        self._child: _WriterProcess | None = None
        self._arrived = asyncio.Event()  # the queue went from empty to not
        self._full = asyncio.Event()  # a whole batch is waiting, or shutdown began
        self._closing = False
        self.migrated = asyncio.Event()  # the schema is up to date: shared state may poll
        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._warned: dict[str, float] = {}

    # ---- the request path

    def observe(self, record: RequestRecord) -> None:
        pending = self._pending
        if len(pending) + self._in_flight >= self.queue_size:
            self.dropped += 1
            self._warn("full", "usage ledger queue is full: %d record(s) dropped so far", self.dropped)
            return
        pending.append(record)
        if len(pending) == 1:
            self._arrived.set()
        elif len(pending) == self.batch_size:
            self._full.set()

    def queue_depth(self) -> int:
        """Records not written yet: queued here or in flight to the writer process."""
        return len(self._pending) + self._in_flight

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id while there is one (it starts with the first batch)."""
        child = self._child
        return None if child is None or child.ended else child.pid

    # ---- the lifespan

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = open_engine(self.url)
        return self._engine

    async def start(self) -> None:
        """Read the price table, and start the writer: the schema is brought up to date first, in the
        background, retried."""
        self.prices.load()
        self._task = asyncio.create_task(self._run(), name="usage ledger writer")

    async def aclose(self, give_up_after: float = CLOSE_SECONDS) -> None:
        """Write what is queued (waiting at most `give_up_after` seconds for the database), then close."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), give_up_after)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:  # a bug of ours ended the writer: still close the database below
                log.exception("usage ledger: the writer failed")
            self._task = None
        if self._child is not None:  # what it still holds is lost (counted as it ends)
            await self._child.kill()
            self._child = None
        if self._pruner is not None:  # started by the writer, so only now surely there or not
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        if self._pending:
            self.lost += len(self._pending)
            self._pending.clear()
        if self.lost:
            log.error("usage ledger: %d record(s) could not be written to %s", self.lost, shown(self.url))
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    # ---- the writer

    async def _run(self) -> None:
        await self._retry("migrate", lambda: migrate(self.engine))
        self.migrated.set()
        if self.prune_every is not None and not self._closing:
            self._pruner = asyncio.create_task(self._prune_every(self.prune_every), name="usage ledger pruner")
        while True:
            batch = await self._next_batch()
            if not batch:
                break
            data, count = self._frame(batch)
            if count:
                await self._send(data, count)
        if self._child is not None:
            await self._child.finish()
            self._child = None

    def _frame(self, batch: list[RequestRecord]) -> tuple[bytes, int]:
        """The batch for the writer process, priced here (the prices are this process's), and how
        many records it holds: one that cannot be sent (a bug of ours) is dropped and counted, so
        that it never stops the writer."""
        wires = []
        for record in batch:
            try:
                wires.append(wire_record(record, self.prices.cost(record)))
            except Exception:
                self._drop_unstorable()
        try:
            return frame(wires), len(wires)
        except Exception:  # a value pickle refuses: find it, keep the rest
            kept = []
            for wire in wires:
                try:
                    frame([wire])
                    kept.append(wire)
                except Exception:
                    self._drop_unstorable()
            return frame(kept), len(kept)

    async def _next_batch(self) -> list[RequestRecord]:
        """Up to `batch_size` records: as soon as that many wait, else `batch_seconds` after the first
        arrived; an empty list once shutdown began and nothing is left."""
        while not self._pending:
            if self._closing:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        if len(self._pending) < self.batch_size and not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.batch_seconds)
        if not self._closing:
            self._full.clear()
        count = min(self.batch_size, len(self._pending))
        batch = [self._pending.popleft() for _ in range(count)]
        if len(self._pending) >= self.batch_size:
            self._full.set()
        return batch

    def _drop_unstorable(self) -> None:
        self.dropped += 1
        message = "usage ledger: a record could not be stored (%d dropped so far)"
        self._warn("row", message, self.dropped, exc_info=True)

    async def _send(self, data: bytes, count: int) -> None:
        """Hand `data` (`count` records) to the writer process, starting one where there is none (or
        it ended); waits while the pipe to it is full."""
        while True:
            if self._child is None or self._child.ended:
                try:
                    self._child = await _WriterProcess.start(self)
                except Exception as exc:  # no process could be started: the records wait in the queue
                    self._warn("start", "usage ledger: cannot start the writer process: %s", exc)
                    await asyncio.sleep(RETRY_SECONDS[2])
                    continue
            await self._child.send(data, count)
            return

    async def prune(self, now: datetime | None = None) -> int:
        """Delete the requests older than the retention and the daily totals older than a year;
        how many requests went."""
        now = now or datetime.now(UTC)
        requests_before = now - timedelta(seconds=self.retention)
        days_before = now.date() - timedelta(days=DAILY_RETENTION_DAYS)
        total = 0
        while True:
            async with self.engine.begin() as connection:
                deleted = await store.prune(connection, requests_before, days_before)
            total += deleted
            if deleted < store.PRUNE_CHUNK:
                return total
            await asyncio.sleep(0)  # between chunks, the writer may take the lock

    async def _prune_every(self, seconds: float) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:  # the database is away: next time
                self._warn("prune", "usage ledger: cannot prune %s: %s", shown(self.url), self._describe(exc))
            await asyncio.sleep(seconds)

    async def _retry(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run `attempt()` until it succeeds; shutdown cancels it once it has waited long enough."""
        failures = 0
        while True:
            try:
                await attempt()
                if failures:
                    log.warning("usage ledger: %s succeeded after %d failure(s)", what, failures)
                return
            except Exception as exc:  # any database failure: the ledger must outlive it
                failures += 1
                self._warn(what, "usage ledger: cannot %s to %s: %s", what, shown(self.url), self._describe(exc))
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])

    def _describe(self, exc: BaseException) -> str:
        return described(exc, self.url)

    def _warn(self, topic: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._warned.get(topic, -WARN_EVERY) >= WARN_EVERY:
            self._warned[topic] = now
            log.warning(message, *args, exc_info=exc_info)


class _WriterProcess:
    """The writer process as the server sees it: frames go in, acknowledgements come back."""

    def __init__(
        self,
        ledger: Ledger,
        popen: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        exited: asyncio.Future[int],
    ) -> None:
        self._ledger = ledger
        self._popen = popen
        self._stdin = stdin
        self._stdout = stdout
        self._exited = exited
        self.ended = False  # its output is over and what it held is counted
        self.pid = popen.pid
        self._acks = asyncio.create_task(self._read_acks(), name="usage ledger writer process")

    @classmethod
    async def start(cls, ledger: Ledger) -> _WriterProcess:
        loop = asyncio.get_running_loop()
        command = [sys.executable, "-m", "oai2ollama.ledger.child"]
        # Started on the event loop as asyncio's own subprocesses are (a vfork and an exec).
        popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: ASYNC220
        try:
            assert popen.stdin is not None and popen.stdout is not None
            exited = _exit_status(popen, loop)
            stdout = asyncio.StreamReader(limit=ACK_LIMIT)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout)
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, popen.stdin)
            stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        except BaseException:
            popen.kill()
            popen.wait()
            raise
        # The URL with its password goes down the pipe, never on a command line others can read.
        settings = {
            "url": ledger.url.render_as_string(hide_password=False),
            "log_level": logging.getLevelName(log.getEffectiveLevel()),
            "batch_size": ledger.batch_size,
        }
        stdin.write(json.dumps(settings).encode() + b"\n")
        return cls(ledger, popen, stdin, stdout, exited)

    async def send(self, data: bytes, count: int) -> None:
        self._ledger._in_flight += count
        with contextlib.suppress(ConnectionError):  # it ended: the records are counted lost as it does
            self._stdin.write(data)
            await self._stdin.drain()

    async def finish(self) -> None:
        """End its input: it writes what it holds, says so and exits."""
        self._stdin.close()  # what is still buffered is written first
        await asyncio.shield(self._acks)

    async def kill(self) -> None:
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await self._acks

    async def _read_acks(self) -> None:
        ledger = self._ledger
        stdout = self._stdout
        try:
            while line := await stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:  # not ours (a library writing to standard output): ignored
                    continue
                if not isinstance(event, dict):
                    continue
                if "warning" in event:
                    log.warning("%s", event["warning"])
                elif "done" in event:
                    ledger._in_flight -= event["done"]
                    ledger.written += event["written"]
                    if event["dropped"]:
                        ledger.dropped += event["dropped"]
                        message = "usage ledger: a record could not be stored (%d dropped so far)\n%s"
                        ledger._warn("row", message, ledger.dropped, event.get("error", ""))
        finally:
            self._stdin.close()
            status = await self._exited
            if ledger._in_flight:
                ledger.lost += ledger._in_flight
                message = "usage ledger: the writer process ended (exit status %s) holding %d record(s)"
                log.error(message, status, ledger._in_flight)
                ledger._in_flight = 0
            self.ended = True


def _exit_status(popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> asyncio.Future[int]:
    """The process's exit status once it ends. On Linux the event loop learns of the exit from a
    pidfd, where asyncio's own subprocesses have a thread of this process wait for each child on
    Python 3.11; elsewhere a thread still waits. (That thread was first measured as slowing the
    serving thread, over one pair of processes; over fresh pairs, idle threads cost nothing
    measurable. The pidfd stays: one thread fewer, and tested both ways.)"""
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux, or before 5.3)
        return asyncio.ensure_future(asyncio.to_thread(popen.wait))
    exited: asyncio.Future[int] = loop.create_future()

    def reap() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not exited.done():
            exited.set_result(popen.wait())

    loop.add_reader(pidfd, reap)
    return exited
