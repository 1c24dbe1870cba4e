"""The admin page's server time on a ledger of 1,000,000 requests.

    .venv/bin/python bench/admin_pages.py                      # generate (once) and measure
    .venv/bin/python bench/admin_pages.py --rows 200000 --loads 30 --json out.json
    .venv/bin/python bench/admin_pages.py --generate-only --ledger /tmp/ledger.db

1. Generates a SQLite ledger (the schema of the newest migration, made by the ledger's own
   `migrate`) with --rows realistic `requests` rows spread over the last 29 days (inside the
   default 30-day retention, so the server prunes none): a few upstreams and a dozen models, some
   twenty keys and anonymous use, the usual clients and routes, a mix of streamed and not, ~3%
   errors, log-normal token counts and latencies, heavier in working hours. `usage_daily` is summed
   from those rows by SQL (exactly what the writer would have added) plus a year of older daily
   totals with no rows behind them, as a ledger that has run for a year holds. Bulk insert in one
   transaction with SQLite's journal off: about a minute for a million rows on 2 cores.
2. Starts the server exactly as a user does (`.venv/bin/oai2ollama`, a subprocess) on that file,
   with an admin token and a tiny upstream on loopback, logs in, and loads each admin page --loads
   times after a warm-up load: overview, models, keys, settings, usage (first page, a filtered page,
   a deep page).
3. Reports per page the median and p95 of the server time (the `Server-Timing` header's `app`
   entry when the page sends one, else the response time seen on loopback: an upper bound), and
   the size of the HTML.

The ledger file is kept (pass --ledger to reuse it: generation is skipped when it already holds
--rows requests). Everything started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]

# (upstream, model as clients name it, upstream id, $ per 1M input, $ per 1M output; None: unpriced)
MODELS = [
    ("openai", "gpt-4o", "gpt-4o", 2.5, 10.0),
    ("openai", "gpt-4o-mini", "gpt-4o-mini", 0.15, 0.6),
    ("openai", "o3-mini", "o3-mini", 1.1, 4.4),
    ("openai", "text-embedding-3-small", "text-embedding-3-small", 0.02, None),
    ("openrouter", "claude-sonnet-4", "anthropic/claude-sonnet-4", 3.0, 15.0),
    ("openrouter", "deepseek-chat", "deepseek/deepseek-chat", 0.27, 1.1),
    ("openrouter", "gemini-2.5-flash", "google/gemini-2.5-flash", 0.3, 2.5),
    ("openrouter", "llama-3.3-70b", "meta-llama/llama-3.3-70b-instruct", 0.1, 0.3),
    ("local", "qwen2.5-coder:7b", "qwen2.5-coder-7b-instruct", None, None),
    ("local", "llama3.2:3b", "llama-3.2-3b-instruct", None, None),
    ("local", "nomic-embed-text", "nomic-embed-text-v1.5", None, None),
    ("local", "phi-4", "phi-4", None, None),
]
MODEL_WEIGHTS = [18, 22, 4, 6, 10, 12, 6, 3, 9, 4, 4, 2]
KEYS = [None] + [f"{team}-{n}" for team in ("alice", "bob", "ci", "copilot", "webui") for n in range(1, 5)]
KEY_WEIGHTS = [20] + [4] * 20
# (client, route, dialect, method, streamed share)
CALLS = [
    ("vscode/1.105 copilot-chat/0.32", "/v1/chat/completions", "openai", "POST", 0.95),
    ("ollama-python/0.6.1", "/api/chat", "ollama", "POST", 0.7),
    ("ollama-js/0.6.0", "/api/chat", "ollama", "POST", 0.8),
    ("claude-cli/2.0.14 (external, cli)", "/v1/messages", "anthropic", "POST", 0.98),
    ("OpenAI/Python 1.109.1", "/v1/chat/completions", "openai", "POST", 0.5),
    ("open-webui", "/api/chat", "ollama", "POST", 0.9),
    ("continue/1.2", "/api/generate", "ollama", "POST", 0.9),
    ("codex_cli_rs/0.46.0", "/v1/responses", "openai", "POST", 0.95),
]
CALL_WEIGHTS = [25, 10, 5, 15, 10, 10, 5, 5]
EMBED_CALLS = [("ollama-python/0.6.1", "/api/embed", "ollama", "POST", 0.0)]
ERRORS = [(429, "rate_limited"), (500, "upstream_error"), (502, "upstream_unreachable"), (504, "timeout")]
ERRORS += [(400, "bad_request"), (401, None), (404, "model_not_found"), (0, "client_disconnected")]
ERROR_WEIGHTS = [30, 10, 10, 5, 15, 10, 10, 10]
DAYS = 29  # inside the default retention (30d): the server prunes nothing at start


def stamp(moment: datetime) -> str:
    """How SQLAlchemy stores a DateTime in SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def request_rows(count: int, now: datetime, seed: int = 14) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    span = DAYS * 86400
    start = now - timedelta(seconds=span)
    # Times in order (the ledger writes them so), denser in working hours (UTC 8-18) and on weekdays:
    # uniform draws, each kept with its hour's weight.
    hours_weight = [0.2] * 8 + [1.0] * 10 + [0.4] * 6
    offsets: list[float] = []
    while len(offsets) < count:
        offset = rng.random() * span
        moment = start + timedelta(seconds=offset)
        if rng.random() < hours_weight[moment.hour] * (0.4 if moment.weekday() >= 5 else 1.0):
            offsets.append(offset)
    offsets.sort()
    for offset in offsets:
        moment = start + timedelta(seconds=offset)
        upstream, model, upstream_model, price_in, price_out = rng.choices(MODELS, MODEL_WEIGHTS)[0]
        embedding = "embed" in model
        client, route, dialect, method, streamed_share = rng.choices(
            EMBED_CALLS if embedding else CALLS, CALL_WEIGHTS[: 1 if embedding else None]
        )[0]
        key = rng.choices(KEYS, KEY_WEIGHTS)[0]
        streamed = rng.random() < streamed_share
        status, error_kind = 200, None
        if rng.random() < 0.03:
            status, error_kind = rng.choices(ERRORS, ERROR_WEIGHTS)[0]
        answered = status == 200
        input_tokens = int(rng.lognormvariate(7.0, 1.2)) + 1 if answered else None
        output_tokens = (0 if embedding else int(rng.lognormvariate(5.3, 1.0)) + 1) if answered else None
        reasoning = int(output_tokens * rng.random()) if answered and model in ("o3-mini",) else None
        cached = int(input_tokens * rng.random() * 0.8) if answered and rng.random() < 0.3 else None
        estimated = answered and dialect == "anthropic" and rng.random() < 0.05
        if answered:
            first_byte = rng.lognormvariate(-0.7, 0.6) if streamed else None
            duration = (first_byte or 0) + (output_tokens or 0) / rng.uniform(40, 120) + rng.uniform(0.02, 0.2)
        else:
            first_byte = None
            duration = rng.uniform(0.005, 0.5) if status != 504 else 600.0
        cost = None
        if answered and price_in is not None:
            cost = (input_tokens * price_in + (output_tokens or 0) * (price_out or 0)) / 1e6
        yield (
            stamp(moment), key, client, method, route, dialect, model,
            upstream if status not in (400, 401) else None,
            upstream_model if status not in (400, 401) else None,
            status, error_kind, input_tokens, output_tokens, reasoning, cached,
            int(estimated), first_byte, duration, int(streamed), cost,
        )  # fmt: skip


