"""A generated ledger: many plausible request rows and their daily totals, for the admin page's tests
and its page-load measurement (`python -m tests.ledger_fill DATABASE_URL ROWS [DAYS]`)."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from oai2ollama.ledger import store, tables
from oai2ollama.ledger.database import migrate, open_engine, resolve_url
from oai2ollama.ledger.rows import daily_totals

MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "deepseek-chat",
    "claude",
    "qwen2.5-coder:32b",
    "llama3.1:8b",
    "text-embedding-3-small",
)
KEYS = (None, "alice", "bob", "ci", "team-web", "team-data")
ROUTES = ("/api/chat", "/v1/chat/completions", "/v1/messages", "/api/generate", "/v1/embeddings", "/v1/responses")
CLIENTS = ("ollama-python/0.6.3", "OpenAI/Python 1.99", "Anthropic/JS 0.60", "Zed/0.200", "curl/8.5")


def row(at: datetime, rng: random.Random) -> dict[str, Any]:
    model = rng.choice(MODELS)
    status = rng.choices((200, 200, 200, 200, 200, 200, 200, 200, 400, 401, 429, 502), k=1)[0]
    streamed = rng.random() < 0.7
    duration = rng.lognormvariate(0.3, 0.9)
    return {
        "at": at,
        "key_name": rng.choice(KEYS),
        "client": rng.choice(CLIENTS),
        "method": "POST",
        "route": rng.choice(ROUTES),
        "dialect": "ollama",
        "model": model,
        "upstream": "default",
        "upstream_model": model,
        "status": status,
        "error_kind": None if status < 400 else "upstream_4xx",
        "input_tokens": rng.randint(20, 8000) if status == 200 else None,
        "output_tokens": rng.randint(1, 2000) if status == 200 else None,
        "reasoning_tokens": None,
        "cached_tokens": None,
        "tokens_estimated": False,
        "first_byte": duration * rng.uniform(0.05, 0.5) if streamed else None,
        "duration": duration,
        "streamed": streamed,
        "cost_usd": None,
    }


async def fill(engine: AsyncEngine, count: int, days: float = 30.0, *, seed: int = 14, chunk: int = 5000) -> None:
    """`count` rows spread evenly over the last `days` days, oldest first (as a ledger grows)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    step = timedelta(days=days) / max(count, 1)
    start = now - timedelta(days=days)
    for first in range(0, count, chunk):
        rows = [row(start + step * index, rng) for index in range(first, min(first + chunk, count))]
        async with engine.begin() as connection:
            await connection.execute(tables.requests.insert(), rows)
            await store.add_daily(connection, daily_totals(rows))


async def main(url: str, count: int, days: float) -> None:
    resolved = resolve_url(url)
    assert resolved is not None
    engine = open_engine(resolved)
    await migrate(engine)
    started = time.perf_counter()
    await fill(engine, count, days)
    await engine.dispose()
    print(f"{count:,} rows in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
