"""The admin page's pages: each reads what it shows, renders a template, and changes only on POST."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..catalog import Catalog, edit_key
from ..errors import ProxyError
from ..ledger.database import described
from ..request_log import escaped
from ..shared_state import bump
from . import charts, edits, queries
from .auth import Session
from .render import SECURITY_HEADERS, error_page, page, static_file
from .session import Form, change, client_of, context, field, redirect, signed_in, state_of
from .views import model_row, settings_rows

log = logging.getLogger("oai2ollama.admin")

NO_LEDGER = "There is no usage ledger (--database-url none): nothing is recorded."


def engine_of(request: Request) -> Any:
    ledger = request.app.state.ledger
    return ledger.engine if ledger is not None else None


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog  # type: ignore[no-any-return]


async def _listed(request: Request) -> Catalog:
    """The catalog, once its upstreams have been asked (as a client's first request would)."""
    catalog = _catalog(request)
    with contextlib.suppress(ProxyError):  # an upstream that cannot be listed is shown as such
        await catalog.cards()
    return catalog


# ---- overview


OVERVIEW_SECONDS = 2.0  # the overview's figures are read from the ledger at most this often


async def _traffic(engine: Any, settled: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The overview's figures from the ledger: windows, charts, per-upstream latency."""
    moment = queries.now()
    async with engine.connect() as connection:
        windows = []
        for name, span in (("hour", timedelta(hours=1)), ("day", timedelta(days=1)), ("week", timedelta(days=7))):
            windows.append(await queries.window(connection, name, moment - span, moment))
        hours = queries.hours_back(24, moment)
        counts = await queries.hours_counted(connection, hours, settled, moment)
        failed = [counts.get(h, (0, 0))[1] for h in hours]
        ok = [counts.get(h, (0, 0))[0] - bad for h, bad in zip(hours, failed, strict=True)]
        hourly = charts.stacked(
            "Requests per hour, last 24 hours (UTC)",
            [h[-2:] + ":00" for h in hours],
            {"ok": ok, "errors": failed},
            every=3,
        )
        days = queries.days_back(14, moment.date())
        totals = await queries.daily_totals(connection, days[0])
        series = {part: [totals.get(str(d), {}).get(part, 0) for d in days] for part in ("input", "output")}
        daily = charts.stacked(
            "Tokens per day, last 14 days (UTC)", [d.strftime("%m-%d") for d in days], series, every=2
        )
        per_upstream = await queries.per_upstream(connection, moment - timedelta(hours=1))
    return {"windows": windows, "hourly": hourly, "daily": daily, "per_upstream": per_upstream}


@signed_in
async def overview(request: Request, session: Session) -> Response:
    engine = engine_of(request)
    traffic: dict[str, Any] = {"windows": [], "hourly": None, "daily": None, "per_upstream": {}}
    if engine is not None:
        admin = state_of(request)
        traffic = await admin.cached("overview", OVERVIEW_SECONDS, lambda: _traffic(engine, admin.settled_hours))
    upstreams = (await _listed(request)).upstream_states()
    for upstream in upstreams:
        upstream["usage"] = traffic["per_upstream"].get(upstream["name"], {})
    values = context(
        request, session, "overview", title="Overview", upstreams=upstreams, ledger=engine is not None,
        no_ledger=NO_LEDGER, sample=queries.PERCENTILE_ROWS, **traffic,
    )  # fmt: skip
    return page("overview.html", **values)


# ---- models


@signed_in
async def models(request: Request, session: Session) -> Response:
    catalog = await _listed(request)
    configuration = request.app.state.configuration
    rows = [model_row(catalog, configuration.catalog, source, entry) for source, entry in catalog.models()]
    listed = any(state["listed"] is not None for state in catalog.upstream_states())
    notice = request.query_params.get("done", "")
    values = context(request, session, "models", title="Models", rows=rows, listed=listed, notice=notice)
    return page("models.html", **values)


def _find(catalog: Catalog, key: str) -> tuple[Any, dict[str, Any]] | None:
    return next(((s, e) for s, e in catalog.models() if edit_key(s.name, str(e["id"])) == key), None)


async def _edit_page(request: Request, session: Session, key: str, status: int = 200, **extra: Any) -> Response:
    catalog = await _listed(request)
    found = _find(catalog, key)
    if found is None:
        return error_page(404, "No such model: the upstreams do not list it (refresh the models page).")
    source, entry = found
    row = model_row(catalog, request.app.state.configuration.catalog, source, entry)
    form = extra.pop("form", None) or edits.form_values(row["card"])
    values = context(
        request, session, "models", title=f"Edit {row['card'].name}", row=row, form=form, key=key,
        capabilities=edits.EDITABLE_CAPABILITIES, ledger=engine_of(request) is not None, **extra,
    )  # fmt: skip
    return page("model_edit.html", status=status, **values)


@signed_in
async def model_edit_form(request: Request, session: Session) -> Response:
    return await _edit_page(request, session, request.query_params.get("model", ""))


@change
async def model_edit(request: Request, session: Session, form: Form) -> Response:
    key = field(form, "model")
    engine = engine_of(request)
    catalog = await _listed(request)
    found = _find(catalog, key)
    if found is None:
        return error_page(404, "No such model: the upstreams do not list it (refresh the models page).")
    if engine is None:
        return error_page(409, "Edits are kept in the database, and this server has none (--database-url none).")
    source, entry = found
    baseline = catalog.card_of(source, entry, edited=False)
    try:
        edit = edits.edit_from_form(form, baseline, baseline.client_id)
        alias = edit.get("alias")
        if alias:
            owner = catalog.index.lookup(alias)
            if owner is not None and edit_key(owner.upstream, owner.upstream_id) != key:
                raise edits.EditError(f"alias: {alias!r} is already the name of {owner.client_id!r}")
    except edits.EditError as exc:
        submitted = {
            "alias": field(form, "alias"),
            "hidden": field(form, "hidden") == "on",
            "capabilities": form.get("capabilities", []),
            "context_length": field(form, "context_length"),
            "options": field(form, "options"),
        }
        return await _edit_page(request, session, key, 400, form=submitted, error=str(exc))
    async with engine.begin() as connection:
        await edits.save(connection, key, edit)
    await _reapply(request)
    log.info("admin: %s model %s from %s", "edited" if edit else "reset", escaped(key), escaped(client_of(request)))
    return redirect("/admin/models?" + urlencode({"done": f"Saved {key}." if edit else f"{key}: no edits."}))


@change
async def model_reset(request: Request, session: Session, form: Form) -> Response:
    key = field(form, "model")
    engine = engine_of(request)
    if engine is None:
        return error_page(409, "Edits are kept in the database, and this server has none (--database-url none).")
    async with engine.begin() as connection:
        await edits.save(connection, key, {})
    await _reapply(request)
    log.info("admin: reset model %s from %s", escaped(key), escaped(client_of(request)))
    return redirect("/admin/models?" + urlencode({"done": f"Reset {key}: the config file and the upstream apply."}))


async def _reapply(request: Request) -> None:
    """This process applies the edits at once; the others at their next poll."""
    async with engine_of(request).connect() as connection:
        _catalog(request).apply_edits(await edits.load(connection))


@change
async def models_refresh(request: Request, session: Session, form: Form) -> Response:
    await _catalog(request).refresh()
    engine = engine_of(request)
    if engine is not None:  # the other processes and replicas refresh at their next poll
        try:
            async with engine.begin() as connection:
                await bump(connection, edits.REFRESH_TOPIC)
        except Exception as exc:  # this process has refreshed; the others keep their TTL
            log.warning("admin: cannot ask the other processes to refresh: %s", described(exc, engine.url))
    log.info("admin: refreshed the models from %s", escaped(client_of(request)))
    return redirect("/admin/models?" + urlencode({"done": "Asked every upstream for its models."}))


# ---- usage


def utc_time(value: str) -> datetime | None:
    """A `datetime-local` value (`2026-12-01T10:30`) or a date, read as UTC."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _filters(request: Request) -> queries.Filters:
    params = request.query_params
    return queries.Filters(
        key=params.get("key", "").strip(),
        model=params.get("model", "").strip(),
        status=queries.parse_status(params.get("status", "")),
        since=utc_time(params.get("since", "")),
        until=utc_time(params.get("until", "")),
    )


def _filter_query(request: Request, **extra: Any) -> str:
    names = ("key", "model", "status", "since", "until")
    values = {name: request.query_params.get(name, "") for name in names}
    values.update(extra)
    return urlencode({name: value for name, value in values.items() if value})


def _id(value: str | None) -> int | None:
    """A row id from a paging link; anything else (not a number, past 64 bits) is the first page."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 19 else None


@signed_in
async def usage(request: Request, session: Session) -> Response:
    engine = engine_of(request)
    filters = _filters(request)
    values = context(
        request, session, "usage", title="Usage", ledger=engine is not None, no_ledger=NO_LEDGER,
        filters=filters, params=request.query_params, statuses=queries.STATUSES,
    )  # fmt: skip
    if engine is None:
        return page("usage.html", **values, log=None, charts=[], keys=[], models=[], links={})
    days = queries.days_back(14)
    async with engine.connect() as connection:
        log_page = await queries.log_page(
            connection,
            filters,
            before=_id(request.query_params.get("before")),
            after=_id(request.query_params.get("after")),
        )
        keys, model_names = await queries.names(connection, datetime.now(UTC).date())
        drawn = []
        for by, title in (("model", "Tokens per model per day"), ("key", "Tokens per key per day")):
            tokens = await queries.tokens_per_day(connection, by, days[0])
            groups = sorted({name for _, name in tokens})
            series = {name: [tokens.get((str(d), name), 0) for d in days] for name in groups}
            labels = [d.strftime("%m-%d") for d in days]
            drawn.append(charts.stacked(f"{title}, last 14 days (UTC)", labels, series, every=2))
    links = {
        "newer": f"?{_filter_query(request, after=log_page.newer)}" if log_page.newer else "",
        "older": f"?{_filter_query(request, before=log_page.older)}" if log_page.older else "",
        "csv": f"/admin/usage.csv?{_filter_query(request)}",
        "first": f"?{_filter_query(request)}",
    }
    return page("usage.html", **values, log=log_page, charts=drawn, keys=keys, models=model_names, links=links)


CSV_HEADER = [name for name in queries.LOG_COLUMNS if name != "id"]


@signed_in
async def usage_csv(request: Request, session: Session) -> Response:
    engine = engine_of(request)
    if engine is None:
        return error_page(404, NO_LEDGER)
    filters = _filters(request)

    async def lines() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        async with engine.connect() as connection:
            count = 0
            async for row in queries.log_rows(connection, filters):
                values = [row["at"].isoformat() if name == "at" else row[name] for name in CSV_HEADER]
                writer.writerow(["" if value is None else _cell(value) for value in values])
                count += 1
                if count % 500 == 0:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
        yield out.getvalue()

    stamp = queries.now().strftime("%Y%m%d-%H%M%S")
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="oai2ollama-requests-{stamp}.csv"'}
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=headers)


def _cell(value: Any) -> Any:
    """A spreadsheet must not run what a client sent as a formula (a user agent `=HYPERLINK(…)`)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# ---- settings


@signed_in
async def settings(request: Request, session: Session) -> Response:
    app_state = request.app.state
    sections = settings_rows(app_state.settings, app_state.configuration)
    return page("settings.html", **context(request, session, "settings", title="Settings", sections=sections))


# ---- assets


_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    body = static_file(name)
    kind = next((value for suffix, value in _TYPES.items() if name.endswith(suffix)), None)
    if body is None or kind is None:
        return error_page(404, "No such file.")
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(body, media_type=kind, headers=headers)


async def not_found(request: Request) -> Response:
    return error_page(404, f"There is no admin page at {request.url.path}.")
