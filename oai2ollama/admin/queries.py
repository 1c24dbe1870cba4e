"""The admin page's reads of the ledger, aggregated in the database and paged by index, so that a
page costs the same with a thousand rows or millions: every query walks an index range
(`requests.at`, `(model, at)`, `(key_name, at)`, the errors' partial index; migration 0004) or
reads the small daily totals, never the whole table."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..ledger import tables

r = tables.requests
daily = tables.usage_daily

# The text of the errors' partial index (`tables.REQUEST_ERRORS`): with bound parameters instead,
# SQLite and PostgreSQL would not see that a query's condition is the index's.
IS_ERROR = sa.text(f"({tables.REQUEST_ERRORS.text})")
IS_ANSWERED = sa.text(f"NOT ({tables.REQUEST_ERRORS.text})")  # sa.not_ cannot negate a text clause
HAS_FIRST_TOKEN = sa.and_(r.c.streamed.is_(True), r.c.first_byte.is_not(None))
PAGE_SIZE = 50
# Percentiles of a window with more requests than this are those of this many, spread evenly over
# it: a bounded number of rows read by primary key, whatever the window holds.
PERCENTILE_ROWS = 2_000

LOG_COLUMNS = (
    "id",
    "at",
    "key_name",
    "client",
    "method",
    "route",
    "model",
    "upstream",
    "upstream_model",
    "status",
    "error_kind",
    "input_tokens",
    "output_tokens",
    "first_byte",
    "duration",
    "streamed",
    "cost_usd",
)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Window:
    name: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_p50: float | None = None
    latency_p95: float | None = None
    first_token_p50: float | None = None
    first_token_p95: float | None = None
    sampled: int = 0  # percentiles from this many requests spread evenly over the window; 0: from all


def _row_totals(where: Any) -> sa.Select[Any]:
    return sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(sa.case((IS_ERROR, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(r.c.input_tokens), 0),
        sa.func.coalesce(sa.func.sum(r.c.output_tokens), 0),
    ).where(*where)


def _day_totals(*where: Any) -> sa.Select[Any]:
    return sa.select(
        sa.func.coalesce(sa.func.sum(daily.c.requests), 0),
        sa.func.coalesce(sa.func.sum(daily.c.errors), 0),
        sa.func.coalesce(sa.func.sum(daily.c.input_tokens), 0),
        sa.func.coalesce(sa.func.sum(daily.c.output_tokens), 0),
    ).where(*where)


async def window(connection: AsyncConnection, name: str, since: datetime, moment: datetime) -> Window:
    """Totals and percentiles of the requests since `since`. Totals come from the daily totals but
    for the window's first, partial UTC day, whose smaller half is summed from rows: its part in the
    window, or the day's total less the part before the window (at most 12 hours of rows either way)."""
    day_start = datetime.combine(since.date(), time.min, UTC)
    next_midnight = day_start + timedelta(days=1)
    sums = [0, 0, 0, 0]

    async def add(query: sa.Select[Any], sign: int = 1) -> None:
        for index, value in enumerate((await connection.execute(query)).one()):
            sums[index] += sign * int(value or 0)

    if next_midnight > moment or since - day_start > timedelta(hours=12):
        await add(_row_totals([r.c.at >= since, r.c.at < next_midnight]))
        if next_midnight <= moment:
            await add(_day_totals(daily.c.day >= next_midnight.date()))
    else:
        await add(_day_totals(daily.c.day >= since.date()))
        await add(_row_totals([r.c.at >= day_start, r.c.at < since]), -1)
    result = Window(name, *(max(value, 0) for value in sums))
    if result.requests:
        latency, first = await _sample(connection, since, result)
        result.latency_p50, result.latency_p95 = percentile(latency, 50), percentile(latency, 95)
        result.first_token_p50, result.first_token_p95 = percentile(first, 50), percentile(first, 95)
    return result


async def _sample(connection: AsyncConnection, since: datetime, result: Window) -> tuple[list[float], list[float]]:
    """Durations and first-token times of the window's requests: all of them, or, past
    PERCENTILE_ROWS, that many spread evenly over its ids (rows are numbered as they come)."""
    columns = (r.c.duration, r.c.first_byte, r.c.streamed)
    if result.requests <= PERCENTILE_ROWS:
        query = sa.select(*columns).where(r.c.at >= since)
    else:
        first = sa.select(r.c.id).where(r.c.at >= since).order_by(r.c.at).limit(1)
        low = (await connection.execute(first)).scalar_one_or_none()
        high = (await connection.execute(sa.select(sa.func.max(r.c.id)))).scalar_one_or_none()
        if low is None or high is None:
            return [], []
        step = max((high - low + 1) / PERCENTILE_ROWS, 1.0)
        ids = sorted({low + int(step * index) for index in range(PERCENTILE_ROWS)} | {high})
        result.sampled = len(ids)
        query = sa.select(*columns).where(r.c.id.in_(sa.bindparam("ids", expanding=True)), r.c.at >= since)
        query = query.params(ids=ids)
    durations: list[float] = []
    first_tokens: list[float] = []
    for duration, first_byte, streamed in await connection.execute(query):
        durations.append(duration)
        if streamed and first_byte is not None:
            first_tokens.append(first_byte)
    return durations, first_tokens


