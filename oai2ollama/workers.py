"""Several server processes on one port (`--workers N`): a small supervisor.

The supervisor holds the port and starts N worker processes (multiprocessing's `spawn`: fresh
interpreters, nothing inherited but the environment). Each worker receives the parsed `Settings`
through multiprocessing's pipe, never on a command line, listens on the port with a socket of its
own (SO_REUSEPORT: the kernel spreads new connections evenly among the workers), builds its own app
with `create_app` and serves it with the same graceful shutdown as a single process (`cli.serve`).

- **Stopping**: SIGTERM or SIGINT to the supervisor is passed to every worker as SIGTERM; each stops
  accepting, gives open answers `--shutdown-grace` seconds, ends the rest with a last error line and
  exits 0; the supervisor then exits 0 (non-zero if a worker did).
- **A worker that dies** (killed, out of memory) is replaced, unless it died within `EARLY_SECONDS`
  of starting: then it cannot start (a database it cannot reach is not such a reason; a broken
  environment is), and the supervisor stops the others and exits with status 3.
- **Metrics**: unless `PROMETHEUS_MULTIPROC_DIR` is set already, the supervisor makes a temporary
  directory for it, which every worker writes its values to (see `metrics`) and removes it at exit;
  /metrics from any worker shows the whole server's counts.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from typing import Any

from .config import Settings

log = logging.getLogger("oai2ollama")

EARLY_SECONDS = 5.0
BACKLOG = 2048  # uvicorn's default
EXIT_STARTUP_FAILURE = 3
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A socket on `host:port` with SO_REUSEPORT: every worker listens on one of its own, and the kernel
    spreads new connections evenly among them. (One socket shared by all would let whichever worker
    wakes first accept a whole burst of connections, and keep-alive clients would stay on it: with
    wrk's 32 connections, all 32 went to one worker.)"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on accepted
    # sockets whose protocol says TCP, and accepted sockets take the listener's. With 0, every
    # keep-alive answer waited ~40 ms for the client's delayed ACK (two workers served a third of one).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def run_worker(settings: Settings, options: dict[str, Any]) -> None:
    """One worker process: its own app on its own socket."""
    # Told to stop before serving (uvicorn installs its handlers once it runs): nothing is open yet.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_before_serving)
    from .app import create_app
    from .cli import configure_logging, serve

    configure_logging(settings)
    sock = listening_socket(settings.host, settings.port)
    app = create_app(settings)
    serve(app, shutdown_grace=settings.shutdown_grace, sockets=[sock], **options)


def _stop_before_serving(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def supervise(settings: Settings, options: dict[str, Any]) -> int:
    """Run `settings.workers` workers until told to stop; the exit status."""
    try:
        # Bound, never listening (so no connection waits on it): a port another program holds stops
        # us here, with one line, and no other program can take the port while the workers run.
        sock = listening_socket(settings.host, settings.port, listen=False)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        return EXIT_STARTUP_FAILURE
    own_metrics_dir = not os.environ.get(METRICS_DIR)
    if own_metrics_dir:
        os.environ[METRICS_DIR] = tempfile.mkdtemp(prefix="oai2ollama-metrics-")
    metrics_dir = os.environ[METRICS_DIR]
    context = multiprocessing.get_context("spawn")
    workers: dict[int, tuple[Any, float]] = {}  # sentinel → process, started
    stopping = False
    status = 0

    def start() -> None:
        process = context.Process(target=run_worker, args=(settings, options), name="oai2ollama worker")
        process.start()
        workers[process.sentinel] = (process, time.monotonic())

    def stop(signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in workers.values():
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(settings.workers):
            start()
        log.info(
            "started %d workers on %s:%d (pids %s)",
            settings.workers,
            settings.host,
            settings.port,
            " ".join(str(process.pid) for process, _ in workers.values()),
        )
        while workers:
            for sentinel in wait(list(workers), timeout=1.0):
                process, started = workers.pop(sentinel)  # type: ignore[call-overload]
                process.join()
                _forget_metrics(metrics_dir, process.pid)
                code = process.exitcode or 0
                if stopping:
                    # Killed by our SIGTERM before it could handle it (still starting): nothing was open.
                    if code and code != -signal.SIGTERM:
                        status = max(status, code if code > 0 else 1)
                elif time.monotonic() - started < EARLY_SECONDS:
                    log.error("a worker exited at start-up (status %s): stopping", process.exitcode)
                    status = EXIT_STARTUP_FAILURE
                    stop()
                else:
                    log.warning("worker %d exited (status %s): starting another", process.pid, process.exitcode)
                    start()
    finally:
        stop()
        for process, _ in workers.values():
            process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if own_metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _forget_metrics(directory: str, pid: int | None) -> None:
    """A worker that was killed never removed its live gauges: they leave the sums now."""
    if pid is not None:
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, directory)
