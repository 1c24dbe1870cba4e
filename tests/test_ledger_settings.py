"""`--database-url` and `--usage-retention`: what each value means, and a password never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from oai2ollama import cli
from oai2ollama.config import Settings, parse_duration
from oai2ollama.ledger.database import default_path, resolve_url, shown

from .fakes import isolate_settings

PASSWORD = "hunter2-very-secret"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_settings(monkeypatch, tmp_path)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("sqlite:///usage.db", "sqlite+aiosqlite:///usage.db"),
        ("sqlite:////data/oai2ollama.db", "sqlite+aiosqlite:////data/oai2ollama.db"),
        ("postgresql://u@db:5432/usage", "postgresql+asyncpg://u@db:5432/usage"),
        ("postgres://u@db/usage", "postgresql+asyncpg://u@db/usage"),
        ("postgresql+asyncpg://u@db/usage", "postgresql+asyncpg://u@db/usage"),
        (" NONE ", None),
        ("none", None),
    ],
)
def test_urls_map_to_the_async_drivers(setting: str, expected: str | None) -> None:
    url = resolve_url(setting)
    assert (url.render_as_string() if url else None) == expected


def test_unset_means_sqlite_in_the_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    url = resolve_url(None)
    assert url is not None and url.database == str(tmp_path / "oai2ollama" / "oai2ollama.db")
    assert default_path({"XDG_DATA_HOME": "relative/ignored"}) == Path.home() / ".local/share/oai2ollama/oai2ollama.db"


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        (f"mysql://root:{PASSWORD}@db/usage", "unsupported database 'mysql'"),
        (f"not a url {PASSWORD}", "not a database URL"),
        ("sqlite://", "needs a file"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_a_bad_url_is_named_without_its_password(setting: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        resolve_url(setting)
    assert PASSWORD not in str(caught.value)


def test_shown_masks_the_password() -> None:
    url = resolve_url(f"postgresql://ledger:{PASSWORD}@db/usage")
    assert url is not None and shown(url) == "postgresql+asyncpg://ledger:***@db/usage"


def test_the_setting_is_a_secret_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://ledger:{PASSWORD}@db/usage"
    settings = cli.load_settings(["--base-url", "http://up/v1", "--database-url", url])
    assert settings.database_url is not None and settings.database_url.get_secret_value() == url
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()
    monkeypatch.setenv("OAI2OLLAMA_DATABASE_URL", "none")
    assert cli.load_settings(["--base-url", "http://up/v1"]).database_url.get_secret_value() == "none"  # type: ignore[union-attr]


def test_a_bad_url_stops_the_cli_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--base-url", "http://up/v1", "--database-url", f"mysql://root:{PASSWORD}@db/x"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert "database-url" in err and "unsupported database" in err and PASSWORD not in err


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400), ("7", 7 * 86400)],
)
def test_durations(value: str, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_retention_defaults_to_30_days_and_takes_units() -> None:
    assert Settings(_env_file=None).usage_retention == 30 * 86400  # type: ignore[call-arg]
    assert Settings(_env_file=None, usage_retention="12h").usage_retention == 43200  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="invalid duration"):
        Settings(_env_file=None, usage_retention="forever")  # type: ignore[call-arg]


@pytest.mark.parametrize("mode", ["disable", "require", "verify-full"])
def test_libpq_sslmode_becomes_asyncpg_ssl(mode: str) -> None:
    url = resolve_url(f"postgresql://ledger:{PASSWORD}@db.example/usage?sslmode={mode}&application_name=o2o")
    assert url is not None
    assert dict(url.query) == {"ssl": mode, "application_name": "o2o"}


def test_an_unknown_sslmode_is_named_without_the_url() -> None:
    with pytest.raises(ValueError, match="sslmode must be one of") as raised:
        resolve_url(f"postgresql://ledger:{PASSWORD}@db/usage?sslmode=sometimes")
    assert PASSWORD not in str(raised.value)


@pytest.mark.anyio
async def test_sslmode_disable_connects_to_a_real_server(postgres_server: Any) -> None:
    from oai2ollama.ledger.database import open_engine

    url = resolve_url(postgres_server.new_database() + "?sslmode=disable")
    assert url is not None
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
