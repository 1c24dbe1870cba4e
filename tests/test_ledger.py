"""The usage ledger on real databases: a SQLite file and a PostgreSQL server, through the same cases."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from genai_prices import data_snapshot

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.configuration import Source
from oai2ollama.ledger import Ledger, tables
from oai2ollama.ledger.costs import Prices
from oai2ollama.ledger.database import current_revision, migrate, open_engine, resolve_url
from oai2ollama.ledger.frames import HEADER, frame, record_of, wire_record
from oai2ollama.ledger.rows import row_of
from oai2ollama.model_rules import ModelRule
from oai2ollama.records import RequestRecord, Usage
from oai2ollama.target import Target
from oai2ollama.translate.models import Price
from oai2ollama.upstream import Upstreams

from .fakes import FakeUpstream, closed_port, text_stream
from .polling import until

pytestmark = pytest.mark.anyio

T0 = 1_780_000_000.0  # 2026-05-28, a fixed instant: rows compare exactly


def record(**fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "started_at": T0,
        "method": "POST",
        "path": "/api/chat",
        "dialect": "ollama",
        "status": 200,
        "duration": 1.25,
        "first_byte": 0.125,
        "model": "gpt-4o:latest",
        "upstream": "default",
        "upstream_model": "gpt-4o",
        "key_name": "alice",
        "client": "ollama-python/0.6.3",
        "streamed": True,
        "usage": Usage(input_tokens=100, output_tokens=20, reasoning_tokens=5, cached_tokens=40),
    }
    values.update(fields)
    return RequestRecord(**values)


async def rows_in(url: str, query: str | sa.Executable | None = None) -> list[dict[str, Any]]:
    """Rows as the ledger's tables type them (datetimes, not SQLite's text), or of a raw query."""
    if query is None:
        query = sa.select(tables.requests).order_by(tables.requests.c.id)
    resolved = resolve_url(url)
    assert resolved is not None
    engine = open_engine(resolved)
    try:
        async with engine.connect() as connection:
            return [
                dict(row._mapping)
                for row in await connection.execute(sa.text(query) if isinstance(query, str) else query)
            ]
    finally:
        await engine.dispose()


def ledger_for(url: str, **options: Any) -> Ledger:
    """A ledger that prunes only when told: these records are from a fixed past day."""
    resolved = resolve_url(url)
    assert resolved is not None
    return Ledger(resolved, **({"prune_every": None} | options))


async def test_every_field_of_a_record_is_stored(database_url: str) -> None:
    ledger = ledger_for(database_url)
    await ledger.start()
    ledger.observe(record())
    ledger.observe(
        record(
            path="/v1/messages",
            dialect="anthropic",
            status=502,
            error_kind="upstream_unreachable",
            key_name=None,
            first_byte=None,
            streamed=False,
            usage=Usage(input_tokens=12, estimated=True),
        )
    )
    await ledger.aclose()
    assert (ledger.written, ledger.dropped, ledger.lost) == (2, 0, 0)

    first, second = await rows_in(database_url)
    at = first.pop("at")
    assert bool(first.pop("tokens_estimated")) is False  # SQLite answers 0/1
    assert at.replace(tzinfo=at.tzinfo or UTC) == datetime.fromtimestamp(T0, UTC)
    assert first == {
        "id": first["id"],
        "key_name": "alice",
        "client": "ollama-python/0.6.3",
        "method": "POST",
        "route": "/api/chat",
        "dialect": "ollama",
        "model": "gpt-4o:latest",
        "upstream": "default",
        "upstream_model": "gpt-4o",
        "status": 200,
        "error_kind": None,
        "input_tokens": 100,
        "output_tokens": 20,
        "reasoning_tokens": 5,
        "cached_tokens": 40,
        "first_byte": 0.125,
        "duration": 1.25,
        "streamed": True,
        "cost_usd": None,  # no price known for it here (see test_costs_and_daily_totals)
    }
    assert (second["route"], second["status"], second["error_kind"]) == ("/v1/messages", 502, "upstream_unreachable")
    assert (second["input_tokens"], second["output_tokens"], bool(second["tokens_estimated"])) == (12, None, True)
    assert (second["key_name"], second["first_byte"], bool(second["streamed"])) == (None, None, False)


async def test_shutdown_writes_everything_queued_in_batches(database_url: str) -> None:
    ledger = ledger_for(database_url, batch_size=100)
    await ledger.start()
    for number in range(1234):
        ledger.observe(record(started_at=T0 + number, status=200 + number % 2))
    await ledger.aclose()
    assert (ledger.written, ledger.dropped, ledger.lost, ledger.queue_depth()) == (1234, 0, 0, 0)
    (count,) = await rows_in(database_url, "SELECT count(*) AS n, sum(status) AS s FROM requests")
    assert count == {"n": 1234, "s": 1234 * 200 + 617}


async def test_a_full_queue_drops_and_counts_and_warns_once(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Not started: nothing takes records out, as when the database is away.
    ledger = ledger_for(f"sqlite:///{tmp_path / 'x.db'}", queue_size=3)
    with caplog.at_level(logging.WARNING, logger="oai2ollama.ledger"):
        for _ in range(10):
            ledger.observe(record())
    assert (ledger.queue_depth(), ledger.dropped) == (3, 7)
    warnings = [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
    assert warnings == ["usage ledger queue is full: 1 record(s) dropped so far"]
    await ledger.start()
    await ledger.aclose()
    assert (ledger.written, ledger.queue_depth()) == (3, 0)


async def test_an_unreachable_database_never_blocks_and_never_shows_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://ledger:pa55-w0rd-secret@127.0.0.1:{closed_port()}/usage"
    ledger = ledger_for(url)
    with caplog.at_level(logging.WARNING, logger="oai2ollama.ledger"):
        await ledger.start()
        for _ in range(5):
            ledger.observe(record())  # returns at once: it only enqueues
        assert ledger.queue_depth() == 5
        await ledger.aclose(give_up_after=0.3)
    assert (ledger.written, ledger.lost) == (0, 5)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot migrate" in logged and "could not be written" in logged
    assert "pa55-w0rd-secret" not in logged and "***" in logged


def test_client_sent_text_is_cut_to_the_columns() -> None:
    row = row_of(record(path="/api/" + "x" * 500, model="m" * 300, client="c" * 300, error_kind="e" * 100))
    assert len(row["route"]) == len(row["model"]) == len(row["client"]) == 200
    assert len(row["error_kind"]) == 64


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"model": 42}, id="not-a-row"),  # not text: what a bug upstream of the ledger could hand it
        pytest.param({"client": lambda: None}, id="not-sendable"),  # nothing pickle can send to the writer process
    ],
)
async def test_a_record_that_cannot_be_stored_is_dropped_alone_and_the_writer_goes_on(
    database_url: str, bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ledger = ledger_for(database_url)
    await ledger.start()
    ledger.observe(record(started_at=T0))
    ledger.observe(record(started_at=T0 + 1, **bad))
    ledger.observe(record(started_at=T0 + 2))
    await until(lambda: ledger.written == 2, 10)
    ledger.observe(record(started_at=T0 + 3))  # the writer is still there
    await ledger.aclose()
    assert (ledger.written, ledger.dropped, ledger.lost, ledger.queue_depth()) == (3, 1, 0, 0)
    assert len(await rows_in(database_url)) == 3
    assert "could not be stored (1 dropped so far)" in caplog.text


async def test_a_model_sent_as_a_number_is_stored_as_its_json_text(
    database_url: str, fake: FakeUpstream, upstreams: Upstreams, settings: Settings
) -> None:
    ledger = ledger_for(database_url)
    app = create_app(settings, upstreams=upstreams, observers=[ledger.observe])
    await ledger.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost:11434") as http:
        for model in (42, {"name": "x"}):  # /api/show notes the model as the body gives it, then refuses it
            assert (await http.post("/api/show", json={"model": model})).status_code == 400
    await ledger.aclose()
    assert [row["model"] for row in await rows_in(database_url)] == ["42", '{"name": "x"}']


async def test_migrations_run_once_and_leave_a_version(database_url: str) -> None:
    resolved = resolve_url(database_url)
    assert resolved is not None
    engine = open_engine(resolved)
    try:
        await migrate(engine)
        await migrate(engine)  # a second start finds it done
    finally:
        await engine.dispose()
    (version,) = await rows_in(database_url, "SELECT version_num FROM alembic_version")
    assert version["version_num"]


async def test_requests_through_the_app_land_in_the_ledger(
    database_url: str, fake: FakeUpstream, upstreams: Upstreams, settings: Settings
) -> None:
    ledger = ledger_for(database_url)
    seen: list[RequestRecord] = []
    app = create_app(settings, upstreams=upstreams, observers=[seen.append, ledger.observe])
    fake.on("POST", "/chat/completions", text_stream("Hi", " there"))
    await ledger.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost:11434") as http:
        chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
        assert (await http.post("/api/chat", json=chat, headers={"user-agent": "probe/2"})).status_code == 200
        assert (await http.post("/v1/embeddings", content=b"{not json")).status_code == 400
    await ledger.aclose()

    stored = await rows_in(database_url)
    assert [(r["route"], r["status"], r["model"], r["upstream"], r["dialect"]) for r in stored] == [
        ("/api/chat", 200, "gpt-test", "default", "ollama"),
        ("/v1/embeddings", 400, None, None, "openai"),
    ]
    assert (stored[0]["client"], stored[0]["upstream_model"]) == ("probe/2", "gpt-test")
    # The routes' own notes: the fake upstream's usage chunk (11 in, 7 out), a streamed answer.
    assert (stored[0]["input_tokens"], stored[0]["output_tokens"], bool(stored[0]["streamed"])) == (11, 7, True)
    assert bool(stored[0]["tokens_estimated"]) is False and stored[0]["error_kind"] is None
    assert stored[1]["error_kind"] is not None
    # Whatever the routes note (tokens, streamed, error kind) is stored as the record had it.
    for row, record in zip(stored, seen, strict=True):
        expected = row_of(record)
        assert {k: row[k] for k in expected if k != "at"} == {
            **{k: v for k, v in expected.items() if k != "at"},
            "tokens_estimated": row["tokens_estimated"],
        }
        assert bool(row["tokens_estimated"]) is expected["tokens_estimated"]


async def test_two_processes_starting_at_once_share_one_database(database_url: str) -> None:
    first, second = ledger_for(database_url), ledger_for(database_url)
    await first.start()
    await second.start()
    for number in range(50):
        (first if number % 2 else second).observe(record(started_at=T0 + number))
    await first.aclose()
    await second.aclose()
    assert first.written == second.written == 25
    (count,) = await rows_in(database_url, "SELECT count(*) AS n FROM requests")
    assert count["n"] == 50


def daily_query() -> sa.Executable:
    daily = tables.usage_daily
    return sa.select(daily).order_by(daily.c.day, daily.c.upstream, daily.c.model, daily.c.key_name)


async def test_costs_and_daily_totals(database_url: str) -> None:
    prices = Prices(
        [Source(Target("https://api.openai.com/v1", None)), Source(Target("http://127.0.0.1:1/v1", None, "local"))],
        [ModelRule("tiny", price=Price(input=1.0, output=4.0))],
    )
    ledger = ledger_for(database_url, prices=prices, batch_size=2)
    await ledger.start()
    day2 = T0 + 86400
    ledger.observe(record())  # priced by the table
    ledger.observe(record(status=500, error_kind="upstream_error", usage=None, streamed=False))
    ledger.observe(record(started_at=T0 + 5, first_byte=0.375))  # a second batch adds to the same day
    ledger.observe(record(started_at=day2, upstream="local", upstream_model="tiny", key_name=None))  # configured
    ledger.observe(record(started_at=day2, upstream="local", upstream_model="other"))  # no price
    await ledger.aclose()

    costs = [row["cost_usd"] for row in await rows_in(database_url)]
    assert costs[1] is None and costs[4] is None
    assert costs[0] == costs[2] == pytest.approx((60 * 2.5 + 40 * 1.25 + 20 * 10) / 1e6)
    assert costs[3] == pytest.approx((100 * 1.0 + 20 * 4.0) / 1e6)

    first, second, third = await rows_in(database_url, daily_query())
    assert str(first["day"]) == "2026-05-28" and str(third["day"]) == "2026-05-29"
    assert (first["upstream"], first["model"], first["key_name"]) == ("default", "gpt-4o", "alice")
    assert {k: first[k] for k in ("requests", "errors", "priced", "duration_count", "first_token_count")} == {
        "requests": 3,
        "errors": 1,
        "priced": 2,
        "duration_count": 3,
        "first_token_count": 2,
    }
    assert (first["input_tokens"], first["output_tokens"], first["reasoning_tokens"], first["cached_tokens"]) == (
        200,
        40,
        10,
        80,
    )
    assert first["cost_usd"] == pytest.approx(costs[0] * 2)
    assert first["duration_sum"] == pytest.approx(3.75) and first["first_token_sum"] == pytest.approx(0.5)
    assert (second["model"], second["key_name"], second["priced"], second["cost_usd"]) == ("other", "alice", 0, 0)
    assert (third["model"], third["key_name"], third["cost_usd"]) == ("tiny", "", pytest.approx(costs[3]))


async def test_pruning_keeps_the_retention_and_a_year_of_daily_totals(database_url: str) -> None:
    ledger = ledger_for(database_url, retention=10 * 86400.0)
    await ledger.start()
    now = datetime.fromtimestamp(T0, UTC)
    for days_ago in (400, 40, 11, 9, 0):
        ledger.observe(record(started_at=T0 - days_ago * 86400))
    await ledger.aclose()
    await ledger.start()
    assert await ledger.prune(now) == 3
    await ledger.aclose()
    kept = [row["at"].replace(tzinfo=UTC) for row in await rows_in(database_url)]
    assert [round((now - at).total_seconds() / 86400) for at in kept] == [9, 0]
    days = [str(row["day"]) for row in await rows_in(database_url, daily_query())]
    assert len(days) == 4 and "2025-04-23" not in days  # the 400-day-old total went, the 40-day-old stays


async def test_a_database_of_the_first_version_upgrades_keeping_its_rows(database_url: str) -> None:
    resolved = resolve_url(database_url)
    assert resolved is not None
    engine = open_engine(resolved)
    try:
        await migrate(engine, "0001")
        old = [row_of(record(started_at=T0 + n, status=200 if n else 502)) for n in range(3)]
        for row in old:
            row.pop("cost_usd")  # no such column yet
        async with engine.begin() as connection:
            assert await current_revision(connection) == "0001"
            columns = ", ".join(old[0])
            values = ", ".join(f":{name}" for name in old[0])
            await connection.execute(sa.text(f"INSERT INTO requests ({columns}) VALUES ({values})"), old)
    finally:
        await engine.dispose()

    ledger = ledger_for(database_url)  # a newer server starts on it
    await ledger.start()
    ledger.observe(record(started_at=T0 + 10))
    await ledger.aclose()

    rows = await rows_in(database_url)
    assert [row["status"] for row in rows] == [502, 200, 200, 200]
    assert [row["cost_usd"] for row in rows] == [None] * 4
    assert rows[0]["input_tokens"] == 100 and rows[0]["client"] == "ollama-python/0.6.3"
    (daily,) = await rows_in(database_url, daily_query())
    assert (daily["requests"], daily["errors"], daily["input_tokens"], daily["first_token_count"]) == (4, 1, 400, 4)
    (version,) = await rows_in(database_url, "SELECT version_num FROM alembic_version")
    assert version["version_num"] == newest_revision()


def newest_revision() -> str:
    from alembic.script import ScriptDirectory

    from oai2ollama.ledger.database import _alembic_config

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def test_the_background_pruner_runs_at_start(database_url: str) -> None:
    ledger = ledger_for(database_url)
    await ledger.start()
    ledger.observe(record())  # long past the 30 days kept
    await ledger.aclose()
    ledger = ledger_for(database_url, prune_every=3600.0)
    await ledger.start()
    for _ in range(500):  # the first pruning follows the migration at once
        if not await rows_in(database_url):
            break
        await asyncio.sleep(0.02)
    await ledger.aclose()
    assert await rows_in(database_url) == []


def test_the_app_owns_a_ledger_unless_told_none_and_shows_its_queue(tmp_path: Any) -> None:
    def app_with(url: str) -> Any:
        return create_app(Settings(_env_file=None, base_url="http://up/v1", database_url=url))  # type: ignore[call-arg]

    app = app_with(f"sqlite:///{tmp_path / 'u.db'}")
    ledger: Ledger = app.state.ledger
    ledger.observe(record())
    body, _ = app.state.metrics.exposition()
    assert b"oai2ollama_ledger_queue_depth 1.0" in body
    assert app_with("none").state.ledger is None


async def test_the_price_table_is_read_as_the_ledger_starts(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not when the first record is priced, which would stall the event loop under the first
    requests; and so before start-up takes what it made out of the collector's sight."""
    reads: list[object] = []
    read = data_snapshot.get_snapshot
    monkeypatch.setattr(data_snapshot, "get_snapshot", lambda: reads.append(read()) or reads[-1])
    ledger = ledger_for(f"sqlite:///{tmp_path / 'u.db'}")
    await ledger.start()
    try:
        assert len(reads) == 1  # and no record yet
    finally:
        await ledger.aclose()


