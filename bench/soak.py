"""Soak test: many concurrent streaming /api/chat requests through oai2ollama (one process, or --workers N).

    .venv/bin/python bench/soak.py                       # 1,000 streams at once, for 60 s
    .venv/bin/python bench/soak.py --concurrency 200 --duration 20 --json out.json

Three processes, all on 127.0.0.1: a slow canned upstream (aiohttp; each stream sends its chunks
at --rate per second), the proxy (`.venv/bin/oai2ollama`, started here as a subprocess, exactly
as a user starts it), and this script as the load generator. Each of --concurrency workers sends
streaming /api/chat requests one after another until --duration has passed; every stream is
checked: each NDJSON line parses, the text is the canned answer whole, the last line is
`done: true` with the upstream's token counts, and nothing else follows it.

The proxy keeps its usage ledger (a SQLite file in a temporary directory, or --database-url):
every request this run sends carries one user agent of its own, and once the proxy has stopped
(a graceful shutdown writes what is queued) the ledger must hold exactly one row with it per
request sent, none lost and none twice. `--database-url none` runs without a ledger.

Reported: errors (must be 0), streams completed and complete, the ledger's rows against the
requests sent, wall time, time to first line and per-stream duration (p50/p99), and the proxy's
peak RSS (VmHWM) and CPU time, summed over its processes with --workers. The exit status is 0
only with no errors and every request in the ledger. Everything started here is stopped on exit,
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
MODEL = "soak-model"
PROMPT_TOKENS = 12


def words(count: int) -> list[str]:
    return [f"tok{number} " for number in range(count)]


# ---------------------------------------------------------------- the canned upstream (own process)


def frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return frame(
        {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": [choice]}
    )


async def run_upstream(chunks: int, rate: float) -> None:
    """Serve /v1/models and a streamed /v1/chat/completions; print the port, then serve until stdin closes."""
    pause = 1 / rate
    tokens = [chunk({"content": word}) for word in words(chunks)]
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks, "total_tokens": PROMPT_TOKENS + chunks}
    ending = (
        chunk({}, "stop")
        + frame({"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1, "choices": [], "usage": usage})
        + b"data: [DONE]\n\n"
    )

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "soak"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk({"role": "assistant", "content": ""}))
        for token in tokens:
            await asyncio.sleep(pause)
            await response.write(token)
        await response.write(ending)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    # The parent closes our stdin when it is done (or dies): then stop.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# ---------------------------------------------------------------- the load generator


@dataclass
class Tally:
    started: int = 0
    complete: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_line: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)


async def one_stream(session: aiohttp.ClientSession, url: str, expected: str, chunks: int, tally: Tally) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story."}], "stream": True}
    began = time.perf_counter()
    tally.started += 1
    try:
        async with session.post(url + "/api/chat", json=body) as response:
            if response.status != 200:
                tally.errors[f"status {response.status}: {(await response.text())[:100]}"] += 1
                return
            text: list[str] = []
            last: dict[str, Any] | None = None
            first = True
            async for raw in response.content:
                if first:
                    tally.first_line.append(time.perf_counter() - began)
                    first = False
                if not raw.strip():
                    continue
                if last is not None and last.get("done"):
                    tally.errors["a line after done:true"] += 1
                    return
                last = json.loads(raw)
                if "error" in last:
                    tally.errors[f"error line: {last['error'][:100]}"] += 1
                    return
                text.append(last["message"]["content"])
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        tally.errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
        return
    if last is None or not last.get("done") or last.get("done_reason") != "stop":
        tally.errors["no done:true line"] += 1
    elif "".join(text) != expected:
        tally.errors["content incomplete or altered"] += 1
    elif (last.get("prompt_eval_count"), last.get("eval_count")) != (PROMPT_TOKENS, chunks):
        tally.errors["wrong token counts"] += 1
    else:
        tally.complete += 1
        tally.duration.append(time.perf_counter() - began)


async def load(url: str, concurrency: int, duration: float, chunks: int, stream_timeout: float, agent: str) -> Tally:
    tally = Tally()
    expected = "".join(words(chunks))
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=stream_timeout)
    headers = {"User-Agent": agent}  # the ledger's rows of this run: client = agent
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def worker(number: int) -> None:
            # Spread the first requests over a second, as real clients do not start in one instant.
            await asyncio.sleep(number / concurrency)
            while time.monotonic() < deadline:
                await one_stream(session, url, expected, chunks, tally)

        await asyncio.gather(*(worker(number) for number in range(concurrency)))
    return tally


# ---------------------------------------------------------------- processes


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS (kB) of a process, and its CPU seconds (user + system) × 100."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(rest.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        values["cpu_ticks"] = int(fields[11]) + int(fields[12])
    return values


def group_status(leader: int) -> dict[str, int]:
    """`proc_status` summed over the proxy's process group: its workers too, with `--workers`."""
    total: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != leader:
                continue
            if b"resource_tracker" in (entry / "cmdline").read_bytes():
                continue  # multiprocessing's helper, not a server process
            for name, value in proc_status(int(entry.name)).items():
                total[name] = total.get(name, 0) + value
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_open_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))  # the subprocesses inherit it
    return max(soft, target)


