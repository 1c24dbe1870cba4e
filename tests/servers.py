"""Real processes on loopback for the workers' and replicas' tests: a canned OpenAI-compatible
upstream on a thread (reachable by server processes, unlike the in-process fakes), `oai2ollama`
itself as a subprocess, and nginx in front of several of them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from .fakes import closed_port

BIN = Path(sys.executable).parent
MODELS = ("model-a", "model-b")
RECEIVED: dict[str, list[int]] = {}  # chat requests each canned upstream (by base URL) has received


def received(upstream: str) -> int:
    return RECEIVED[upstream][0]


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.0  # seconds each answer waits, so that requests are open when a server is stopped

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            data = [{"id": name, "object": "model", "owned_by": "test"} for name in MODELS]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._send(404, b'{"error": {"message": "no such route"}}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "no such route"}}')
            return
        if body.get("model") not in MODELS:
            self._send(404, json.dumps({"error": {"message": f"model {body.get('model')!r} not found"}}).encode())
            return
        with self.lock:
            self.received[0] += 1
        if self.delay:
            time.sleep(self.delay)
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        base = {"id": "c1", "created": 1, "model": body["model"]}
        if body.get("stream"):
            chunks = [
                {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": usage,
                },
            ]
            text = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
            self._send(200, text.encode(), "text/event-stream")
            return
        message = {"role": "assistant", "content": "Hi"}
        answer = {**base, "object": "chat.completion", "choices": [{"index": 0, "message": message}], "usage": usage}
        answer["choices"][0]["finish_reason"] = "stop"
        self._send(200, json.dumps(answer).encode())


@contextmanager
def canned_upstream(delay: float = 0.0) -> Iterator[str]:
    """An OpenAI-compatible upstream serving `MODELS` on a free loopback port; its base URL."""
    handler = type("Upstream", (_Upstream,), {"delay": delay, "received": [0], "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    RECEIVED[url] = handler.received
    try:
        yield url
    finally:
        RECEIVED.pop(url, None)
        server.shutdown()
        server.server_close()


def server_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OPENAI_", "OAI2OLLAMA_"))}
    env.update(extra)
    return env


class Server:
    """`oai2ollama` as a user starts it, on a free loopback port, its output in a file."""

    def __init__(self, directory: Path, upstream: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"server-{self.port}.log"
        command = [str(BIN / "oai2ollama"), "--base-url", upstream, "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [*command, *args], cwd=directory, env=env or server_env(), stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(f"{self.url}/api/tags", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server did not start within {timeout} s: {self.output()}"
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def nginx_binary() -> str | None:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        message = "nginx is not installed (apt-get install -y nginx)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextmanager
def nginx(directory: Path, upstreams: list[str]) -> Iterator[str]:
    """nginx on a free loopback port balancing over `upstreams` (host:port), retrying a request on the
    next one when a connection fails (as a Kubernetes Service's endpoints or Compose's nginx do)."""
    binary = nginx_binary()
    port = closed_port()
    directory.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(f"        server {address} max_fails=0;" for address in upstreams)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream oai2ollama {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://oai2ollama;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            # A replica that is stopping refuses or resets connections it never read a request from:
            # safe to retry, POST included.
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 0;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""
    (directory / "nginx.conf").write_text(conf)
    process = subprocess.Popen(
        [binary, "-e", str(directory / "error.log"), "-p", str(directory), "-c", str(directory / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (directory / "error.log").read_text()
            try:
                httpx.get(url + "/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