async def test_the_migrations_build_the_schema_the_code_uses(database_url: str) -> None:
    """`tables.py` (what the code queries) and the migrations (what databases get) never drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from oai2ollama.ledger import tables

    resolved = resolve_url(database_url)
    assert resolved is not None
    engine = open_engine(resolved)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), tables.metadata)
            )
    finally:
        await engine.dispose()
    assert [change for change in differences if change[0] != "remove_table"] == []


@pytest.mark.parametrize(
    "usage",
    [None, Usage(), Usage(input_tokens=3, output_tokens=4, reasoning_tokens=1, cached_tokens=2, estimated=True)],
)
def test_a_record_reaches_the_writer_process_as_it_was(usage: Usage | None) -> None:
    sent = record(usage=usage, error_kind="mid_stream", upstream_duration=0.5, first_byte=None)
    data = frame([wire_record(sent, 0.25)])
    (wire,) = pickle.loads(data[HEADER.size :])
    assert HEADER.unpack(data[: HEADER.size]) == (len(data) - HEADER.size,)
    assert record_of(wire) == (sent, 0.25)


def _command_line(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
async def test_rows_are_written_by_a_process_of_their_own_that_outlives_signals_and_is_replaced(
    database_url: str, pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its exit is learned from a pidfd where the system has them, else by a thread that waits."""
    if pidfd and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd here")
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    ledger = ledger_for(database_url, batch_seconds=0.05)
    await ledger.start()
    ledger.observe(record(started_at=T0))
    await until(lambda: ledger.written == 1, 20)
    pid = ledger.writer_pid
    assert pid is not None and pid != os.getpid()
    # Not asyncio's way on Python 3.11, a thread of the server's waiting for each child (see
    # writer._exit_status).
    waiting = [thread.name for thread in threading.enumerate() if thread.name.startswith("asyncio-waitpid")]
    # Its database URL (a password, perhaps) went down the pipe, not onto a command line.
    assert "oai2ollama.ledger.child" in _command_line(pid) and "sqlite" not in _command_line(pid)
    # Ctrl-C in a terminal reaches the whole process group; the server's shutdown ends the writer.
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    ledger.observe(record(started_at=T0 + 1))
    await until(lambda: ledger.written == 2, 20)
    assert ledger.writer_pid == pid
    # A writer that dies (killed here) loses at most what it held; the next batch gets a new one.
    os.kill(pid, signal.SIGKILL)
    await until(lambda: ledger.writer_pid is None, 20)
    ledger.observe(record(started_at=T0 + 2))
    await ledger.aclose()
    assert (ledger.written, ledger.lost, ledger.dropped) == (3, 0, 0)
    assert len(await rows_in(database_url)) == 3
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert waiting == []


async def test_a_sqlite_engine_waits_for_the_write_lock_as_long_as_asked(tmp_path: Any) -> None:
    resolved = resolve_url(f"sqlite:///{tmp_path / 'x.db'}")
    assert resolved is not None
    for busy_ms, expected in ((None, 5000), (60_000, 60_000)):  # the server's default; the writer process's
        engine = open_engine(resolved) if busy_ms is None else open_engine(resolved, busy_ms=busy_ms)
        try:
            async with engine.connect() as connection:
                assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() == expected
        finally:
            await engine.dispose()
