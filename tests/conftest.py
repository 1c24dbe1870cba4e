from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.upstream import Upstreams

from .databases import PostgresServer, postgres_bin, run_postgres
from .fakes import API_KEY, BASE_URL, FakeUpstream

PROXY_URL = "http://127.0.0.1:11434"

# A client of an app of one's own: `await client_for(settings)`, or with `upstreams` to reach a
# real socket; everything opened is closed after the test.
ClientFor = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Servers started by tests (in process or not) keep their default ledger here, not in the
    user's own ~/.local/share."""
    directory = tmp_path_factory.mktemp("xdg-data")
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(directory)
    yield directory
    if before is None:
        del os.environ["XDG_DATA_HOME"]
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin = postgres_bin()
    if bin is None:
        message = "PostgreSQL is not installed (apt-get install -y postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield from run_postgres(bin)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each engine: a SQLite file, or a database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the app's settings."""
    return {}


@pytest.fixture
def settings(settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {"base_url": BASE_URL, "api_key": API_KEY, "models_ttl": 60.0}
    values.update(settings_overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def upstreams(fake: FakeUpstream) -> AsyncIterator[Upstreams]:
    client = Upstreams(transport=fake.transport())
    yield client
    await client.aclose()


@pytest.fixture
def app(settings: Settings, upstreams: Upstreams):  # type: ignore[no-untyped-def]
    return create_app(settings, upstreams=upstreams)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL) as http:
        yield http


@pytest.fixture
async def client_for(fake: FakeUpstream) -> AsyncIterator[ClientFor]:
    async with AsyncExitStack() as stack:

        async def make(settings: Settings, upstreams: Upstreams | None = None) -> httpx.AsyncClient:
            if upstreams is None:
                upstreams = Upstreams(transport=fake.transport())
            stack.push_async_callback(upstreams.aclose)
            app = create_app(settings, upstreams=upstreams)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PROXY_URL)
            )

        yield make


@pytest.fixture
async def ollama_client(app) -> AsyncIterator[ollama.AsyncClient]:  # type: ignore[no-untyped-def]
    yield ollama.AsyncClient(host=PROXY_URL, transport=httpx.ASGITransport(app))


@pytest.fixture
async def openai_for(app: Any) -> AsyncIterator[Callable[[str], openai.AsyncOpenAI]]:
    """The official OpenAI client with a given API key, talking to `app` in process."""
    async with AsyncExitStack() as stack:

        def make(key: str) -> openai.AsyncOpenAI:
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app))
            client = openai.AsyncOpenAI(base_url=f"{PROXY_URL}/v1", api_key=key, http_client=http, max_retries=0)
            stack.push_async_callback(client.close)
            return client

        yield make


@pytest.fixture
async def openai_client(openai_for: Callable[[str], openai.AsyncOpenAI]) -> openai.AsyncOpenAI:
    return openai_for("client-key")


@pytest.fixture
async def anthropic_for(app: Any) -> AsyncIterator[Callable[[str], anthropic.AsyncAnthropic]]:
    """The official Anthropic client with a given API key, talking to `app` in process."""
    async with AsyncExitStack() as stack:

        def make(key: str) -> anthropic.AsyncAnthropic:
            # This SDK is built on httpx2, so its in-process transport comes from httpx2 as well.
            http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app))
            client = anthropic.AsyncAnthropic(base_url=PROXY_URL, api_key=key, http_client=http, max_retries=0)
            stack.push_async_callback(client.close)
            return client

        yield make


@pytest.fixture
async def anthropic_client(anthropic_for: Callable[[str], anthropic.AsyncAnthropic]) -> anthropic.AsyncAnthropic:
    return anthropic_for("k")