REQUEST_COLUMNS = (
    "at, key_name, client, method, route, dialect, model, upstream, upstream_model, status, error_kind, "
    "input_tokens, output_tokens, reasoning_tokens, cached_tokens, tokens_estimated, first_byte, duration, "
    "streamed, cost_usd"
)
# What the ledger's writer adds to usage_daily for each row (rows.daily_totals), done by SQL.
DAILY_FROM_REQUESTS = """
INSERT INTO usage_daily
SELECT date(at), coalesce(upstream, ''), coalesce(upstream_model, model, ''), coalesce(key_name, ''),
       count(*),
       sum(status = 0 OR status >= 400 OR error_kind IS NOT NULL),
       coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
       coalesce(sum(reasoning_tokens), 0), coalesce(sum(cached_tokens), 0),
       coalesce(sum(cost_usd), 0.0), count(cost_usd),
       sum(duration), count(*),
       coalesce(sum(CASE WHEN streamed AND first_byte IS NOT NULL THEN first_byte END), 0.0),
       sum(streamed AND first_byte IS NOT NULL)
FROM requests GROUP BY 1, 2, 3, 4
"""


def older_daily_rows(now: datetime, seed: int = 41) -> Iterator[tuple[Any, ...]]:
    """A year of daily totals before the requests kept, for every upstream, model and key."""
    rng = random.Random(seed)
    first = (now - timedelta(days=DAYS + 1)).date()
    for back in range(335):
        day = (first - timedelta(days=back)).isoformat()
        for (upstream, _model, upstream_model, price_in, _), weight in zip(MODELS, MODEL_WEIGHTS, strict=True):
            for key, key_weight in zip(KEYS, KEY_WEIGHTS, strict=True):
                requests = max(1, int(rng.gauss(1.0, 0.3) * weight * key_weight * 1.6))
                errors = int(requests * 0.03)
                input_tokens = requests * 1800
                output_tokens = requests * 300
                cost = 0.0 if price_in is None else input_tokens * price_in / 1e6
                yield (
                    day, upstream, upstream_model, key or "", requests, errors, input_tokens, output_tokens,
                    0, 0, cost, 0 if price_in is None else requests, requests * 2.5, requests,
                    requests * 0.5, requests,
                )  # fmt: skip


