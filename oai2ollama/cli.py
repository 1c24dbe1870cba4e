"""The command line: the only place that reads argv and the environment, and starts the server."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import socket
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Union, get_args, get_origin

from pydantic import SecretStr, ValidationError
from pydantic_settings import CliApp, CliSettingsSource, SettingsError

from . import __version__
from .config import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3  # as uvicorn.run exits when it cannot bind
# After the grace period, streams get their last line; this long again, then uvicorn cancels what is left.
SHUTDOWN_BACKSTOP = 5.0

log = logging.getLogger("oai2ollama")


def fail(message: str) -> NoReturn:
    print(f"oai2ollama: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def command_database(setting: str | None, off: str) -> URL:
    """The database a subcommand (`keys`, `usage`, `admin-token`) works on, from the server's setting;
    a bad or `none` setting stops it with one line (`off` says why `none` cannot do)."""
    from .ledger.database import resolve_url

    try:
        url = resolve_url(setting)
    except ValueError as exc:
        fail(f"database-url: {exc}")
    if url is None:
        fail(off)
    return url


def warn(message: str) -> None:
    print(f"oai2ollama: warning: {message}", file=sys.stderr)


def describe_invalid(exc: ValidationError) -> str:
    """One line naming the first bad setting as its flag is spelt (`base-url`, `capabilities`)."""
    error = exc.errors()[0]
    # List positions (`capabilities.0`) mean nothing to a user; the setting's name does.
    names = [str(part) for part in error["loc"] if not isinstance(part, int)]
    where = "-".join(names).replace("_", "-").lower() or "settings"
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    secret = (
        "key" in where or "database" in where or "token" in where
    )  # never echo a secret back (a URL may hold a password)
    if isinstance(given, str | int | float) and not secret and repr(given) not in message:
        message += f" (got {given!r})"
    return f"{where}: {message}"


def describe_unparsable(exc: SettingsError) -> str:
    """One line for a value that could not even be parsed (argparse's complaints, bad JSON)."""
    text = str(exc)
    if text.startswith("error parsing CLI: "):
        return text.removeprefix("error parsing CLI: ") + "; see --help"
    field = next((name for name in Settings.model_fields if re.search(rf"\b{name}\b", text)), None)
    if field is None:
        return text
    where = field.replace("_", "-")
    if "EnvSettingsSource" in text or "DotEnvSettingsSource" in text:
        return f"{where}: cannot parse the value from the environment or .env ({exc.__cause__ or 'invalid'})"
    return f"{where}: {text.split(': ', 1)[-1]}"


# Settings given in sizes ("128k", "64m") rather than plain integers.
_SIZES = frozenset({"context_length", "max_body_size"})
# pydantic-settings says "(default: null)" and "(default: [])" where nothing is set by default.
_EMPTY_DEFAULT = re.compile(r" \(default: (?:null|\[\]|\{\})\)$")


def value_kind(annotation: Any) -> str | None:
    """What to type after a flag, as `--help` shows it: `str`, `int`, `list`, `JSON`, …

    pydantic-settings names the Python type (`SecretStr`, `dict[str,int]`, `list[Capability]`),
    which tells a user nothing; None keeps its rendering (choices such as `{info,debug}`).
    """
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else annotation
    origin = get_origin(annotation)
    if origin is Literal:
        return None
    if origin is list or annotation is list:
        return "list"
    if origin is dict or annotation is dict:
        return "JSON"
    if annotation is SecretStr:
        return "str"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    return annotation.__name__ if isinstance(annotation, type) else None


def _size_text(size: int) -> str:
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _cli_source() -> CliSettingsSource[Settings]:
    """The argument parser pydantic-settings builds from `Settings`, with help that reads plainly."""
    source = CliSettingsSource(Settings, cli_exit_on_error=False, case_sensitive=False)
    parser = source.root_parser
    fields = {name: name for name in Settings.model_fields}
    fields |= {str(alias).lower(): name for name, info in Settings.model_fields.items() for alias in _aliases(info)}
    for action in parser._actions:  # argparse has no public list of its arguments
        name = fields.get(action.dest)
        if name is None:
            continue
        info = Settings.model_fields[name]
        kind = "size" if name in _SIZES else value_kind(info.annotation)
        if action.metavar is not None and kind is not None:
            action.metavar = kind
        if action.help:
            action.help = _EMPTY_DEFAULT.sub("", action.help)
            if name in _SIZES and isinstance(info.default, int):
                action.help = action.help.replace(
                    f"(default: {info.default})", f"(default: {_size_text(info.default)})"
                )
    parser.add_argument(
        "--version", action="version", version=f"oai2ollama {__version__}", help="print the version and exit"
    )
    return source


def _aliases(info: Any) -> list[Any]:
    alias = info.validation_alias
    return list(getattr(alias, "choices", [alias] if isinstance(alias, str) else []))


def load_settings(argv: Sequence[str]) -> Settings:
    try:
        # Without exit-on-error, argparse's complaints (unknown flag, missing value) come back as a
        # SettingsError, so every kind of bad input is reported the same way: one line, status 2.
        settings = CliApp.run(Settings, cli_args=list(argv), cli_settings_source=_cli_source())
    except ValidationError as exc:
        fail(describe_invalid(exc))
    except SettingsError as exc:
        fail(describe_unparsable(exc))
    if settings.capacities:
        warn("'capacities' is a misspelling kept for compatibility; use 'capabilities' (-c)")
    if not settings.base_url and not settings.config:
        fail("base-url is required (flag --base-url or env OPENAI_BASE_URL)")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # Subcommands come first; the server, which takes no positional argument, stays the default.
    if argv and argv[0] == "usage":
        from .usage_cli import main as usage

        usage(argv[1:])
        return
    if argv and argv[0] == "keys":
        from .keys_cli import main as keys

        keys(argv[1:])
        return
    if argv and argv[0] == "admin-token":
        from .admin.token_cli import main as admin_token

        admin_token(argv[1:])
        return
    if "--version" in argv:
        print(f"oai2ollama {__version__}")
        return
    settings = load_settings(argv)
    configure_logging(settings)

    from .configuration import assemble
    from .guards import open_to_all, policy_from
    from .ledger.database import OFF

    try:
        policy = policy_from(settings, assemble(settings).keys)  # a bad config file stops us here
    except ValueError as exc:
        fail(str(exc))
    # With a database, its keys are known only once it is read: each app warns then (app.py).
    database = settings.database_url is None or settings.database_url.get_secret_value().strip().lower() != OFF
    warning = None if database else open_to_all(settings, policy)
    if warning is not None:
        warn(warning)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,  # nothing reads the client address; X-Forwarded-* would only cost time
        # asyncio's loop, not uvloop: at 1,000 concurrent streams (bench/soak.py) uvloop left a
        # few hundred connections waiting in the accept queue for tens of seconds; asyncio served
        # them all at once, and the benchmark's figures are the same with either.
        "loop": "asyncio",
        "http": "auto",
    }
    if settings.workers > 1:
        from .workers import supervise

        if not database:
            warn(
                f"{settings.workers} workers without a database (--database-url none): each process keeps its "
                "own /api/ps, runtime keys and model edits, so answers depend on which process a client reaches"
            )
        raise SystemExit(supervise(settings, options))

    from .app import create_app

    try:
        app = create_app(settings)
    except ValueError as exc:
        fail(str(exc))
    serve(app, shutdown_grace=settings.shutdown_grace, **options)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every upstream request at INFO; our request log already has one line per request.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


