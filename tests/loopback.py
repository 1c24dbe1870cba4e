"""Real servers on 127.0.0.1 for what in-process transports cannot show: incremental delivery,
disconnects, and the whole stack (uvicorn, lifespan, the pooled client) working together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free loopback port for the duration of the block; `options`
    for `uvicorn.Config` (`http="h11"`, …)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", loop="asyncio", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("loopback server did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
