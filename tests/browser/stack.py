"""A whole oai2ollama on loopback for the browser: the real server under uvicorn, with its lifespan,
a SQLite ledger file, an admin token, and a fake OpenAI-compatible upstream served on 127.0.0.1
that it reaches over a real socket with its own pooled client (`upstreams=None`).

Both servers run on an event loop of their own in a background thread, so the tests can drive
Chromium through Playwright's synchronous API (which refuses to run inside an event loop) and call
the server with the official clients, as a person and their tools would.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from oai2ollama.app import create_app
from oai2ollama.config import Settings

from ..fakes import API_KEY, DEFAULT_MODELS, FakeUpstream, completion, sse, sse_response, text_stream
from ..loopback import serve

ADMIN_TOKEN = "browser-admin-token-7f3c9a1e5b"
# A model whose name is markup: the admin page must show it as text, never run it.
HOSTILE_MODEL = "<script>alert(1)</script>"
ANSWER = "Hello from the fake upstream"


def chat(request: httpx.Request) -> httpx.Response:
    """/chat/completions as OpenAI answers it, streamed or not, for whichever model was asked."""
    body = json.loads(request.content)
    if body.get("stream"):
        return sse_response(sse(*text_stream("Hello", " from the fake upstream")))
    return httpx.Response(200, json={**completion(ANSWER), "model": body.get("model", "gpt-test")})


def fake_upstream(model_ids: list[str] | None = None) -> FakeUpstream:
    """The test fake's models and the hostile one, or `model_ids`."""
    if model_ids is None:
        models = [*DEFAULT_MODELS, {"id": HOSTILE_MODEL, "object": "model", "owned_by": "test"}]
    else:
        models = [{"id": name, "object": "model", "owned_by": "test"} for name in model_ids]
    fake = FakeUpstream(models=models)
    fake.on("POST", "/chat/completions", chat)
    return fake


class ServedFake:
    """An ASGI app that answers every request with `FakeUpstream.handler`, so the fake the other
    tests use in-process is reachable over a real socket."""

    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        proxied = httpx.Request(request.method, str(request.url), headers=request.headers.raw, content=body)
        answer: Any = self.fake.handler(proxied)
        if not isinstance(answer, httpx.Response):
            answer = await answer
        content = await answer.aread()
        skip = {"content-length", "content-encoding", "transfer-encoding"}
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in skip}
        await Response(content, status_code=answer.status_code, headers=headers)(scope, receive, send)


@dataclass
class Stack:
    url: str  # oai2ollama's base URL, e.g. http://127.0.0.1:PORT
    upstream_url: str  # the fake's OpenAI base URL (…/v1)
    ledger: Path  # the SQLite file
    admin_token: str
    fake: FakeUpstream
    settings: Settings
    app: Any = field(repr=False)

    @property
    def admin(self) -> str:
        return f"{self.url}/admin"


@contextmanager
def running_stack(
    directory: Path, *, admin_token: str = ADMIN_TOKEN, model_ids: list[str] | None = None, **settings: Any
) -> Iterator[Stack]:
    """Start the fake upstream and oai2ollama on loopback in a background thread; stop both after.
    The ledger is `directory/ledger.db` (made there if missing)."""
    fake = fake_upstream(model_ids)
    ledger = directory / "ledger.db"
    loop = asyncio.new_event_loop()
    started: asyncio.Future[Stack] = loop.create_future()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        try:
            async with AsyncExitStack() as stack:
                upstream_url = await stack.enter_async_context(serve(ServedFake(fake))) + "/v1"
                options: dict[str, Any] = {
                    "base_url": upstream_url,
                    "api_key": API_KEY,  # a secret the settings page must mask
                    "database_url": f"sqlite:///{ledger}",
                    "admin_token": admin_token,
                    "models_ttl": 0,
                    **settings,
                }
                config = Settings(_env_file=None, **options)  # type: ignore[call-arg]
                app = create_app(config)
                url = await stack.enter_async_context(serve(app))
                started.set_result(Stack(url, upstream_url, ledger, admin_token, fake, config, app))
                await stop.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            else:
                failure.append(error)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, name="oai2ollama-browser-stack", daemon=True)
    thread.start()
    try:
        stack = asyncio.run_coroutine_threadsafe(_wait(started), loop).result(timeout=30)
        wait_for_admin(stack.url)
        yield stack
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        if failure:
            raise failure[0]


def wait_for_admin(url: str, seconds: float = 30) -> None:
    """The admin page learns its token once the ledger is migrated, in the background, and answers
    503 until then."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=5, trust_env=False) as http:
        while http.get(url + "/admin/login").status_code == 503:
            if time.monotonic() > deadline:
                raise RuntimeError("the admin page did not become ready")
            time.sleep(0.05)


async def _wait(future: asyncio.Future[Stack]) -> Stack:
    return await future