def percentile(values: list[float], rank: float) -> float | None:
    """The nearest-rank percentile: a value that was measured, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)]


# An hour's counts are kept once it has been over this long: records are written when a request
# ends, so a long answer begun in an hour lands after it (one longer than this is left out).
SETTLED = timedelta(minutes=15)


async def hours_counted(
    connection: AsyncConnection, hours: list[str], settled: dict[str, tuple[int, int]], moment: datetime
) -> dict[str, tuple[int, int]]:
    """Requests and errors for each of `hours` (`YYYY-MM-DD HH`, oldest first): the settled ones
    from `settled` (which the caller keeps, and this fills), the others counted now, so that each
    overview reads the rows of the last hour or two rather than of a whole day."""
    missing = [hour for hour in hours if hour not in settled]
    counted: dict[str, tuple[int, int]] = {}
    if missing:
        counted = await per_hour(connection, datetime.strptime(missing[0], "%Y-%m-%d %H").replace(tzinfo=UTC))
    for hour in missing:
        ends = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC) + timedelta(hours=1)
        if ends + SETTLED <= moment:
            settled[hour] = counted.get(hour, (0, 0))
    for hour in [hour for hour in settled if hour < hours[0]]:
        del settled[hour]
    return {hour: settled.get(hour) or counted.get(hour, (0, 0)) for hour in hours}


async def per_hour(connection: AsyncConnection, since: datetime) -> dict[str, tuple[int, int]]:
    """Requests and errors per UTC hour since `since`, keyed `YYYY-MM-DD HH`. SQLite counts from its
    indexes alone (`at`, and the errors' partial one); PostgreSQL, which must visit the rows anyway
    to know they are visible, counts both in one pass."""
    if connection.dialect.name == "postgresql":
        hour = sa.func.to_char(sa.func.date_trunc("hour", sa.func.timezone("UTC", r.c.at)), "YYYY-MM-DD HH24")
        query = sa.select(hour, sa.func.count(), sa.func.sum(sa.case((IS_ERROR, 1), else_=0)))
        query = query.where(r.c.at >= since).group_by(hour)
        return {str(h): (int(n), int(e or 0)) for h, n, e in await connection.execute(query)}
    hour = sa.func.substr(r.c.at, 1, 13)
    every = sa.select(hour, sa.func.count()).where(r.c.at >= since).group_by(hour)
    failed = sa.select(hour, sa.func.count()).where(IS_ERROR, r.c.at >= since).group_by(hour)
    errors = {str(h): int(n) for h, n in await connection.execute(failed)}
    return {str(h): (int(n), errors.get(str(h), 0)) for h, n in await connection.execute(every)}


async def per_upstream(connection: AsyncConnection, since: datetime) -> dict[str, dict[str, Any]]:
    """Per upstream since `since`: requests, errors, mean duration."""
    query = (
        sa.select(
            r.c.upstream,
            sa.func.count(),
            sa.func.sum(sa.case((IS_ERROR, 1), else_=0)),
            sa.func.avg(r.c.duration),
        )
        .where(r.c.at >= since, r.c.upstream.is_not(None))
        .group_by(r.c.upstream)
    )
    return {
        name: {"requests": int(n), "errors": int(e or 0), "latency": float(avg) if avg is not None else None}
        for name, n, e, avg in await connection.execute(query)
    }


async def tokens_per_day(connection: AsyncConnection, by: str, first_day: date) -> dict[tuple[str, str], int]:
    """Tokens (input + output) per (day, model or key) from the daily totals, from `first_day` on."""
    column = daily.c.model if by == "model" else daily.c.key_name
    total = sa.func.sum(daily.c.input_tokens + daily.c.output_tokens)
    query = sa.select(daily.c.day, column, total).where(daily.c.day >= first_day).group_by(daily.c.day, column)
    return {(str(day), name or "–"): int(tokens or 0) for day, name, tokens in await connection.execute(query)}


async def daily_totals(connection: AsyncConnection, first_day: date) -> dict[str, dict[str, int]]:
    """Requests, errors and tokens per day from the daily totals, keyed `YYYY-MM-DD`."""
    query = (
        sa.select(
            daily.c.day,
            sa.func.sum(daily.c.requests),
            sa.func.sum(daily.c.errors),
            sa.func.sum(daily.c.input_tokens),
            sa.func.sum(daily.c.output_tokens),
        )
        .where(daily.c.day >= first_day)
        .group_by(daily.c.day)
    )
    return {
        str(day): {"requests": int(n), "errors": int(e), "input": int(i), "output": int(o)}
        for day, n, e, i, o in await connection.execute(query)
    }


SUGGESTED_DAYS = 30


async def names(connection: AsyncConnection, today: date) -> tuple[list[str], list[str]]:
    """The keys and models seen in the last 30 days' totals (the filters' suggestions): a year's
    would scan every daily row (~100 ms with a busy year), these read a range of the primary key."""
    recent = daily.c.day >= today - timedelta(days=SUGGESTED_DAYS)
    keys = await connection.execute(sa.select(daily.c.key_name).where(recent).distinct().order_by(daily.c.key_name))
    models = await connection.execute(sa.select(daily.c.model).where(recent).distinct().order_by(daily.c.model))
    return [k for (k,) in keys if k], [m for (m,) in models if m]


# ---- the request log


@dataclass(frozen=True)
class Filters:
    key: str = ""  # a key's name; "-": requests without a key
    model: str = ""  # the model as the client named it
    status: str = ""  # "", "ok", "error", "4xx", "5xx" or a status such as "429"
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[Any]:
        conditions: list[Any] = []
        if self.key == "-":
            conditions.append(r.c.key_name.is_(None))
        elif self.key:
            conditions.append(r.c.key_name == self.key)
        if self.model:
            # `gpt-4o` finds what clients sent as `gpt-4o:latest` too (as Ollama names it), and the
            # suggestions, which are the daily totals' upstream ids, find their requests.
            same = [self.model] if ":" in self.model else [self.model, f"{self.model}:latest"]
            conditions.append(r.c.model.in_(same))
        status = self.status
        if status == "ok":
            conditions.append(IS_ANSWERED)
        elif status == "error":
            conditions.append(IS_ERROR)  # the errors' partial index has exactly this predicate
        elif status in ("2xx", "3xx", "4xx", "5xx"):
            low = int(status[0]) * 100
            conditions.append(sa.and_(r.c.status >= low, r.c.status < low + 100))
        elif status.isdigit():
            conditions.append(r.c.status == int(status))
        if self.since is not None:
            conditions.append(r.c.at >= self.since)
        if self.until is not None:
            conditions.append(r.c.at < self.until)
        return conditions


STATUSES = ("", "ok", "error", "2xx", "4xx", "5xx")


def parse_status(value: str) -> str:
    value = value.strip().lower()
    return value if value in STATUSES or (value.isdigit() and len(value) == 3) else ""


@dataclass
class Page:
    rows: list[Mapping[str, Any]]
    newer: int | None  # the id to page back from (`after`), when there are newer rows
    older: int | None  # the id to page on from (`before`), when there are older rows


async def _position(connection: AsyncConnection, row_id: int) -> tuple[datetime, int] | None:
    at = (await connection.execute(sa.select(r.c.at).where(r.c.id == row_id))).scalar_one_or_none()
    return None if at is None else (at, row_id)


async def log_page(
    connection: AsyncConnection,
    filters: Filters,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """One page of the request log, newest first; keyset paging on (at, id) down an index."""
    columns = [r.c[name] for name in LOG_COLUMNS]
    conditions = filters.where()
    forward = after is not None
    cursor = await _position(connection, after if forward else before) if (after or before) else None
    if cursor is not None:
        at, row_id = cursor
        if forward:
            conditions += [r.c.at >= at, sa.or_(r.c.at > at, r.c.id > row_id)]
        else:
            conditions += [r.c.at <= at, sa.or_(r.c.at < at, r.c.id < row_id)]
    order = (r.c.at.asc(), r.c.id.asc()) if forward and cursor else (r.c.at.desc(), r.c.id.desc())
    query = sa.select(*columns).where(*conditions).order_by(*order).limit(size + 1)
    rows = list((await connection.execute(query)).mappings())
    more = len(rows) > size
    rows = rows[:size]
    if forward and cursor:
        rows.reverse()
        newer = rows[0]["id"] if more and rows else None
        older = rows[-1]["id"] if rows else None
    else:
        newer = rows[0]["id"] if cursor is not None and rows else None
        older = rows[-1]["id"] if more and rows else None
    return Page(rows, newer, older)


async def log_rows(connection: AsyncConnection, filters: Filters) -> AsyncIterator[Mapping[str, Any]]:
    """Every row the filters select, newest first, streamed from the database (the CSV export)."""
    columns = [r.c[name] for name in LOG_COLUMNS]
    query = sa.select(*columns).where(*filters.where()).order_by(r.c.at.desc(), r.c.id.desc())
    result = await connection.stream(query.execution_options(yield_per=2000))
    async for row in result.mappings():
        yield row


def days_back(count: int, today: date | None = None) -> list[date]:
    today = today or now().date()
    return [today - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


def hours_back(count: int, moment: datetime | None = None) -> list[str]:
    moment = (moment or now()).replace(minute=0, second=0, microsecond=0)
    return [(moment - timedelta(hours=offset)).strftime("%Y-%m-%d %H") for offset in range(count - 1, -1, -1)]


def as_text(value: Sequence[Any]) -> list[str]:
    return ["" if item is None else str(item) for item in value]
