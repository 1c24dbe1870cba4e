"""The usage ledger on real databases: a SQLite file and a PostgreSQL server, through the same cases."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.ledger import Ledger, tables
from oai2ollama.ledger.database import migrate, open_engine, resolve_url
from oai2ollama.ledger.rows import row_of
from oai2ollama.records import RequestRecord, Usage
from oai2ollama.upstream import Upstreams

from .fakes import FakeUpstream, closed_port, text_stream

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
    resolved = resolve_url(url)
    assert resolved is not None
    return Ledger(resolved, **options)


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
