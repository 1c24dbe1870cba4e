"""`oai2ollama usage`'s arithmetic and rendering: pure, from rows to totals to text, JSON or CSV.

Totals come from request rows (which give latency percentiles) or, for a period reaching past the
rows kept, from the daily totals (sums only: no percentiles).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BY = ("model", "key", "upstream", "day")
NONE = "-"  # a request without a model, key or upstream


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0  # requests whose model has no known price
    durations: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)

    def add_request(self, row: Mapping[str, Any]) -> None:
        self.requests += 1
        self.errors += row["status"] == 0 or row["status"] >= 400 or row["error_kind"] is not None
        self.input_tokens += row["input_tokens"] or 0
        self.output_tokens += row["output_tokens"] or 0
        if row["cost_usd"] is None:
            self.unpriced += 1
        else:
            self.cost_usd += row["cost_usd"]
        self.durations.append(row["duration"])
        if row["streamed"] and row["first_byte"] is not None:
            self.first_tokens.append(row["first_byte"])

    def add_day(self, row: Mapping[str, Any]) -> None:
        self.requests += row["requests"]
        self.errors += row["errors"]
        self.input_tokens += row["input_tokens"]
        self.output_tokens += row["output_tokens"]
        self.cost_usd += row["cost_usd"]
        self.unpriced += row["requests"] - row["priced"]

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6) if self.requests > self.unpriced else None,
            "unpriced_requests": self.unpriced,
            "latency_p50_s": percentile(self.durations, 50),
            "latency_p95_s": percentile(self.durations, 95),
            "first_token_p50_s": percentile(self.first_tokens, 50),
            "first_token_p95_s": percentile(self.first_tokens, 95),
        }


def percentile(values: list[float], rank: float) -> float | None:
    """The nearest-rank percentile: a value that was measured, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(rank / 100 * len(ordered)) - 1)], 4)


def group_of(row: Mapping[str, Any], by: str | None) -> str:
    if by is None:
        return "total"
    if by == "day":
        day = row["day"] if "day" in row else row["at"].date()
        return str(day)
    if by == "model":
        return row.get("upstream_model") or row.get("model") or NONE
    value = row["key_name"] if by == "key" else row["upstream"]
    return value or NONE


def totals(rows: Iterable[Mapping[str, Any]], by: str | None, *, daily: bool) -> tuple[dict[str, Totals], Totals]:
    groups: dict[str, Totals] = {}
    overall = Totals()
    for row in rows:
        group = groups.setdefault(group_of(row, by), Totals())
        for target in (group, overall):
            (target.add_day if daily else target.add_request)(row)
    return dict(sorted(groups.items())), overall


@dataclass(frozen=True)
class Report:
    since: datetime
    by: str | None
    daily: bool  # from daily totals: no percentiles
    groups: dict[str, Totals]
    overall: Totals

    def as_dict(self) -> dict[str, Any]:
        key = self.by or "total"
        return {
            "since": self.since.isoformat(),
            "by": self.by,
            "source": "daily totals" if self.daily else "requests",
            "groups": [{key: name, **group.summary()} for name, group in self.groups.items()] if self.by else [],
            "total": self.overall.summary(),
        }


def as_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


def as_csv(report: Report) -> str:
    data = report.as_dict()
    key = report.by or "total"
    rows = [*data["groups"], {key: "total", **data["total"]}]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[key, *data["total"]], lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: "" if value is None else value for name, value in row.items()} for row in rows)
    return out.getvalue()


_COLUMNS = ("requests", "errors", "tokens in", "tokens out", "cost USD", "latency p50/p95", "first token p50/p95")


def as_text(report: Report) -> str:
    key = report.by or ""
    lines = [[key, *_COLUMNS]]
    named = [*report.groups.items(), ("total", report.overall)] if report.by else [("total", report.overall)]
    for name, group in named:
        s = group.summary()
        cost = "-" if s["cost_usd"] is None else f"{s['cost_usd']:.4f}"
        lines.append(
            [
                name,
                f"{s['requests']:,}",
                f"{s['errors']:,}",
                f"{s['input_tokens']:,}",
                f"{s['output_tokens']:,}",
                cost,
                _pair(s["latency_p50_s"], s["latency_p95_s"]),
                _pair(s["first_token_p50_s"], s["first_token_p95_s"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    source = "daily totals (no percentiles before the requests kept)" if report.daily else "requests"
    head = f"usage since {report.since:%Y-%m-%d %H:%M} UTC, from {source}"
    notes = []
    if report.overall.unpriced:
        notes.append(f"{report.overall.unpriced:,} request(s) have no known price and no cost.")
    return "\n".join([head, *text, *notes]) + "\n"


def _pair(p50: float | None, p95: float | None) -> str:
    return "-" if p50 is None or p95 is None else f"{p50:.2f} s / {p95:.2f} s"