def stop(process: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the proxy exited with status {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/api/version") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the proxy did not answer within {seconds:g} s")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_upstream(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", "--chunks", str(args.chunks), "--rate", str(args.rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert upstream.stdout is not None
    line = upstream.stdout.readline()  # its port; empty if it died
    if not line.strip():
        stop(upstream)
        raise RuntimeError("the canned upstream did not start")
    return upstream, f"http://127.0.0.1:{int(line)}/v1"


def start_proxy(args: argparse.Namespace, upstream_url: str) -> tuple[subprocess.Popen[bytes], list[str], str]:
    port = free_port()
    command = [args.proxy, "--base-url", upstream_url, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--database-url", args.database_url, "--workers", str(args.workers)]
    proxy = subprocess.Popen(command, start_new_session=True, env={**os.environ, "OPENAI_API_KEY": "sk-soak"})
    return proxy, command, f"http://127.0.0.1:{port}"


async def soak(args: argparse.Namespace, proxy: subprocess.Popen[bytes], url: str) -> dict[str, Any]:
    await wait_ready(url, proxy)
    idle = group_status(proxy.pid)
    began = time.perf_counter()
    bound = args.duration + args.stream_timeout + 60
    tally = await asyncio.wait_for(
        load(url, args.concurrency, args.duration, args.chunks, args.stream_timeout, args.agent), bound
    )
    wall = time.perf_counter() - began
    busy = group_status(proxy.pid)
    if proxy.poll() is not None:
        tally.errors[f"the proxy exited with status {proxy.returncode}"] += 1
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "concurrency": args.concurrency,
        "chunks_per_stream": args.chunks,
        "chunks_per_second": args.rate,
        "duration_asked_s": args.duration,
        "streams_started": tally.started,
        "streams_complete": tally.complete,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors.most_common(10)),
        "wall_s": round(wall, 2),
        "streams_per_s": round(tally.complete / wall, 1),
        "lines_per_s": round(tally.complete * (args.chunks + 1) / wall),
        "first_line_p50_ms": round(percentile(tally.first_line, 0.5) * 1000, 1),
        "first_line_p99_ms": round(percentile(tally.first_line, 0.99) * 1000, 1),
        "stream_ideal_s": args.chunks / args.rate,
        "stream_p50_s": round(percentile(tally.duration, 0.5), 3),
        "stream_p99_s": round(percentile(tally.duration, 0.99), 3),
        "stream_max_s": round(max(tally.duration, default=float("nan")), 3),
        "proxy_rss_idle_mib": round(idle.get("VmRSS", 0) / 1024, 1),
        "proxy_peak_rss_mib": round(busy.get("VmHWM", 0) / 1024, 1),
        "proxy_cpu_s": round((busy.get("cpu_ticks", 0) - idle.get("cpu_ticks", 0)) / ticks, 1),
    }


async def ledger_rows(database_url: str, agent: str) -> int:
    """The rows the ledger holds for this run's requests (its user agent)."""
    import sqlalchemy as sa

    from oai2ollama.ledger.database import open_engine, resolve_url

    url = resolve_url(database_url)
    assert url is not None
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            query = sa.text("SELECT count(*) FROM requests WHERE client = :agent")
            return int((await connection.execute(query, {"agent": agent})).scalar_one())
    finally:
        await engine.dispose()


def report(result: dict[str, Any]) -> str:
    kinds = "".join(f"\n    {count} × {kind}" for kind, count in result["error_kinds"].items())
    ledger = result.get("ledger_rows")
    ledger_line = (
        "ledger: off\n"
        if ledger is None
        else f"ledger: {ledger} row(s) for {result['streams_started']} request(s) sent"
        f" ({'every request, once' if ledger == result['streams_started'] else 'MISMATCH'})\n"
    )
    return (
        f"proxy: {result['command']}\n"
        f"load: {result['concurrency']} concurrent streaming /api/chat requests for {result['duration_asked_s']:g} s, "
        f"{result['chunks_per_stream']} chunks each at {result['chunks_per_second']:g}/s "
        f"(a stream lasts {result['stream_ideal_s']:g} s at best)\n"
        f"errors: {result['errors']}{kinds}\n"
        f"streams complete: {result['streams_complete']} of {result['streams_started']} started\n"
        f"{ledger_line}"
        f"wall time: {result['wall_s']} s ({result['streams_per_s']} streams/s, {result['lines_per_s']} lines/s)\n"
        f"first line: p50 {result['first_line_p50_ms']} ms, p99 {result['first_line_p99_ms']} ms\n"
        f"stream duration: p50 {result['stream_p50_s']} s, p99 {result['stream_p99_s']} s, "
        f"max {result['stream_max_s']} s\n"
        f"proxy RSS: {result['proxy_rss_idle_mib']} MiB idle, peak {result['proxy_peak_rss_mib']} MiB (VmHWM); "
        f"CPU {result['proxy_cpu_s']} s"
    )


def interrupted(signum: int, frame: Any) -> None:
    """SIGTERM ends the run as Ctrl-C does, so that `soak` stops its subprocesses on the way out."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=1000, help="streams open at once (default 1000)")
    parser.add_argument("--duration", type=float, default=60, help="seconds to keep starting streams (default 60)")
    parser.add_argument("--chunks", type=int, default=40, help="content chunks per stream (default 40)")
    parser.add_argument("--rate", type=float, default=20, help="chunks per second per stream (default 20)")
    parser.add_argument("--stream-timeout", type=float, default=60, help="seconds one stream may take (default 60)")
    parser.add_argument("--proxy", default=str(REPO / ".venv" / "bin" / "oai2ollama"), help="the proxy command")
    parser.add_argument("--workers", type=int, default=1, help="the proxy's --workers (default 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--database-url", help="the proxy's ledger (default: a SQLite file in a temporary directory; none: no ledger)"
    )
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # the upstream and the load generator should not be what limits the run

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.serve_upstream:
        asyncio.run(run_upstream(args.chunks, args.rate))
        return
    signal.signal(signal.SIGTERM, interrupted)
    limit = raise_open_file_limit(max(4 * args.concurrency + 1024, 8192))
    scratch = tempfile.TemporaryDirectory(prefix="oai2ollama-soak.")
    args.database_url = args.database_url or f"sqlite:///{scratch.name}/ledger.db"
    args.agent = f"oai2ollama-soak/{uuid.uuid4().hex}"
    upstream = proxy = None
    try:
        upstream, upstream_url = start_upstream(args)
        proxy, command, url = start_proxy(args, upstream_url)
        result = {"command": " ".join(command), "open_file_limit": limit, **asyncio.run(soak(args, proxy, url))}
        stop(proxy, grace=60.0)  # a graceful shutdown: the ledger writes what is queued
        if args.database_url.strip().lower() != "none":
            result["ledger_rows"] = asyncio.run(ledger_rows(args.database_url, args.agent))
    except KeyboardInterrupt:
        print("soak: interrupted; the proxy and the upstream are stopped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        stop(proxy)
        if upstream is not None and upstream.stdin is not None:
            with contextlib.suppress(OSError):
                upstream.stdin.close()
        stop(upstream)
        scratch.cleanup()
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    whole = result["errors"] == 0 and result["streams_complete"] == result["streams_started"]
    recorded = result.get("ledger_rows", result["streams_started"]) == result["streams_started"]
    raise SystemExit(0 if whole and recorded else 1)


if __name__ == "__main__":
    main()
