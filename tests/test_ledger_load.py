"""The ledger under concurrency, on real sockets: one row per request, none lost, none twice.

A canned upstream and the proxy under uvicorn on loopback, a SQLite file; a few hundred streams at
once, each with its own user agent. When the server has stopped (a graceful shutdown writes what
is queued), the ledger holds exactly one row for each. No timing is asserted: the machine may be busy.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.ledger.database import open_engine, resolve_url

from .fakes import chunk, usage_chunk
from .loopback import serve

pytestmark = pytest.mark.anyio

STREAMS = 300


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "load-model", "object": "model"}]})


async def chat(request: Request) -> StreamingResponse:
    await request.body()

    async def body() -> AsyncIterator[bytes]:
        yield b"data: " + json.dumps(chunk({"role": "assistant", "content": ""})).encode() + b"\n\n"
        for word in ("one ", "two ", "three"):
            await asyncio.sleep(0.01)  # the streams overlap: all of them are open at once
            yield b"data: " + json.dumps(chunk({"content": word})).encode() + b"\n\n"
        yield b"data: " + json.dumps(chunk({}, "stop")).encode() + b"\n\n"
        yield b"data: " + json.dumps(usage_chunk()).encode() + b"\n\ndata: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


async def clients_in(database_url: str) -> Counter[str]:
    url = resolve_url(database_url)
    assert url is not None
    engine = open_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT client FROM requests"))
            return Counter(client for (client,) in rows)
    finally:
        await engine.dispose()


async def test_hundreds_of_concurrent_streams_give_one_row_each(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upstream = Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])
    answered: list[str] = []
    async with serve(upstream, backlog=2048) as upstream_url:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, base_url=upstream_url + "/v1", api_key="sk-load", database_url=database_url
        )
        async with serve(create_app(settings), backlog=2048) as proxy_url:
            limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
            async with httpx.AsyncClient(base_url=proxy_url, limits=limits, timeout=120) as http:

                async def one(number: int) -> None:
                    agent = f"load-test/{number}"
                    body = {"model": "load-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
                    async with http.stream("POST", "/api/chat", json=body, headers={"user-agent": agent}) as answer:
                        lines = [json.loads(line) async for line in answer.aiter_lines() if line.strip()]
                    assert answer.status_code == 200 and lines[-1]["done"] is True
                    answered.append(agent)

                await asyncio.gather(*(one(number) for number in range(STREAMS)))
        # The proxy has stopped: its shutdown wrote whatever was still queued.
    assert len(answered) == STREAMS
    clients = await clients_in(database_url)
    assert clients == Counter(answered)  # every request once: none lost, none twice
