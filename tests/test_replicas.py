"""Replicas: two `oai2ollama` processes sharing one real PostgreSQL, behind a real nginx, as a
Kubernetes Service or the Compose file (deploy/) puts them. Skipped without PostgreSQL or nginx,
except with CI=true (`.ci/run` installs both)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .databases import PostgresServer
from .servers import BIN, Server, canned_upstream, nginx, server_env

CHAT = {"model": "model-a", "messages": [{"role": "user", "content": "hello"}], "stream": False}


@pytest.fixture
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


@pytest.fixture
def upstream() -> Iterator[str]:
    with canned_upstream(delay=0.02) as url:
        yield url


@pytest.fixture
def replicas(tmp_path: Path, database: str, upstream: str) -> Iterator[tuple[Server, Server]]:
    first = Server(tmp_path, upstream, "--database-url", database, "--shutdown-grace", "10")
    second = Server(tmp_path, upstream, "--database-url", database, "--shutdown-grace", "10")
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second
    finally:
        for server in (first, second):
            server.stop()


def models_in_ps(url: str) -> list[str]:
    return sorted(model["name"] for model in httpx.get(f"{url}/api/ps", timeout=10).json()["models"])


def test_api_ps_agrees_between_replicas(replicas: tuple[Server, Server]) -> None:
    first, second = replicas
    assert models_in_ps(first.url) == models_in_ps(second.url) == []
    assert httpx.post(f"{first.url}/api/chat", json=CHAT, timeout=10).status_code == 200
    # Asked at once, the other replica lists the model the first one just used, with the same expiry.
    assert models_in_ps(second.url) == ["model-a:latest"]
    [on_first] = httpx.get(f"{first.url}/api/ps").json()["models"]
    [on_second] = httpx.get(f"{second.url}/api/ps").json()["models"]
    assert on_first == on_second
    # A request the upstream refuses (an unknown model) leaves no trace on either.
    refused = httpx.post(f"{second.url}/api/chat", json={**CHAT, "model": "no-such-model"}, timeout=10)
    assert refused.status_code == 404
    time.sleep(0.2)  # its use is written and taken back in the background
    assert models_in_ps(first.url) == models_in_ps(second.url) == ["model-a:latest"]
    # `ollama stop` through the second unloads it from both.
    stop = httpx.post(f"{second.url}/api/chat", json={"model": "model-a", "messages": [], "keep_alive": 0})
    assert stop.status_code == 200 and stop.json()["done_reason"] == "unload"
    assert models_in_ps(first.url) == models_in_ps(second.url) == []
    # And a use right after the unload, through the first, is listed again (it forgot what it had written).
    time.sleep(1.2)
    assert httpx.post(f"{first.url}/api/chat", json=CHAT, timeout=10).status_code == 200
    assert models_in_ps(second.url) == ["model-a:latest"]


def test_usage_from_both_replicas_in_one_report(replicas: tuple[Server, Server], database: str) -> None:
    first, second = replicas
    for index in range(10):
        server = first if index < 4 else second
        assert httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=10).status_code == 200
    for server in (first, second):
        assert server.stop() == 0  # each writes what it has queued before it exits
    command = [str(BIN / "oai2ollama"), "usage", "--json", "--by", "model", "--database-url", database]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=server_env())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [chats] = [group for group in report["groups"] if group["model"] == "model-a"]  # besides /api/tags
    assert (chats["model"], chats["requests"], chats["errors"]) == ("model-a", 10, 0)
    assert (chats["input_tokens"], chats["output_tokens"]) == (110, 70)


def test_stopping_a_replica_mid_load_loses_no_request(replicas: tuple[Server, Server], tmp_path: Path) -> None:
    first, second = replicas
    addresses = [f"127.0.0.1:{server.port}" for server in replicas]
    statuses: Counter[str] = Counter()
    stop_load = threading.Event()

    def client(streamed: bool) -> None:
        with httpx.Client(timeout=30) as session:
            while not stop_load.is_set():
                try:
                    answer = session.post(f"{balancer}/api/chat", json={**CHAT, "stream": streamed})
                    ok = answer.status_code == 200 and '"done":true' in answer.text.replace(" ", "")
                    statuses["ok" if ok else f"{answer.status_code} {answer.text[:200]}"] += 1
                except httpx.HTTPError as exc:
                    statuses[f"{type(exc).__name__}"] += 1

    with nginx(tmp_path / "nginx", addresses) as balancer:
        threads = [threading.Thread(target=client, args=(index % 2 == 0,)) for index in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        before = statuses["ok"]
        assert first.stop() == 0  # SIGTERM mid-load: in-flight answers finish, new connections go to the other
        time.sleep(1.5)
        stop_load.set()
        for thread in threads:
            thread.join(30)
    assert before > 0 and statuses["ok"] > before
    assert set(statuses) == {"ok"}, statuses
    assert second.process.poll() is None


def keys_cli(database: str, *args: str) -> str:
    command = [str(BIN / "oai2ollama"), "keys", *args, "--database-url", database]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=server_env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def tags_status(server: Server, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}/api/tags", headers=headers, timeout=10).status_code


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """How long `condition` took to hold, failing after `seconds`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - began


def test_a_key_added_and_revoked_through_the_cli_is_seen_by_both_within_2_s(
    replicas: tuple[Server, Server], database: str
) -> None:
    first, second = replicas
    assert tags_status(first, None) == tags_status(second, None) == 200  # no key anywhere yet
    key = keys_cli(database, "add", "alice").strip().splitlines()[-1]
    for server in (first, second):
        within(2, lambda server=server: tags_status(server, key) == 200 and tags_status(server, None) == 401)
    assert tags_status(first, "sk-not-a-key") == tags_status(second, "sk-not-a-key") == 401
    keys_cli(database, "revoke", "alice")
    for server in (first, second):
        within(2, lambda server=server: tags_status(server, key) in (401, 403))
