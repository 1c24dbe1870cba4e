"""The admin page's pages with data: overview, models and their edits (on every process), usage
with its filters, paging and CSV export; and the pure pieces (charts, keyring, failed logins)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from oai2ollama.admin import auth, charts, queries
from oai2ollama.admin.views import safe_url
from oai2ollama.ledger import store, tables
from oai2ollama.ledger.rows import daily_totals

from .admin_client import admin_settings, post, running, sign_in
from .fakes import FakeUpstream, text_stream
from .ledger_fill import row
from .polling import until

pytestmark = pytest.mark.anyio


async def test_every_page_renders_with_a_request_just_made(database_url: str) -> None:
    fake = FakeUpstream()
    fake.on("POST", "/chat/completions", text_stream("Hi", " there"))
    async with running(admin_settings(database_url), fake) as (app, client):
        await sign_in(client)
        chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
        assert (await client.post("/api/chat", json=chat, headers={"user-agent": "probe/9"})).status_code == 200
        await until(lambda: app.state.ledger.written >= 1, 10)
        app.state.admin._cached.clear()
        overview = (await client.get("/admin")).text
        assert re.search(r'id="window-hour" data-requests="1" data-errors="0"', overview)
        assert 'id="chart-hourly"' in overview and "<svg" in overview and 'data-upstream="default"' in overview
        usage = (await client.get("/admin/usage")).text
        assert "probe/9" in usage and "/api/chat" in usage and "gpt-test" in usage
        assert "11 / 7" in usage  # the fake upstream's usage: 11 tokens in, 7 out
        models = (await client.get("/admin/models")).text
        assert 'data-name="gpt-test:latest"' in models and 'data-model="default/text-embedding-test"' in models
        settings = (await client.get("/admin/settings")).text
        assert "--base-url" in settings and "upstream.test" in settings
        exported = (await client.get("/admin/usage.csv")).text
        assert exported.splitlines()[0].startswith("at,key_name,client") and "probe/9" in exported
        # The admin page's own requests are not recorded as usage.
        assert all("/admin" not in line for line in exported.splitlines())


async def _edit(client: httpx.AsyncClient, model: str, **fields: str | list[str]) -> httpx.Response:
    page = f"/admin/models/edit?model={model}"
    form = (await client.get(page)).text
    data: dict[str, str | list[str]] = {
        "model": model,
        "alias": re.search(r'id="alias" name="alias" value="([^"]*)"', form).group(1),  # type: ignore[union-attr]
        "context_length": re.search(r'name="context_length" value="([^"]*)"', form).group(1),  # type: ignore[union-attr]
        "options": "{}",
        "capabilities": re.findall(r'name="capabilities" value="(\w+)" checked', form),
    }
    data.update(fields)
    return await post(client, "/admin/models/edit", data, page=page)


async def test_model_edits_apply_to_tags_and_show_and_reset(tmp_path: Path) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text('[models."gpt-test"]\noptions = { temperature = 0.2 }\ncontext_length = 8192\n')
    settings = admin_settings(f"sqlite:///{tmp_path / 'a.db'}", config=config)
    async with running(settings) as (_, client):
        await sign_in(client)
        models = (await client.get("/admin/models")).text
        assert "8,192" in models and "origin-config" in models
        saved = await _edit(
            client, "default/gpt-test", alias="house-model", context_length="32k",
            options='{"temperature": 0.7, "top_p": 0.9}', capabilities=["tools", "vision"],
        )  # fmt: skip
        assert saved.status_code == 303, saved.text
        tags = (await client.get("/api/tags")).json()["models"]
        assert "house-model:latest" in [m["name"] for m in tags]
        shown = (await client.post("/api/show", json={"model": "house-model"})).json()
        assert shown["capabilities"] == ["completion", "tools", "vision"]
        assert "temperature                    0.7" in shown["parameters"] or "0.7" in shown["parameters"]
        assert shown["model_info"]["general.architecture"] and any(
            value == 32000 for key, value in shown["model_info"].items() if key.endswith(".context_length")
        )
        page = (await client.get("/admin/models")).text
        assert 'data-model="default/gpt-test" data-name="house-model:latest" data-edited="true"' in page
        assert "origin-page" in page
        hidden = await _edit(client, "default/gpt-test", alias="house-model", hidden="on", context_length="32k")
        assert hidden.status_code == 303
        assert "house-model:latest" not in [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
        reset = await post(client, "/admin/models/reset", {"model": "default/gpt-test"}, page="/admin/models")
        assert reset.status_code == 303
        names = [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
        assert "gpt-test:latest" in names and "house-model:latest" not in names
        shown = (await client.post("/api/show", json={"model": "gpt-test"})).json()
        assert "0.2" in shown["parameters"]  # the config file's options again


async def test_an_alias_the_page_cleared_or_replaced_no_longer_names_the_model(tmp_path: Path) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text('[models."gpt-test"]\nalias = "house"\n')
    settings = admin_settings(f"sqlite:///{tmp_path / 'a.db'}", config=config)
    async with running(settings) as (_, client):
        await sign_in(client)
        assert (await client.post("/api/show", json={"model": "house"})).status_code == 200
        for alias, gone in (("", "house"), ("villa", "house"), ("", "villa")):
            assert (await _edit(client, "default/gpt-test", alias=alias)).status_code == 303
            names = [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
            assert f"{gone}:latest" not in names, names
            # Nor may the config file's alias, which names the model when it is not in the listing.
            shown = await client.post("/api/show", json={"model": gone})
            assert shown.status_code == 404, (alias, shown.text)
        assert (await client.post("/api/show", json={"model": "gpt-test"})).status_code == 200


async def test_api_ps_shows_a_model_in_use_as_edited_since(database_url: str) -> None:
    fake = FakeUpstream()
    fake.on("POST", "/chat/completions", text_stream("Hi"))
    async with running(admin_settings(database_url), fake) as (_, client):
        await sign_in(client)
        chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}], "stream": False}
        assert (await client.post("/api/chat", json=chat)).status_code == 200
        assert [m["name"] for m in (await client.get("/api/ps")).json()["models"]] == ["gpt-test:latest"]
        assert (await _edit(client, "default/gpt-test", alias="house-model")).status_code == 303
        assert [m["name"] for m in (await client.get("/api/ps")).json()["models"]] == ["house-model:latest"]


async def test_a_bad_edit_is_refused_naming_the_field(tmp_path: Path) -> None:
    async with running(admin_settings(f"sqlite:///{tmp_path / 'a.db'}")) as (_, client):
        await sign_in(client)
        for fields, words in (
            ({"options": "{not json"}, "options: not JSON"),
            ({"options": '{"temperature": "hot"}'}, "temperature"),
            ({"context_length": "lots"}, "context length"),
            ({"alias": "text-embedding-test"}, "already the name"),
            ({"alias": "two words"}, "spaces"),
        ):
            answer = await _edit(client, "default/gpt-test", **fields)
            assert answer.status_code == 400, fields
            assert words in answer.text, (fields, answer.text[-2000:])
        assert "gpt-test:latest" in [m["name"] for m in (await client.get("/api/tags")).json()["models"]]


async def test_an_edit_on_one_process_is_seen_by_another_within_two_seconds(database_url: str) -> None:
    settings = admin_settings(database_url)
    async with running(settings) as (_, first), running(settings) as (second_app, second):
        await second.get("/api/tags")
        await sign_in(first)
        assert (await _edit(first, "default/gpt-test", alias="shared-name")).status_code == 303
        catalog = second_app.state.catalog
        await until(lambda: catalog.listed_card("shared-name") is not None, 2)
        assert "shared-name:latest" in [m["name"] for m in (await second.get("/api/tags")).json()["models"]]


async def test_refresh_from_upstreams_refreshes_every_process(database_url: str) -> None:
    settings = admin_settings(database_url)
    fake = FakeUpstream()
    async with running(settings, fake) as (_, first), running(settings, fake) as (second_app, second):
        await first.get("/api/tags")
        await second.get("/api/tags")
        fake.models.append({"id": "gpt-new", "object": "model", "owned_by": "test"})
        assert "gpt-new:latest" not in [m["name"] for m in (await second.get("/api/tags")).json()["models"]]
        await sign_in(first)
        assert (await post(first, "/admin/models/refresh", {}, page="/admin/models")).status_code == 303
        assert "gpt-new:latest" in [m["name"] for m in (await first.get("/api/tags")).json()["models"]]
        await until(lambda: second_app.state.catalog.listed_card("gpt-new") is not None, 3)


async def _fill(engine: object, rows: list[dict[str, object]]) -> None:
    async with engine.begin() as connection:  # type: ignore[attr-defined]
        await connection.execute(tables.requests.insert(), rows)
        await store.add_daily(connection, daily_totals(rows))


async def test_usage_filters_pages_and_exports(database_url: str) -> None:
    import random

    rng = random.Random(3)
    now = datetime.now(UTC)
    rows = [row(now - timedelta(minutes=130 - index, seconds=30), rng) for index in range(130)]
    async with running(admin_settings(database_url)) as (app, client):
        await _fill(app.state.ledger.engine, rows)
        await sign_in(client)
        seen: list[str] = []
        page = (await client.get("/admin/usage")).text
        while True:
            ids = re.findall(r'<tr data-id="(\d+)"', page)
            seen += ids
            older = re.search(r'id="page-older" rel="next" href="([^"]+)"', page)
            if older is None:
                break
            page = (await client.get("/admin/usage" + older.group(1).replace("&amp;", "&"))).text
        assert len(seen) == 130 and len(set(seen)) == 130
        assert [int(i) for i in seen] == sorted((int(i) for i in seen), reverse=True)
        newer = re.search(r'id="page-newer" rel="prev" href="([^"]+)"', page)
        assert newer is not None
        back = (await client.get("/admin/usage" + newer.group(1).replace("&amp;", "&"))).text
        assert re.findall(r'<tr data-id="(\d+)"', back) == seen[50:100]

        model = rows[0]["model"]
        wanted = [r for r in rows if r["model"] == model and (r["status"] >= 400)]
        filtered = (await client.get("/admin/usage", params={"model": model, "status": "error"})).text
        assert len(re.findall(r"<tr data-id=", filtered)) == len(wanted) > 0
        assert "selected>error<" in filtered
        exported = await client.get("/admin/usage.csv", params={"model": model, "status": "error"})
        assert exported.headers["content-type"].startswith("text/csv")
        assert "attachment" in exported.headers["content-disposition"]
        lines = list(csv.DictReader(io.StringIO(exported.text)))
        assert len(lines) == len(wanted) and {line["model"] for line in lines} == {model}

        since = (now - timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M")
        recent = list(csv.DictReader(io.StringIO((await client.get("/admin/usage.csv", params={"since": since})).text)))
        cut = now.replace(second=0, microsecond=0) - timedelta(minutes=60)
        assert len(recent) == sum(1 for r in rows if r["at"] >= cut)
        keyless = (await client.get("/admin/usage", params={"key": "-"})).text
        assert len(re.findall(r"<tr data-id=", keyless)) == min(50, sum(1 for r in rows if r["key_name"] is None))
        app.state.admin._cached.clear()
        overview = (await client.get("/admin")).text
        hour = [r for r in rows if r["at"] >= now - timedelta(hours=1)]
        assert f'id="window-day" data-requests="{len(rows)}"' in overview
        assert f'id="window-hour" data-requests="{len(hour)}"' in overview


async def test_a_spreadsheet_formula_in_the_log_is_exported_as_text(tmp_path: Path) -> None:
    import random

    entry = row(datetime.now(UTC), random.Random(1)) | {"client": "=HYPERLINK(1)"}
    async with running(admin_settings(f"sqlite:///{tmp_path / 'a.db'}")) as (app, client):
        await _fill(app.state.ledger.engine, [entry])
        await sign_in(client)
        assert "'=HYPERLINK(1)" in (await client.get("/admin/usage.csv")).text


def test_charts_stack_series_and_fold_the_smallest_into_other() -> None:
    series = {f"model-{n}": [n, 0, 2 * n] for n in range(1, 10)}
    chart = charts.stacked("Tokens", ["a", "b", "c"], series)
    assert len(chart.series) == charts.MAX_SERIES and chart.series[-1] == "other"
    assert chart.top >= sum(2 * n for n in range(1, 10))
    assert all(bar.height > 0 and bar.y >= charts.TOP for bar in chart.bars)
    assert [label.text for label in chart.labels] == ["a", "b", "c"]
    assert charts.stacked("Empty", ["a"], {"x": [0]}).empty
    assert (charts.nice_top(0), charts.nice_top(7), charts.nice_top(1234)) == (1.0, 10, 2000)


def test_a_session_cookie_is_refused_when_tampered_with_expired_or_of_another_token() -> None:
    keyring = auth.Keyring(plain="a-token-of-sixteen-chars", salt=b"salt")
    cookie = keyring.issue()
    session = keyring.session(cookie)
    assert session is not None and session.csrf
    expires, nonce, signature = cookie.split(".")
    assert keyring.session(f"{int(expires) + 1000}.{nonce}.{signature}") is None
    assert keyring.session(cookie, now=int(expires) + 1) is None
    assert auth.Keyring(plain="another-token-sixteen-chars", salt=b"salt").session(cookie) is None
    assert keyring.session("") is None and keyring.session("a.b") is None
    stored = auth.hash_token("generated-token")
    assert auth.Keyring(stored=stored).check("generated-token")
    assert not auth.Keyring(stored=stored).check("generated-tokeN")


def test_an_ended_session_is_refused_and_forgotten_once_expired() -> None:
    keyring = auth.Keyring(plain="a-token-of-sixteen-chars", salt=b"salt")
    ended, kept = keyring.issue(now=1000), keyring.issue(now=1000)
    session = keyring.session(ended, now=1000)
    assert session is not None
    keyring.end(session, now=1000)
    assert keyring.session(ended, now=1000) is None and keyring.session(kept, now=1000) is not None
    later_at = 1000 + auth.SESSION_SECONDS + 1
    later = keyring.session(keyring.issue(now=later_at), now=later_at)
    assert later is not None
    keyring.end(later, now=later_at)
    assert keyring._ended.keys() == {later.nonce}  # the first had expired: nothing left to refuse it for


def test_failed_logins_wait_per_client_and_overall() -> None:
    logins = auth.FailedLogins(per_client=2, overall=3, window=60)
    logins.failed("a", now=0)
    assert logins.wait("a", now=1) == 0
    logins.failed("a", now=1)
    assert logins.wait("a", now=2) == 58 and logins.wait("b", now=2) == 0
    logins.failed("b", now=2)
    assert logins.wait("c", now=3) > 0
    assert logins.wait("a", now=61.5) == 0


def test_urls_are_shown_without_their_secrets() -> None:
    assert safe_url("https://u:p@host.test/v1?api-version=1&key=s3cret") == "https://host.test/v1?api-version=1&key=***"
    assert safe_url("http://localhost:8080/v1") == "http://localhost:8080/v1"


def test_status_filters_are_a_closed_set() -> None:
    assert [queries.parse_status(v) for v in ("error", "429", "4xx", "'; drop", "12345")] == [
        "error",
        "429",
        "4xx",
        "",
        "",
    ]


async def test_hours_over_for_a_while_are_counted_once(tmp_path: Path) -> None:
    import random

    from oai2ollama.ledger.database import migrate, open_engine, resolve_url

    rng = random.Random(5)
    moment = datetime.now(UTC)
    url = resolve_url(f"sqlite:///{tmp_path / 'h.db'}")
    assert url is not None
    engine = open_engine(url)
    try:
        await migrate(engine)
        await _fill(engine, [row(moment - timedelta(hours=3), rng), row(moment - timedelta(minutes=1), rng)])
        hours = queries.hours_back(24, moment)
        settled: dict[str, tuple[int, int]] = {}
        async with engine.connect() as connection:
            first = await queries.hours_counted(connection, hours, settled, moment)
        assert sum(n for n, _ in first.values()) == 2 and hours[-1] not in settled and hours[-4] in settled
        await _fill(engine, [row(moment - timedelta(hours=3), rng), row(moment, rng)])
        async with engine.connect() as connection:
            again = await queries.hours_counted(connection, hours, settled, moment)
        assert again[hours[-4]] == first[hours[-4]]  # settled: not read again
        assert again[hours[-1]][0] == first[hours[-1]][0] + 1
    finally:
        await engine.dispose()