def migrate(path: Path) -> None:
    from sqlalchemy.engine import make_url

    from oai2ollama.ledger.database import migrate as run
    from oai2ollama.ledger.database import open_engine

    async def main() -> None:
        engine = open_engine(make_url(f"sqlite+aiosqlite:///{path}"))
        try:
            await run(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())


def generate(path: Path, rows: int) -> float:
    """Write the ledger; seconds taken."""
    began = time.perf_counter()
    path.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    migrate(path)
    now = datetime.now(UTC)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB
        db.execute("BEGIN")
        marks = ", ".join("?" * len(REQUEST_COLUMNS.split(",")))
        db.executemany(f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ({marks})", request_rows(rows, now))
        db.execute(DAILY_FROM_REQUESTS)
        db.executemany(f"INSERT INTO usage_daily VALUES ({', '.join('?' * 16)})", older_daily_rows(now))
        db.execute("COMMIT")
        db.execute("ANALYZE")
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    return time.perf_counter() - began


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from oai2ollama.ledger.database import _alembic_config

    return str(ScriptDirectory.from_config(_alembic_config()).get_current_head())


def revision(path: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return str(db.execute("SELECT version_num FROM alembic_version").fetchone()[0])
        except (sqlite3.Error, TypeError):
            return None


def counted(path: Path) -> tuple[int, int]:
    if not path.exists():
        return 0, 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            requests = db.execute("SELECT count(*) FROM requests").fetchone()[0]
            daily = db.execute("SELECT count(*) FROM usage_daily").fetchone()[0]
        except sqlite3.Error:
            return 0, 0
    return requests, daily


# ---------------------------------------------------------------- the server and the loads


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def tiny_upstream() -> Iterator[str]:
    """An OpenAI-compatible /v1/models listing the generated ledger's models, on loopback."""
    listing = json.dumps(
        {"object": "list", "data": [{"id": upstream_id, "object": "model"} for _, _, upstream_id, _, _ in MODELS]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = (200, listing) if self.path.rstrip("/").endswith("/models") else (404, b"{}")
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def oai2ollama(ledger: Path, token: str, upstream: str, log: Path) -> Iterator[str]:
    """The server as a user starts it, on the generated ledger."""
    port = free_port()
    binary = Path(sys.executable).parent / "oai2ollama"
    argv = [str(binary), "--base-url", upstream, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--database-url", f"sqlite:///{ledger}", "--admin-token", token, "--log-level", "warning"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENAI_", "OAI2OLLAMA_"))}
    with log.open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"oai2ollama exited ({process.returncode}): {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/api/version", timeout=2).status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise RuntimeError("oai2ollama did not start")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def login(client: httpx.Client, token: str) -> None:
    """Log in through the login form as a browser does: its hidden fields (the CSRF token) kept,
    the token typed into its one visible field."""
    page = client.get("/admin/login")
    for _ in range(120):  # 503 while the server migrates a ledger made by an older schema
        if page.status_code != 503:
            break
        time.sleep(0.5)
        page = client.get("/admin/login")
    page.raise_for_status()
    form = re.search(r"<form\b[^>]*>(.*?)</form>", page.text, re.S | re.I)
    if form is None:
        raise RuntimeError("no login form on /admin/login")
    action = re.search(r'action="([^"]*)"', form.group(0))
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", form.group(1), re.I):
        name = re.search(r'name="([^"]*)"', tag)
        if name is None:
            continue
        kind = re.search(r'type="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        hidden = kind is not None and kind.group(1).lower() == "hidden"
        fields[name.group(1)] = (value.group(1) if value else "") if hidden else token
    target = action.group(1) if action and action.group(1) else "/admin/login"
    answer = client.post(target, data=fields, headers={"origin": str(client.base_url).rstrip("/")})
    if answer.status_code >= 400 or "/login" in str(answer.url.path):
        raise RuntimeError(f"login failed: {answer.status_code} at {answer.url}")


def server_ms(answer: httpx.Response, elapsed: float) -> tuple[float, bool]:
    """The `Server-Timing` header's app (or total) duration when sent, else the loopback time."""
    header = answer.headers.get("server-timing", "")
    durations = dict(re.findall(r"([\w-]+)[^,]*?;\s*dur=([\d.]+)", header))
    for name in ("app", "total", "handler", "render"):
        if name in durations:
            return float(durations[name]), True
    if durations:
        return sum(float(value) for value in durations.values()), True
    return elapsed * 1000, False


# The admin page keeps the overview's figures for 2 s (several admins, or one reloading, read the
# ledger once): each page's loads are spaced further apart than that, so every load is computed.
SPACING = 2.1


def measure(url: str, token: str, pages: dict[str, str], loads: int) -> dict[str, dict[str, Any]]:
    """Round after round, each page once, each round at least SPACING seconds after the last; the
    first round is a warm-up (the first statements compiled, the model list fetched)."""
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    paths = {name: path.replace("{day}", day) for name, path in pages.items()}
    times: dict[str, list[float]] = {name: [] for name in pages}
    sizes: dict[str, int] = {}
    from_header = False
    with httpx.Client(base_url=url, timeout=120, follow_redirects=True) as client:
        login(client, token)
        for attempt in range(loads + 1):
            round_began = time.monotonic()
            for name, path in paths.items():
                began = time.perf_counter()
                answer = client.get(path)
                elapsed = time.perf_counter() - began
                answer.raise_for_status()
                if "/login" in answer.url.path:
                    raise RuntimeError(f"{path} sent the bench back to the login page")
                if attempt == 0:
                    continue
                took, from_header = server_ms(answer, elapsed)
                times[name].append(took)
                sizes[name] = len(answer.content)
            time.sleep(max(0.0, SPACING - (time.monotonic() - round_began)))
    results: dict[str, dict[str, Any]] = {}
    for name, measured in times.items():
        measured.sort()
        results[name] = {
            "path": paths[name],
            "median_ms": statistics.median(measured),
            "p95_ms": measured[min(len(measured) - 1, math.ceil(0.95 * len(measured)) - 1)],
            "max_ms": measured[-1],
            "source": "Server-Timing" if from_header else "loopback response time",
            "html_bytes": sizes[name],
        }
    return results


def default_pages(rows: int) -> dict[str, str]:
    deep = max(1, rows // 10)  # 90% of the log newer than it: the request log is paged by id (keyset)
    return {
        "overview": "/admin",
        "models": "/admin/models",
        "keys": "/admin/keys",
        "settings": "/admin/settings",
        "usage, first page": "/admin/usage",
        "usage, model + errors": "/admin/usage?model=gpt-4o&status=error",
        "usage, key": "/admin/usage?key=alice-1",
        "usage, rare key + 5xx": "/admin/usage?key=ci-4&status=5xx",
        "usage, deep page": f"/admin/usage?before={deep}",
        "usage, key, deep page": f"/admin/usage?key=bob-2&before={deep}",
        "usage CSV, model, last day": "/admin/usage.csv?model=phi-4&since={day}",
    }


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="requests in the generated ledger")
    parser.add_argument("--loads", type=int, default=20, help="loads of each page measured (after one warm-up)")
    parser.add_argument("--ledger", type=Path, help="the SQLite file (default: a temporary one, kept)")
    parser.add_argument("--generate-only", action="store_true", help="write the ledger and stop")
    parser.add_argument("--page", action="append", metavar="NAME=PATH", help="pages to load instead of the defaults")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()

    ledger = options.ledger or Path(tempfile.gettempdir()) / f"oai2ollama-bench-{options.rows}.db"
    have, _ = counted(ledger)
    # (the server records its own start-up probes: a ledger may hold a few more rows than generated)
    if not options.rows <= have < options.rows + 1000 or revision(ledger) != head_revision():
        print(f"generating {options.rows:,} requests into {ledger} ...", flush=True)
        took = generate(ledger, options.rows)
        print(f"  {took:.1f} s", flush=True)
    requests, daily = counted(ledger)
    size = ledger.stat().st_size / 2**20
    print(f"ledger: {requests:,} requests, {daily:,} daily totals, {size:.0f} MiB", flush=True)
    if options.generate_only:
        return 0

    pages = default_pages(requests)
    if options.page:
        pages = dict(item.split("=", 1) for item in options.page)
    token = "bench-admin-token-" + os.urandom(8).hex()
    log = ledger.with_suffix(".server.log")
    with tiny_upstream() as upstream, oai2ollama(ledger, token, upstream, log) as url:
        results = measure(url, token, pages, options.loads)
    print(f"\n{'page':34} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'HTML KiB':>9}  measured as")
    for name, figures in results.items():
        print(
            f"{name:34} {figures['median_ms']:10.1f} {figures['p95_ms']:8.1f} {figures['max_ms']:8.1f} "
            f"{figures['html_bytes'] / 1024:9.1f}  {figures['source']}"
        )
    if options.json:
        summary = {"rows": requests, "daily_rows": daily, "loads": options.loads, "pages": results}
        options.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
