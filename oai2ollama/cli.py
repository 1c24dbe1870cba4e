"""The command line: the only place that reads argv and the environment, and starts the server."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import CliApp

from . import __version__
from .config import Settings

EXIT_USAGE = 2


def fail(message: str) -> None:
    print(f"oai2ollama: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def load_settings(argv: Sequence[str]) -> Settings:
    try:
        settings = CliApp.run(Settings, cli_args=list(argv))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "-".join(str(part) for part in error["loc"]).replace("_", "-") or "settings"
        fail(f"{where}: {error['msg']}")
        raise
    if settings.capacities:
        print("oai2ollama: warning: 'capacities' is a misspelling; use 'capabilities'", file=sys.stderr)
    if not settings.base_url and not settings.config:
        fail("base-url is required (flag --base-url or env OPENAI_BASE_URL)")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        print(f"oai2ollama {__version__}")
        return
    settings = load_settings(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from .app import create_app

    try:
        app = create_app(settings)
    except ValueError as exc:
        fail(str(exc))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=5,
    )
