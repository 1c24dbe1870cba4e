"""A `RequestRecord` as a row of the ledger: pure, so what is stored is tested without a database."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..records import RequestRecord

# Client-sent text (a path, a model name) is cut to what a column holds; the log line cuts it alike.
_LONGEST = 200


def _cut(value: str | None) -> str | None:
    return value if value is None or len(value) <= _LONGEST else value[:_LONGEST]


def is_error(record: RequestRecord) -> bool:
    """An error status, a client that left before any answer (status 0), or a failure mid-answer."""
    return record.status == 0 or record.status >= 400 or record.error_kind is not None


def row_of(record: RequestRecord, cost: float | None = None) -> dict[str, Any]:
    usage = record.usage
    return {
        "at": datetime.fromtimestamp(record.started_at, UTC),
        "key_name": _cut(record.key_name),
        "client": _cut(record.client) or "",
        "method": record.method[:16],
        "route": _cut(record.path) or "",
        "dialect": record.dialect,
        "model": _cut(record.model),
        "upstream": _cut(record.upstream),
        "upstream_model": _cut(record.upstream_model),
        "status": record.status,
        "error_kind": record.error_kind[:64] if record.error_kind else None,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "tokens_estimated": bool(usage and usage.estimated),
        "first_byte": record.first_byte,
        "duration": record.duration,
        "streamed": record.streamed,
        "cost_usd": cost,
    }


def daily_totals(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `rows` add to each day's totals, one entry per (day, upstream, model, key)."""
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (
            row["at"].date(),
            row["upstream"] or "",
            row["upstream_model"] or row["model"] or "",
            row["key_name"] or "",
        )
        total = totals.get(key)
        if total is None:
            total = totals[key] = dict.fromkeys(_SUMS, 0) | dict(zip(_KEY, key, strict=True))
        total["requests"] += 1
        total["errors"] += row["status"] == 0 or row["status"] >= 400 or row["error_kind"] is not None
        for tokens in ("input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens"):
            total[tokens] += row[tokens] or 0
        if row["cost_usd"] is not None:
            total["cost_usd"] += row["cost_usd"]
            total["priced"] += 1
        total["duration_sum"] += row["duration"]
        total["duration_count"] += 1
        if row["streamed"] and row["first_byte"] is not None:
            total["first_token_sum"] += row["first_byte"]
            total["first_token_count"] += 1
    return list(totals.values())


_KEY = ("day", "upstream", "model", "key_name")
_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_usd",
    "priced",
    "duration_sum",
    "duration_count",
    "first_token_sum",
    "first_token_count",
)
