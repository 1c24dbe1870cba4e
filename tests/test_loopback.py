"""The whole stack on loopback: uvicorn + lifespan-owned client + a slow upstream server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from oai2ollama.app import create_app
from oai2ollama.config import Settings

from .fakes import chunk, usage_chunk
from .loopback import serve

pytestmark = pytest.mark.anyio


class SlowUpstream:
    """Streams one chunk, then waits for `release`; notes when its stream is torn down."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ]
        )

    async def models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "slow", "object": "model"}]})

    async def chat(self, request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"data: " + json.dumps(chunk({"role": "assistant", "content": "first"})).encode() + b"\n\n"
                try:
                    await asyncio.wait_for(self.release.wait(), timeout=10)
                except TimeoutError:
                    return
                yield b"data: " + json.dumps(chunk({"content": " second"}, "stop")).encode() + b"\n\n"
                yield b"data: " + json.dumps(usage_chunk()).encode() + b"\n\ndata: [DONE]\n\n"
            finally:
                self.closed.set()

        return StreamingResponse(body(), media_type="text/event-stream")


@pytest.fixture
async def stack() -> AsyncIterator[tuple[SlowUpstream, str]]:
    upstream = SlowUpstream()
    async with serve(upstream.app) as upstream_url:
        settings = Settings(_env_file=None, base_url=upstream_url + "/v1", api_key="sk-loop")  # type: ignore[call-arg]
        async with serve(create_app(settings)) as proxy_url:
            yield upstream, proxy_url


@pytest.mark.parametrize(
    ("path", "body", "marker"),
    [
        ("/api/chat", {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}, b'"first"'),
        (
            "/v1/chat/completions",
            {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]},
            b"first",
        ),
    ],
)
async def test_first_chunk_arrives_before_the_upstream_finishes(stack, path, body, marker):
    upstream, proxy_url = stack
    async with httpx.AsyncClient(base_url=proxy_url, timeout=10) as client:
        async with client.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            received = b""
            parts = response.aiter_bytes()
            async for part in parts:
                received += part
                if marker in received:
                    break
            assert not upstream.release.is_set()
            upstream.release.set()
            async for part in parts:
                received += part
    assert b"second" in received


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_client_disconnect_closes_the_upstream_request(stack, path):
    upstream, proxy_url = stack
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=proxy_url, timeout=10) as client:
        async with client.stream("POST", path, json=body) as response:
            async for part in response.aiter_bytes():
                if b"first" in part:
                    break
    began = time.monotonic()
    await asyncio.wait_for(upstream.closed.wait(), timeout=3)
    assert time.monotonic() - began < 1.0


async def test_lifespan_opens_and_closes_the_shared_client(stack):
    _, proxy_url = stack
    async with httpx.AsyncClient(base_url=proxy_url) as client:
        tags = (await client.get("/api/tags")).json()
        assert [m["name"] for m in tags["models"]] == ["slow:latest"]
        for _ in range(5):
            assert (await client.get("/api/version")).status_code == 200


async def test_redirects_are_followed_through_the_real_transport():
    """The aiohttp transport is called directly on the hot path; a redirect still gets followed."""
    from starlette.responses import RedirectResponse

    from oai2ollama.target import Target
    from oai2ollama.upstream import Upstreams

    async def moved(request: Request) -> RedirectResponse:
        return RedirectResponse("/v1/new", status_code=307)

    async def new(request: Request) -> JSONResponse:
        return JSONResponse({"got": (await request.body()).decode()})

    upstream = Starlette(routes=[Route("/v1/old", moved, methods=["POST"]), Route("/v1/new", new, methods=["POST"])])
    async with serve(upstream) as url:
        client = Upstreams()
        try:
            response = await client.send(Target(base_url=url + "/v1"), "POST", "/old", body={"a": 1})
            assert response.status == 200
            assert await response.json() == {"got": '{"a":1}'}
        finally:
            await client.aclose()


async def test_start_up_says_what_each_upstream_lists(caplog: pytest.LogCaptureFixture) -> None:
    upstream = SlowUpstream()
    async with serve(upstream.app) as upstream_url:
        settings = Settings(_env_file=None, base_url=upstream_url + "/v1")  # type: ignore[call-arg]
        with caplog.at_level(logging.INFO, logger="oai2ollama.catalog"):
            async with serve(create_app(settings)):
                for _ in range(100):
                    if any("answered" in r.getMessage() for r in caplog.records):
                        break
                    await asyncio.sleep(0.02)
    assert "upstream default (127.0.0.1) answered: 1 model listed" in [r.getMessage() for r in caplog.records]
