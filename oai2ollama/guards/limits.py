"""The limits of the database's API keys: tokens per UTC day and requests per minute, across processes.

The request path decides from memory (`admit`: a few deque operations). What other processes
sharing the database did is read at each poll (`key_sync`, about once a second) from the ledger:
today's tokens per key from the daily totals, and the start of each request of the last minute.

This process's own share is counted here, not read back, for it is in the database only once each
answer is over and its batch written:
- requests per minute: every request this process admitted, from the moment it is admitted; the
  database's rows that are this process's own (their start is one it recorded) are left out, so
  that nothing counts twice;
- tokens per day: what this process's records used since the last read (tokens are only known once
  an answer is over). A record written in the second before a read may go uncounted until the next.

Across processes a request counts for the others once its record is written (when its answer is
over, within about a second), so several processes together can let a key a little past a limit;
never below it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from ..records import ErrorKind, RequestRecord
from .keys import RuntimeKey
from .refusal import Refusal

WINDOW = 60.0  # seconds: "per minute" is any 60 seconds
_KEEP_OWN = WINDOW + 30.0  # own starts kept this long to recognise the database's rows as ours


def stored_start(started_at: float) -> datetime:
    """A record's start as the ledger stores it (`rows.row_of`), naive UTC, to the microsecond."""
    return datetime.fromtimestamp(started_at, UTC).replace(tzinfo=None)


def utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def _after(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


@dataclass(slots=True)
class _Counts:
    day: date
    admitted: deque[float] = field(default_factory=deque)  # this process's admissions in the window
    own: deque[tuple[float, datetime]] = field(default_factory=deque)  # this process's recorded starts
    others: deque[float] = field(default_factory=deque)  # other processes' starts, from the last read
    tokens_read: int = 0  # today's tokens in the database at the last read
    tokens_since: int = 0  # this process's tokens recorded since that read

    def tokens(self, today: date) -> int:
        if today != self.day:  # a new day (UTC): yesterday's tokens no longer count
            self.day, self.tokens_read, self.tokens_since = today, 0, 0
        return self.tokens_read + self.tokens_since

    def recent(self, now: float) -> int:
        since = now - WINDOW
        for times in (self.admitted, self.others):
            while times and times[0] <= since:
                times.popleft()
        return len(self.admitted) + len(self.others)


class Limits:
    """Counts for each limited key of the database, and when each key was last used."""

    def __init__(self) -> None:
        self._counts: dict[str, _Counts] = {}
        self._last_used: dict[str, float] = {}

    def use(self, keys: Iterable[RuntimeKey], now: float) -> None:
        """The keys now in the database: counts are kept for those still limited, begun for new ones."""
        day = utc_day(now)
        before = self._counts
        self._counts = {key.name: before.get(key.name) or _Counts(day) for key in keys if key.limited}

    def admit(self, key: RuntimeKey, now: float) -> Refusal | None:
        """Refuse (429) a key over one of its limits; else count the request."""
        counts = self._counts.get(key.name)
        if counts is not None:
            limit = key.tokens_per_day
            if limit is not None and counts.tokens(utc_day(now)) >= limit:
                midnight = datetime.combine(utc_day(now) + timedelta(days=1), datetime.min.time(), UTC)
                wait = max(1, math.ceil(midnight.timestamp() - now))
                message = (
                    f"API key '{key.name}' is over its limit of {limit} tokens per day (UTC); retry in {_after(wait)}"
                )
                return Refusal(429, message, {"Retry-After": str(wait)}, ErrorKind.RATE_LIMITED)
            limit = key.requests_per_minute
            if limit is not None:
                count = counts.recent(now)
                if count >= limit:
                    # The request slot frees when enough of the minute's requests have aged out of it.
                    oldest = sorted((*counts.admitted, *counts.others))[count - limit]
                    wait = max(1, math.ceil(oldest + WINDOW - now))
                    message = (
                        f"API key '{key.name}' is over its limit of {limit} requests per minute; retry in {wait} s"
                    )
                    return Refusal(429, message, {"Retry-After": str(wait)}, ErrorKind.RATE_LIMITED)
                counts.admitted.append(now)
        self._last_used[key.name] = now
        return None

    def requests_in_window(self, name: str, now: float) -> int:
        """The requests of the last minute counted against the key named `name`, every process's."""
        counts = self._counts.get(name)
        return counts.recent(now) if counts is not None else 0

    def observe(self, record: RequestRecord) -> None:
        """A request-log observer: this process's tokens, and its requests' starts as stored."""
        counts = self._counts.get(record.key_name) if record.key_name is not None else None
        if counts is None or record.error_kind == ErrorKind.RATE_LIMITED:
            return
        counts.own.append((record.started_at, stored_start(record.started_at)))
        usage = record.usage
        if usage is not None:
            day = utc_day(record.started_at)  # the daily totals count a request on the day it began
            if day >= counts.day:
                counts.tokens(day)
                counts.tokens_since += (usage.input_tokens or 0) + (usage.output_tokens or 0)

    # ---- the poll (key_sync)

    def names(self) -> list[str]:
        """The keys with a limit, whose counts the poll reads."""
        return list(self._counts)

    def mark(self) -> dict[str, int]:
        """Taken just before a read: the tokens counted so far, which the read's totals will hold."""
        return {name: counts.tokens_since for name, counts in self._counts.items()}

    def update(
        self,
        now: float,
        tokens: Mapping[str, int],
        starts: Iterable[tuple[str, datetime]],
        mark: Mapping[str, int],
    ) -> None:
        """What a read found: today's tokens per key, and the starts of the last minute's requests."""
        today = utc_day(now)
        others: dict[str, list[float]] = {}
        own: dict[str, set[datetime]] = {}
        for name, counts in self._counts.items():
            while counts.own and counts.own[0][0] < now - _KEEP_OWN:
                counts.own.popleft()
            own[name] = {stored for _, stored in counts.own}
        for name, start in starts:
            if name in own and start not in own[name]:
                others.setdefault(name, []).append(start.replace(tzinfo=UTC).timestamp())
        for name, counts in self._counts.items():
            counts.tokens(today)
            counts.tokens_read = tokens.get(name, 0)
            counts.tokens_since = max(0, counts.tokens_since - mark.get(name, 0))
            counts.others = deque(sorted(others.get(name, ())))

    def take_last_used(self) -> dict[str, datetime]:
        """When each key was used since the last call (for `api_keys.last_used_at`)."""
        used, self._last_used = self._last_used, {}
        return {name: datetime.fromtimestamp(at, UTC) for name, at in used.items()}