# The young generation is collected once this many more objects live than at its last collection.
# Python's 700 is less than what the requests in flight hold (2,000-5,000 objects at 32 connections),
# so under load a collection ran every ~7 requests and walked them all: ~30 µs a request, about 5% of
# the serving thread on the `/v1` relay (timed with `gc.callbacks`). At 10,000: about one a second.
# It holds only while requests leave no reference cycles: what a cycle holds (a relayed answer's last
# 16 KiB, once) then waits for the collector, and 32 long streams grew the server to ~900 MiB.
YOUNG_GENERATION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Take what start-up built (modules, the app, its routes, the database's schema: ~150,000
    objects) out of the garbage collector's sight. A full collection, which the objects every request
    leaves behind set off every second or so, walks all of them: 60-80 ms each time, about a tenth of
    the server's time under load. They live as long as the process, so the collector has nothing to
    find among them; reference counting still frees any that go. Then collect the young generation
    less often (`YOUNG_GENERATION_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def serve(app: Any, *, shutdown_grace: float, sockets: list[socket.socket] | None = None, **options: Any) -> None:
    """Run `app` as `uvicorn.run` would, with `options` for `uvicorn.Config` (on `sockets` already bound,
    when a supervisor shares them among workers); once told to stop, the server gives open answers
    `shutdown_grace` seconds, then ends each with a last error line."""
    import uvicorn

    in_flight = app.state.in_flight

    class GracefulServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                settle_heap()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            timer = asyncio.get_running_loop().call_later(shutdown_grace, end_open_answers)
            try:
                await super().shutdown(sockets)
            finally:
                timer.cancel()

    def end_open_answers() -> None:
        count = in_flight.end_all()
        if count:
            log.warning("shutdown grace of %g s is over: ending %d open answer(s)", shutdown_grace, count)

    config = uvicorn.Config(app, timeout_graceful_shutdown=shutdown_grace + SHUTDOWN_BACKSTOP, **options)
    server = GracefulServer(config)
    # uvicorn restores the signal handlers it found and raises a caught SIGTERM/SIGINT again once it
    # has shut down, so that the default handler kills the process. A graceful stop is a success
    # (exit status 0, as Docker and Kubernetes expect), so the handlers it finds ignore them.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server.run(sockets=sockets)
    if not server.started:
        raise SystemExit(EXIT_STARTUP_FAILURE)
