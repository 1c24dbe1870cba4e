"""The real-browser tier: headless Chromium from Debian's packages (`apt-get install chromium`),
driven by Playwright's Python package, against a whole oai2ollama on loopback (see `stack.py`).

Playwright never downloads a browser here: it launches the system's Chromium
(`/usr/bin/chromium`, or `$CHROMIUM`). Without Chromium or Playwright the tier is skipped, except
in CI (`CI=true`), where that is a failure: `.ci/run` installs Chromium.

The browser and the server are started once per module; each test gets a fresh browser context
(no cookies, no storage), so a logged-in session never leaks from one test into the next.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack, running_stack

# What Chromium needs here: no sandbox as root, no GPU, and none of its background connections
# (the machine's closed network refuses them, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Chromium)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """`$CHROMIUM`, else Debian's `chromium` on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = chromium_path()
    if path is None:
        _unavailable("Chromium is not installed (apt-get install -y chromium, or set CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[test]')")
    return str(path)


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, chromium_executable: str) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("browser")) as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context (its own cookies). A confirmation the page asks for is accepted, as
    a person would; an alert or a prompt is what an injected script does, and fails the test."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    opened = context.new_page()
    alerts: list[str] = []

    def answer(dialog: Any) -> None:
        if dialog.type == "confirm":
            dialog.accept()
        else:
            alerts.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

    opened.on("dialog", answer)
    opened.alerts = alerts  # read by the tests that check no script ran
    try:
        yield opened
    finally:
        context.close()
    assert not alerts, f"a script opened a dialog: {alerts}"
