"""The Dockerfile's health check, run exactly as Docker runs it, against a real server process.

No Docker engine is needed: the probe is a command inside the image; here it runs beside a server
started the way the image starts it (HOST=0.0.0.0, settings from the environment).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"


def health_check_command() -> list[str]:
    text = DOCKERFILE.read_text()
    found = re.search(r"^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])$", text, re.MULTILINE)
    assert found, "the Dockerfile has a HEALTHCHECK with an exec-form CMD"
    command: list[str] = json.loads(found.group(1))
    return [sys.executable if part == "python" else part for part in command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=[{}, {"OAI2OLLAMA_SERVER_API_KEYS": "k-one,k-two"}], ids=["no-keys", "keys"])
def container_like(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    environ = {
        **os.environ,
        "HOST": "0.0.0.0",
        "PORT": str(port),
        # Nothing listens here: the health check must not depend on the upstream.
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        **request.param,
    }
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "oai2ollama"], env=environ, cwd=tmp_path, stderr=output)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            pytest.fail(f"the server did not start: {log.read_text()}")
        yield environ
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_health_check_passes_with_and_without_keys(container_like: dict[str, str]) -> None:
    probe = subprocess.run(health_check_command(), env=container_like, capture_output=True, timeout=10)
    assert probe.returncode == 0, probe.stderr.decode()


def test_the_health_check_fails_when_nothing_answers() -> None:
    environ = {**os.environ, "PORT": str(free_port())}
    probe = subprocess.run(health_check_command(), env=environ, capture_output=True, timeout=10)
    assert probe.returncode != 0
