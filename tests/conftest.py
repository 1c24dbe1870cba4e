from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.upstream import Upstreams

from .fakes import API_KEY, BASE_URL, FakeUpstream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:11434") as http:
        yield http


@pytest.fixture
async def ollama_client(app) -> AsyncIterator[ollama.AsyncClient]:  # type: ignore[no-untyped-def]
    yield ollama.AsyncClient(host="http://127.0.0.1:11434", transport=httpx.ASGITransport(app))


@pytest.fixture
async def openai_client(app) -> AsyncIterator[openai.AsyncOpenAI]:  # type: ignore[no-untyped-def]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app))
    async with openai.AsyncOpenAI(base_url="http://127.0.0.1:11434/v1", api_key="client-key", http_client=http) as c:
        yield c
