"""`oai2ollama usage`: totals from the ledger the server writes, as text, JSON or CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from oai2ollama import cli
from oai2ollama.ledger import report
from oai2ollama.ledger.database import resolve_url
from oai2ollama.records import RequestRecord, Usage
from oai2ollama.translate.models import Price

from .fakes import closed_port, isolate_settings
from .test_ledger import ledger_for, record

PASSWORD = "s3cret-pg-password"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | str | None, str, str]:
    code: int | str | None = 0
    try:
        cli.main(["usage", *args])
    except SystemExit as exited:
        code = exited.code
    out, err = capsys.readouterr()
    return code, out, err


def recent(**fields: Any) -> RequestRecord:
    return record(started_at=time.time() - 3600, **fields)


@pytest.fixture
def filled(database_url: str) -> str:
    """A ledger with a few requests of the last hour, and one from long ago."""
    from oai2ollama.configuration import Source
    from oai2ollama.ledger.costs import Prices
    from oai2ollama.model_rules import ModelRule
    from oai2ollama.target import Target

    prices = Prices([Source(Target("http://127.0.0.1:1/v1", None))], [ModelRule("gpt-4o", price=Price(1.0, 2.0))])

    async def fill() -> None:
        ledger = ledger_for(database_url, prices=prices)
        await ledger.start()
        for duration in (1.0, 2.0, 3.0, 4.0):
            ledger.observe(recent(duration=duration, first_byte=duration / 10))
        ledger.observe(recent(key_name="bob", upstream_model="other", status=429, usage=Usage(input_tokens=5)))
        ledger.observe(record(started_at=time.time() - 20 * 86400))  # outside a 7-day report
        await ledger.aclose()

    asyncio.run(fill())  # the CLI runs its own event loop, so these tests have none
    return database_url


def test_totals_by_key_as_json(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--by", "key", "--json", "--database-url", filled)
    assert (code, err) == (0, "")
    data = json.loads(out)
    alice, bob = data["groups"]
    assert alice == {
        "key": "alice",
        "requests": 4,
        "errors": 0,
        "input_tokens": 400,
        "output_tokens": 80,
        "cost_usd": pytest.approx(4 * (100 * 1.0 + 20 * 2.0) / 1e6),
        "unpriced_requests": 0,
        "latency_p50_s": 2.0,
        "latency_p95_s": 4.0,
        "first_token_p50_s": 0.2,
        "first_token_p95_s": 0.4,
    }
    assert (bob["key"], bob["requests"], bob["errors"], bob["cost_usd"], bob["unpriced_requests"]) == (
        "bob",
        1,
        1,
        None,
        1,
    )
    assert data["total"]["requests"] == 5 and data["source"] == "requests"


def test_text_and_csv_from_the_environment_setting(
    filled: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAI2OLLAMA_DATABASE_URL", filled)
    code, out, _ = run(capsys, "--since", "30d", "--by", "model")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("usage since ") and "from requests" in lines[0]
    assert lines[1].split()[:3] == ["model", "requests", "errors"]
    assert [line.split()[0] for line in lines[2:5]] == ["gpt-4o", "other", "total"]
    assert lines[4].split()[1:3] == ["6", "1"]  # the old one is within 30 days
    assert "1 request(s) have no known price" in out
    code, out, _ = run(capsys, "--csv", "--by", "day")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["day"] for row in rows][-1] == "total" and rows[-1]["requests"] == "5"


def test_a_period_past_the_rows_kept_reads_the_daily_totals(filled: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--since", "60d", "--usage-retention", "10d", "--json", "--database-url", filled)
    data = json.loads(out)
    assert code == 0 and data["source"] == "daily totals"
    assert data["total"]["requests"] == 6 and data["total"]["latency_p50_s"] is None


def test_the_server_stays_the_default_command(capsys: pytest.CaptureFixture[str]) -> None:
    settings = cli.load_settings(["--base-url", "http://up/v1", "--database-url", "none"])
    assert settings.base_url == "http://up/v1"
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "oai2ollama usage" in out and "--since" in out and "--by" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "soon"], "since: invalid duration"),
        (["--by", "colour"], "by"),
        (["--json", "--csv"], "--json or --csv"),
        (["--database-url", "none"], "the usage ledger is off"),
        ([f"--database-url=mysql://u:{PASSWORD}@h/d"], "unsupported database"),
        ([f"--database-url=postgresql://u:{PASSWORD}@127.0.0.1:{closed_port()}/d"], "cannot read the usage ledger"),
    ],
)
def test_problems_are_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert words in err and PASSWORD not in err


def test_percentiles_are_measured_values() -> None:
    assert report.percentile([], 50) is None
    assert report.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert report.percentile([float(n) for n in range(1, 101)], 95) == 95.0
    assert resolve_url("none") is None
