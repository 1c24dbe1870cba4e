"""Every upstream and client fault of issue 4, on real sockets.

The proxy runs under uvicorn on loopback with its own pooled client (`tests/loopback.py`); the
upstream is `RawUpstream`, an asyncio server that writes HTTP/1.1 byte by byte, so it can commit
the faults a well-behaved server never does: resets, silence, broken framing, wrong bodies.
Each fault is driven through every route family at once (native, OpenAI and Anthropic, streamed
and not), and each must end in a clear error: a real status before the answer began, a final
error line or event after, never a hang and never a bare 500.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.disconnect import CancelOnDisconnect

from .fakes import closed_port
from .loopback import serve

pytestmark = pytest.mark.anyio

READ_TIMEOUT = 0.5
# Generous: a fault must end in about READ_TIMEOUT; this only keeps a hang from hanging the suite.
CLIENT_TIMEOUT = 10.0
MODEL = "raw"
KEY = "sk-raw-secret-0123456789"
WORDS = ["Hello", " from", " the", " raw", " upstream", "."]
TEXT = "".join(WORDS)
PATIENT = 60.0
UNRESOLVABLE = "oai2ollama-fault.invalid"  # RFC 2606: never resolves, answered locally


# ---------------------------------------------------------------- the misbehaving upstream


def frame(obj: dict[str, Any] | str) -> bytes:
    return b"data: " + (obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\n\n"


def delta_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": [choice]}


USAGE = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": []}
USAGE["usage"] = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}


def answer_frames(words: list[str] = WORDS, *, done: bool = True) -> list[bytes]:
    """A streamed answer as real servers send it, one frame per write."""
    frames = [frame(delta_chunk({"role": "assistant", "content": ""}))]
    frames += [frame(delta_chunk({"content": word})) for word in words]
    frames += [frame(delta_chunk({}, "stop")), frame(USAGE)]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return frames


def completion_document(text: str = TEXT) -> bytes:
    message = {"role": "assistant", "content": text}
    return json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": USAGE["usage"],
        }
    ).encode()


class Exchange:
    """One request the raw upstream is answering, and the bytes it may write back."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: bytes,
        on_hang_up: Callable[[], None] = lambda: None,
    ):
        self.reader, self.writer = reader, writer
        self.request = json.loads(body) if body else {}
        self.method, self.path = "POST", "/"
        self.headers: dict[str, str] = {}  # names lower-cased
        self.note_hang_up = on_hang_up
        self.framing = "length"
        self.finished = False  # the answer ended cleanly and the connection may serve another

    @property
    def streamed(self) -> bool:
        return self.request.get("stream") is True

    async def head(
        self, status: int = 200, content_type: str = "text/event-stream", *, framing: str = "chunked", **headers: str
    ) -> None:
        """`framing`: `chunked`, `close` (the body ends when the connection does) or `length:<n>`."""
        self.framing = framing
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {content_type}"]
        if framing == "chunked":
            lines.append("transfer-encoding: chunked")
        elif framing == "close":
            lines.append("connection: close")
        else:
            lines.append(f"content-length: {framing.removeprefix('length:')}")
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        if self.framing == "chunked":
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.writer.write(data)
        await self.writer.drain()

    async def whole(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
        await self.head(status, content_type, framing=f"length:{len(body)}", **headers)
        await self.send(body)
        self.finished = True

    async def end(self) -> None:
        if self.framing == "chunked":
            self.writer.write(b"0\r\n\r\n")
            await self.writer.drain()
            self.finished = True
        else:
            await self.close()

    async def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Abort with a TCP RST, as a crashed server or a dropped NAT mapping does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def hold(self, seconds: float) -> bool:
        """Send nothing for `seconds` or until the proxy closes the connection; True if it did."""
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        self.note_hang_up()
        return True


Answer = Callable[[Exchange], Awaitable[None]]


async def text_answer(exchange: Exchange) -> None:
    if exchange.streamed:
        await exchange.head()
        for data in answer_frames():
            await exchange.send(data)
        await exchange.end()
    else:
        await exchange.whole(200, "application/json", completion_document())


class RawUpstream:
    """A loopback HTTP/1.1 server: `GET /v1/models` lists one model, every POST gets `answer`.

    `connections` and `requests` count what came (POSTs only); `hung_up` is set when the proxy
    closed a connection on which an answer was held (see `Exchange.hold`), at the
    `time.monotonic()` in `hung_up_at`.
    """

    def __init__(self, answer: Answer):
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reset(answer)

    def reset(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests = 0
        self.received = asyncio.Event()
        self.hung_up = asyncio.Event()
        self.hung_up_at = 0.0

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                method, path, _ = request_line.split(" ", 2)
                exchange = Exchange(reader, writer, body, self._hang_up)
                exchange.method, exchange.path, exchange.headers = method, path, headers
                if (method, path) == ("GET", "/v1/models"):
                    listing = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "raw"}]}
                    await exchange.whole(200, "application/json", json.dumps(listing).encode())
                else:
                    self.requests += 1
                    self.received.set()
                    await self.answer(exchange)
                if not exchange.finished:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return  # the proxy went away, or the test is over
        finally:
            self._tasks.discard(task)
            writer.close()

    def _hang_up(self) -> None:
        self.hung_up_at = time.monotonic()
        self.hung_up.set()


_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# ---------------------------------------------------------------- the proxy and the routes


def proxy_settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": base_url,
        "api_key": KEY,
        "read_timeout": READ_TIMEOUT,
        "connect_timeout": 2.0,
        "models_ttl": 60.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def wired(app: Any) -> bool:
    return any(getattr(entry, "cls", None) is CancelOnDisconnect for entry in getattr(app, "user_middleware", ()))


@asynccontextmanager
async def proxy(base_url: str, *, cancel_on_disconnect: bool = True, **overrides: Any) -> AsyncIterator[str]:
    """The proxy on loopback in front of `base_url`. `CancelOnDisconnect` is put around it unless
    `create_app` already has it (see `test_the_app_cancels_the_work_of_a_client_that_left`)."""
    app: Any = create_app(proxy_settings(base_url, **overrides))
    if cancel_on_disconnect and not wired(app):
        app = CancelOnDisconnect(app)
    async with serve(app) as url:
        yield url


class Stack:
    """One raw upstream and one proxy in front of it, shared by the tests of this module (a
    uvicorn start and stop costs 0.2 s); each test gives the upstream its own behaviour."""

    def __init__(self, upstream: RawUpstream, url: str):
        self.upstream, self.url = upstream, url

    @asynccontextmanager
    async def answering(self, answer: Answer) -> AsyncIterator[str]:
        """The proxy's URL, with the upstream answering `answer` (and its counts reset)."""
        self.upstream.reset(answer)
        yield self.url


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with RawUpstream(text_answer) as upstream, proxy(upstream.url) as url:
        yield Stack(upstream, url)


@pytest.fixture(scope="module")
async def patient() -> AsyncIterator[Stack]:
    """A stack whose read timeout is long: what frees the upstream there is the client leaving."""
    async with RawUpstream(text_answer) as upstream, proxy(upstream.url, read_timeout=PATIENT) as url:
        yield Stack(upstream, url)


@dataclass(frozen=True)
class Route:
    family: str  # "ollama", "openai" or "anthropic"
    path: str
    stream: bool

    def __str__(self) -> str:
        return f"{self.path} {'streamed' if self.stream else 'not streamed'}"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": self.stream}
        if self.family == "anthropic":
            body["max_tokens"] = 64
        return body


ROUTES = [
    Route(family, path, stream)
    for family, path in (("ollama", "/api/chat"), ("openai", "/v1/chat/completions"), ("anthropic", "/v1/messages"))
    for stream in (True, False)
]
NATIVE_AND_ANTHROPIC = [route for route in ROUTES if route.family != "openai"]


@dataclass
class Outcome:
    """What a client received: the status, headers, and the body whole, or as far as it came."""

    route: Route
    status: int
    headers: httpx.Headers
    body: bytes
    broken: str | None  # why reading the body failed (the proxy cut it off), if it did
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    def items(self) -> list[Any]:
        """NDJSON lines; SSE payloads (OpenAI) or (event, payload) pairs (Anthropic)."""
        if self.route.family == "ollama":
            return [json.loads(line) for line in self.body.splitlines() if line.strip()]
        items: list[Any] = []
        for event in self.body.decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in event.split("\n") if ": " in line)
            if "data" not in fields:
                continue
            data = fields["data"] if fields["data"] == "[DONE]" else json.loads(fields["data"])
            items.append((fields.get("event"), data) if self.route.family == "anthropic" else data)
        return items


async def call(url: str, route: Route) -> Outcome:
    began = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        async with client.stream("POST", route.path, json=route.body()) as response:
            received, broken = b"", None
            try:
                async for part in response.aiter_bytes():
                    received += part
            except httpx.HTTPError as exc:
                broken = f"{type(exc).__name__}: {exc}"
    return Outcome(route, response.status_code, response.headers, received, broken, time.monotonic() - began)


def error_message(outcome: Outcome, status: int) -> str:
    """The message of an error answer, checking that it is one in the route's dialect."""
    assert outcome.status == status, f"status {outcome.status}, body {outcome.body[:300]!r}"
    assert outcome.headers["content-type"].startswith("application/json"), outcome.headers["content-type"]
    body = outcome.json()
    if outcome.route.family == "ollama":
        assert set(body) == {"error"}, body
        return str(body["error"])
    if outcome.route.family == "openai":
        assert set(body) == {"error"} and set(body["error"]) >= {"message", "type"}, body
        return str(body["error"]["message"])
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    return str(body["error"]["message"])


def stream_error(outcome: Outcome) -> str:
    """The message of the error that ended a stream that had begun."""
    assert outcome.status == 200, f"status {outcome.status}, body {outcome.body[:300]!r}"
    assert outcome.broken is None, outcome.broken
    items = outcome.items()
    assert items, outcome.body
    last = items[-1]
    if outcome.route.family == "ollama":
        assert set(last) == {"error"}, last
        assert not any(item.get("done") for item in items)
        return str(last["error"])
    if outcome.route.family == "openai":
        assert isinstance(last, dict) and set(last) == {"error"}, last
        return str(last["error"]["message"])
    event, data = last
    assert event == "error" and data["type"] == "error", last
    assert not any(name == "message_stop" for name, _ in items)
    return str(data["error"]["message"])


def answer_text(outcome: Outcome) -> str:
    """The text of a whole, successful answer, checking that it ended as its dialect ends."""
    assert outcome.status == 200, f"status {outcome.status}, body {outcome.body[:300]!r}"
    assert outcome.broken is None, outcome.broken
    family, stream = outcome.route.family, outcome.route.stream
    if family == "ollama":
        items = outcome.items()
        assert items[-1]["done"] is True and items[-1]["done_reason"] == "stop", items[-1]
        return "".join(item["message"]["content"] for item in items)
    if family == "openai" and stream:
        chunks = [item for item in outcome.items() if item != "[DONE]"]
        assert chunks[-1]["usage"]["completion_tokens"] == 6
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    if family == "openai":
        return str(outcome.json()["choices"][0]["message"]["content"])
    if stream:
        items = outcome.items()
        assert [name for name, _ in items][-2:] == ["message_delta", "message_stop"], items
        return "".join(data["delta"]["text"] for name, data in items if name == "content_block_delta")
    message = outcome.json()
    assert message["stop_reason"] == "end_turn", message
    return "".join(block["text"] for block in message["content"])


async def each_route(url: str, routes: list[Route], check: Callable[[Outcome], None]) -> None:
    """Call every route at once and check each outcome; every failing route is reported."""
    outcomes = await asyncio.gather(*(call(url, route) for route in routes))
    failures = []
    for outcome in outcomes:
        try:
            check(outcome)
        except AssertionError as exc:
            failures.append(f"{outcome.route}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.fixture(autouse=True)
def no_internal_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """A fault is an answer, not a bug: nothing of ours may log an error."""
    yield
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("oai2ollama") and r.levelname == "ERROR"]
    assert not errors, errors


# ---------------------------------------------------------------- upstream faults


async def test_refused_is_502_naming_host_and_cause() -> None:
    port = closed_port()

    def check(outcome: Outcome) -> None:
        message = error_message(outcome, 502)
        assert message == f"cannot reach upstream 127.0.0.1:{port}: connection refused", message

    async with proxy(f"http://127.0.0.1:{port}/v1") as url:
        await each_route(url, ROUTES, check)


def _resolver_answers_locally() -> bool:
    try:
        socket.getaddrinfo(UNRESOLVABLE, 80)
    except socket.gaierror:
        return True
    return False  # a resolver that invents answers (some ISPs do) cannot show the fault


async def test_unresolvable_host_is_502() -> None:
    try:
        async with asyncio.timeout(3):
            local = await asyncio.to_thread(_resolver_answers_locally)
    except TimeoutError:
        pytest.skip(f"the resolver did not answer for {UNRESOLVABLE} within 3 s (no local NXDOMAIN)")
    if not local:
        pytest.skip(f"the resolver claims {UNRESOLVABLE} exists")

    def check(outcome: Outcome) -> None:
        message = error_message(outcome, 502)
        assert message.startswith(f"cannot reach upstream {UNRESOLVABLE}: cannot resolve the host name"), message

    async with proxy(f"http://{UNRESOLVABLE}/v1") as url:
        await each_route(url, ROUTES, check)


async def test_slow_first_byte_is_504(stack: Stack) -> None:
    async def silent(exchange: Exchange) -> None:
        await exchange.hold(READ_TIMEOUT * 6)

    def check(outcome: Outcome) -> None:
        message = error_message(outcome, 504)
        assert message.startswith("upstream 127.0.0.1:") and message.endswith(f"did not answer within {READ_TIMEOUT} s")
        assert outcome.seconds < READ_TIMEOUT * 4

    async with stack.answering(silent) as url:
        await each_route(url, ROUTES, check)


async def test_headers_then_silence_is_504_before_the_answer_begins(stack: Stack) -> None:
    """Native and Anthropic answers begin with the upstream's first event, so silence after the
    headers still gets a real status; the OpenAI relay has begun its answer and ends it with an error event."""

    async def headers_only(exchange: Exchange) -> None:
        await exchange.head()
        await exchange.hold(READ_TIMEOUT * 6)

    def check(outcome: Outcome) -> None:
        if outcome.route.family == "openai":  # relayed as it came: an event stream, here ended by an error event
            assert "stopped sending for too long" in stream_error(outcome)
        else:
            assert "stopped sending for too long" in error_message(outcome, 504)
        assert outcome.seconds < READ_TIMEOUT * 4

    async with stack.answering(headers_only) as url:
        await each_route(url, ROUTES, check)


@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_reset_mid_stream_ends_with_an_error(stack: Stack, framing: str) -> None:
    """`framing` is that of the JSON document a non-streamed relay gets: with a length, or chunked."""

    async def reset(exchange: Exchange) -> None:
        if exchange.streamed:
            await exchange.head()
            for data in answer_frames()[:3]:
                await exchange.send(data)
        else:
            document = completion_document()
            length = f"length:{len(document)}" if framing == "length" else "chunked"
            await exchange.head(200, "application/json", framing=length)
            await exchange.send(document[:40])
        await asyncio.sleep(0.05)
        exchange.reset()

    def check(outcome: Outcome) -> None:
        if outcome.route.family == "openai" and not outcome.route.stream and framing == "chunked":
            # A relayed document of unknown length is streamed through; when it breaks off there is
            # nowhere to put an error, so it is cut off too, never passed on as if whole.
            assert outcome.status == 200 and outcome.broken is not None, outcome
            assert "incomplete" in outcome.broken
            return
        message = stream_error(outcome) if outcome.route.stream else error_message(outcome, 502)
        assert message == "upstream 127.0.0.1 broke off the answer: connection reset by peer", message

    async with stack.answering(reset) as url:
        await each_route(url, ROUTES, check)


async def test_invalid_json_in_a_chunk_ends_with_an_error(stack: Stack) -> None:
    """The OpenAI relay passes bytes through unparsed: only the translated routes read chunks."""

    async def garbled(exchange: Exchange) -> None:
        await exchange.head()
        for data in answer_frames()[:3]:
            await exchange.send(data)
        await exchange.send(b'data: {"choices": [{"delta": {"content": "x"}\n\n')
        await exchange.send(answer_frames()[-1])
        await exchange.end()

    def check(outcome: Outcome) -> None:
        message = stream_error(outcome) if outcome.route.stream else error_message(outcome, 502)
        assert message.startswith("upstream 127.0.0.1 sent a malformed stream chunk: {"), message

    async with stack.answering(garbled) as url:
        await each_route(url, NATIVE_AND_ANTHROPIC, check)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b"Hello! I am a teapot, not a language model."),
        ("text/html", b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"),
    ],
)
async def test_a_body_that_is_not_an_event_stream_is_a_clear_502(stack: Stack, content_type: str, body: bytes) -> None:
    async def not_a_stream(exchange: Exchange) -> None:
        await exchange.whole(200, content_type, body)

    def check(outcome: Outcome) -> None:
        message = error_message(outcome, 502)
        assert message.startswith("upstream 127.0.0.1 sent a body that is not an event stream: "), message

    async with stack.answering(not_a_stream) as url:
        await each_route(url, NATIVE_AND_ANTHROPIC, check)


async def test_the_openai_relay_refuses_a_body_that_is_not_an_event_stream(stack: Stack) -> None:
    async def html(exchange: Exchange) -> None:
        await exchange.whole(200, "text/html", b"<html><body>Please log in</body></html>")

    def check(outcome: Outcome) -> None:
        assert "not an event stream" in error_message(outcome, 502)

    async with stack.answering(html) as url:
        await each_route(url, [Route("openai", "/v1/chat/completions", True)], check)


@pytest.mark.parametrize(("status", "phrase"), [(502, "Bad Gateway"), (503, "Service Unavailable")])
async def test_an_html_error_page_keeps_its_status_and_is_summarised(stack: Stack, status: int, phrase: str) -> None:
    page = f"<html><head><title>{status} {phrase}</title></head><body><center><h1>{status} {phrase}</h1>"
    page += "</center><hr><center>nginx</center></body></html>"

    async def gateway(exchange: Exchange) -> None:
        await exchange.whole(status, "text/html", page.encode())

    def check(outcome: Outcome) -> None:
        message = error_message(outcome, status)
        assert message == f"upstream answered {status} {phrase}", message
        assert b"<" not in outcome.body

    async with stack.answering(gateway) as url:
        await each_route(url, ROUTES, check)


async def endless_error_page(exchange: Exchange) -> None:
    """A broken gateway that never stops sending its error page (until the connection closes)."""
    await exchange.head(503, "text/plain")
    try:
        while True:
            await exchange.send(b"Service Unavailable. " * 500)
            await asyncio.sleep(0.01)
    except ConnectionError:
        exchange.note_hang_up()
        raise


async def test_an_endless_error_page_is_not_waited_for(stack: Stack) -> None:
    def check(outcome: Outcome) -> None:
        message = error_message(outcome, 503)
        assert message.startswith("Service Unavailable.") and len(message) < 600, message
        assert outcome.seconds < 2

    async with stack.answering(endless_error_page) as url:
        await each_route(url, NATIVE_AND_ANTHROPIC, check)


async def test_the_openai_relay_does_not_wait_for_an_endless_error_page(stack: Stack) -> None:
    async with stack.answering(endless_error_page) as url, httpx.AsyncClient(base_url=url, timeout=1) as client:
        response = await client.post("/v1/chat/completions", json=Route("openai", "", False).body())
    assert response.status_code == 503


async def test_429_keeps_status_retry_after_and_rate_limit_headers(stack: Stack) -> None:
    error = {"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}

    async def limited(exchange: Exchange) -> None:
        await exchange.whole(
            429,
            "application/json",
            json.dumps(error).encode(),
            retry_after="7",
            x_ratelimit_remaining_requests="0",
        )

    def check(outcome: Outcome) -> None:
        assert "Rate limit reached" in error_message(outcome, 429)
        assert outcome.headers["retry-after"] == "7"
        assert outcome.headers["x-ratelimit-remaining-requests"] == "0"

    async with stack.answering(limited) as url:
        await each_route(url, ROUTES, check)


@pytest.mark.parametrize("ending", ["chunked", "close"])
async def test_no_done_but_closed_completes_the_answer(stack: Stack, ending: str) -> None:
    """A server that ends its stream without `[DONE]`: by the chunked terminator, or by closing a
    body that had no length (then the end of the connection is the end of the body)."""

    async def without_done(exchange: Exchange) -> None:
        if exchange.streamed:
            await exchange.head(framing=ending)
            for data in answer_frames(done=False):
                await exchange.send(data)
        else:
            await exchange.head(200, "application/json", framing=ending)
            await exchange.send(completion_document())
        await exchange.end()

    def check(outcome: Outcome) -> None:
        assert answer_text(outcome) == TEXT

    async with stack.answering(without_done) as url:
        await each_route(url, ROUTES, check)


async def test_no_done_and_kept_open_ends_by_the_read_timeout(stack: Stack) -> None:
    async def kept_open(exchange: Exchange) -> None:
        if exchange.streamed:
            await exchange.head()
            for data in answer_frames(done=False):
                await exchange.send(data)
        else:
            document = completion_document()
            await exchange.head(200, "application/json")
            await exchange.send(document)
        await exchange.hold(READ_TIMEOUT * 6)

    def check(outcome: Outcome) -> None:
        assert outcome.seconds < READ_TIMEOUT * 4
        if outcome.route.family == "openai" and not outcome.route.stream:
            assert outcome.broken is not None  # the document never ended: cut off, not passed as whole
            return
        message = stream_error(outcome) if outcome.route.stream else error_message(outcome, 504)
        assert message == f"upstream 127.0.0.1 stopped sending for too long (over {READ_TIMEOUT} s)", message

    async with stack.answering(kept_open) as url:
        await each_route(url, ROUTES, check)


async def test_a_slow_stream_longer_than_the_read_timeout_is_never_cut_off(stack: Stack) -> None:
    """The read timeout is inactivity, not a limit on the whole answer."""
    words = [f" w{n}" for n in range(8)]
    pause = READ_TIMEOUT / 4  # 12 frames: 3 read timeouts in all

    async def slow(exchange: Exchange) -> None:
        frames = answer_frames(words)
        await exchange.head()
        for data in frames:
            await exchange.send(data)
            await asyncio.sleep(pause)
        await exchange.end()

    def check(outcome: Outcome) -> None:
        assert answer_text(outcome) == "".join(words)
        assert outcome.seconds > READ_TIMEOUT * 2.5

    # The relay forwards stream:false as it is: this upstream answers every request with a stream.
    async with stack.answering(slow) as url:
        await each_route(url, [route for route in ROUTES if route.stream or route.family != "openai"], check)


async def test_connect_timeout_is_504() -> None:
    """A listener whose accept queue is full drops new SYNs: the connection is never accepted."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # Linux accepts backlog + 1 connections; the rest hang in SYN_SENT
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)

        def check(outcome: Outcome) -> None:
            message = error_message(outcome, 504)
            assert message == f"upstream 127.0.0.1:{port} did not accept a connection in time", message

        async with proxy(f"http://127.0.0.1:{port}/v1", connect_timeout=READ_TIMEOUT) as url:
            await each_route(url, ROUTES[:1], check)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# ---------------------------------------------------------------- as the official clients see them


@asynccontextmanager
async def native_client(url: str) -> AsyncIterator[ollama.AsyncClient]:
    client = ollama.AsyncClient(host=url)
    try:
        yield client
    finally:
        await client.close()


async def test_the_official_clients_see_a_mid_stream_failure_as_an_error(stack: Stack) -> None:
    async def reset(exchange: Exchange) -> None:
        await exchange.head()
        for data in answer_frames()[:3]:
            await exchange.send(data)
        await asyncio.sleep(0.05)
        exchange.reset()

    async with stack.answering(reset) as url:
        async with native_client(url) as native:
            with pytest.raises(ollama.ResponseError, match="broke off the answer") as native_error:
                chunks = await native.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
                async for _ in chunks:
                    pass
        assert native_error.value.status_code == -1  # ollama-python's mark for an error inside a stream
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
            with pytest.raises(openai.APIError, match="broke off the answer"):
                stream = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
                )
                async for _ in stream:
                    pass
        async with anthropic.AsyncAnthropic(
            base_url=url, api_key="k", max_retries=0, http_client=httpx2.AsyncClient()
        ) as claude:
            with pytest.raises(anthropic.APIError, match="broke off the answer"):
                async with claude.messages.stream(
                    model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
                ) as events:
                    async for _ in events:
                        pass


async def test_the_official_clients_see_429_with_its_retry_after(stack: Stack) -> None:
    error = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}

    async def limited(exchange: Exchange) -> None:
        await exchange.whole(429, "application/json", json.dumps(error).encode(), retry_after="7")

    async with stack.answering(limited) as url:
        async with native_client(url) as native:
            with pytest.raises(ollama.ResponseError) as native_error:
                await native.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert (native_error.value.status_code, native_error.value.error) == (429, "Rate limit reached")
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as client:
            with pytest.raises(openai.RateLimitError) as openai_error:
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert openai_error.value.response.headers["retry-after"] == "7"
        async with anthropic.AsyncAnthropic(
            base_url=url, api_key="k", max_retries=0, http_client=httpx2.AsyncClient()
        ) as claude:
            with pytest.raises(anthropic.RateLimitError) as claude_error:
                await claude.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
        assert claude_error.value.response.headers["retry-after"] == "7"


# ---------------------------------------------------------------- client faults


JSON_ROUTES = [
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/pull",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
]


def client_error(path: str, response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    body = response.json()
    if path.startswith("/v1/messages"):
        return str(body["error"]["message"])
    if path.startswith("/v1/"):
        return str(body["error"]["message"])
    return str(body["error"])


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"model": "raw", "messages": [', "invalid JSON"),
    ("invalid UTF-8", b'{"model": "raw\xff\xfe", "messages": []}', "not UTF-8 (byte 0xff at offset 14)"),
    ("UTF-16", '{"model": "raw"}'.encode("utf-16"), "not UTF-8 (byte 0xff at offset 0)"),
    ("not an object", b'["model", "raw"]', "must be a JSON object"),
    ("model a number", b'{"model": 42, "messages": [{"role": "user", "content": "hi"}]}', "model"),
    ("nothing", b"", "missing request body"),
]


@pytest.mark.parametrize(("case", "body", "words"), BAD_BODIES, ids=[case for case, _, _ in BAD_BODIES])
async def test_a_bad_body_is_a_clear_4xx_on_every_route(stack: Stack, case: str, body: bytes, words: str) -> None:
    async with stack.answering(text_answer) as url:
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
            responses = await asyncio.gather(
                *(client.post(path, content=body, headers={"content-type": "application/json"}) for path in JSON_ROUTES)
            )
            for path, response in zip(JSON_ROUTES, responses, strict=True):
                assert words in client_error(path, response), (path, response.text)
            assert (await client.get("/api/version")).status_code == 200
        assert stack.upstream.requests == 0


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/chat", {"model": MODEL, "messages": "hi"}, "messages must be a list"),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "content must be a string"),
        ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "options": []}, "options"),
        ("/api/generate", {"model": MODEL, "prompt": ["x"]}, "prompt must be a string"),
        ("/api/embed", {"model": MODEL, "input": 5}, "invalid input type"),
        ("/v1/messages", {"model": MODEL, "max_tokens": 9, "messages": "hi"}, "messages"),
        ("/v1/messages", {"model": MODEL, "max_tokens": 9, "messages": [{"role": "user", "content": 5}]}, "content"),
    ],
)
async def test_wrong_types_are_a_clear_400(stack: Stack, path: str, body: dict[str, Any], words: str) -> None:
    async with stack.answering(text_answer) as url:
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
            response = await client.post(path, json=body)
        assert response.status_code == 400 and words in client_error(path, response), response.text
        assert stack.upstream.requests == 0


HUGE = 17 * 1024 * 1024
HUGE_BODIES: dict[str, Callable[[], bytes]] = {
    "malformed": lambda: b'{"model": "raw", "messages": [{"role": "user", "content": "' + b"x" * HUGE,
    "not an object": lambda: b"[" + b'"x",' * (HUGE // 4) + b'"x"]',
    "wrong model type": lambda: b'{"model": 42, "messages": [{"role": "user", "content": "' + b"x" * HUGE + b'"}]}',
}


@pytest.mark.parametrize("case", list(HUGE_BODIES))
async def test_huge_bodies_are_a_4xx_and_crash_nothing(stack: Stack, case: str) -> None:
    body = HUGE_BODIES[case]()
    async with stack.answering(text_answer) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for path in ("/api/chat", "/v1/chat/completions", "/v1/messages"):
                response = await client.post(path, content=body, headers={"content-type": "application/json"})
                assert response.status_code in (400, 413), (path, response.status_code)
                client_error(path, response)
            assert (await client.get("/api/version")).status_code == 200
        assert stack.upstream.requests == 0


async def test_a_client_that_sends_half_a_body_and_leaves_breaks_nothing(stack: Stack) -> None:
    async with stack.answering(text_answer) as url:
        port = int(url.rsplit(":", 1)[1])
        for path in ("/api/chat", "/v1/chat/completions", "/v1/messages"):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                "content-length: 1000\r\n\r\n".encode()
                + b'{"model": "raw", "mess'
            )
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
            assert (await client.get("/api/version")).status_code == 200
            answer = (await client.post("/api/chat", json=Route("ollama", "/api/chat", False).body())).json()
            assert answer["message"]["content"] == TEXT
        assert stack.upstream.requests == 1


# ---------------------------------------------------------------- client disconnects


async def hold_after_first_chunk(exchange: Exchange) -> None:
    await exchange.head()
    await exchange.send(answer_frames()[1])
    await exchange.hold(10)


async def hold_before_headers(exchange: Exchange) -> None:
    await exchange.hold(10)


async def hold_after_headers(exchange: Exchange) -> None:
    await exchange.head()
    await exchange.hold(10)


async def leave_early(url: str, route: Route, upstream: RawUpstream) -> float:
    """Send the request, go away once the upstream has it, and time how long until the proxy
    closes its upstream connection."""
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        request = asyncio.create_task(client.post(route.path, json=route.body()))
        await asyncio.wait_for(upstream.received.wait(), CLIENT_TIMEOUT)
        await asyncio.sleep(0.1)  # the proxy is now waiting on the upstream
        left = time.monotonic()
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
    await asyncio.wait_for(upstream.hung_up.wait(), 3)
    return upstream.hung_up_at - left


DISCONNECTS = [
    pytest.param(answer, route, id=f"{answer.__name__}-{route}")
    for answer in (hold_after_first_chunk, hold_before_headers, hold_after_headers)
    for route in ROUTES
]


@pytest.mark.parametrize(("answer", "route"), DISCONNECTS)
async def test_a_client_that_leaves_frees_the_upstream_within_a_second(
    patient: Stack, answer: Answer, route: Route
) -> None:
    async with patient.answering(answer) as url:
        assert await leave_early(url, route, patient.upstream) < 1.0


async def test_the_app_cancels_the_work_of_a_client_that_left() -> None:
    """`create_app` itself must install `CancelOnDisconnect`: a non-streamed answer being collected
    would otherwise hold its upstream request until the upstream finished."""
    async with RawUpstream(hold_after_first_chunk) as upstream:
        assert wired(create_app(proxy_settings(upstream.url))), "create_app must install CancelOnDisconnect"
        async with proxy(upstream.url, cancel_on_disconnect=False, read_timeout=PATIENT) as url:
            assert await leave_early(url, Route("ollama", "/api/chat", False), upstream) < 1.0


async def test_a_server_shutting_down_still_cancels_a_request() -> None:
    """`CancelOnDisconnect` ends only the cancellation it caused; the server's own goes on."""
    entered = asyncio.Event()

    async def forever(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        entered.set()
        await asyncio.Event().wait()

    async def receive() -> dict[str, Any]:
        if not entered.is_set():
            return {"type": "http.request", "body": b"{}", "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/api/chat"}
    task = asyncio.create_task(CancelOnDisconnect(forever)(scope, receive, send))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- redirects and secrets


async def test_a_redirect_to_another_origin_is_a_502_on_every_route() -> None:
    """The second server is another origin (another port): it must receive nothing at all."""
    async with RawUpstream(text_answer) as other:

        async def moved(exchange: Exchange) -> None:
            await exchange.whole(307, "text/plain", b"", location=other.url + "/chat/completions")

        async with RawUpstream(moved) as upstream, proxy(upstream.url) as url:
            address = upstream.url.removeprefix("http://").removesuffix("/v1")

            def check(outcome: Outcome) -> None:
                message = error_message(outcome, 502)
                assert f"upstream {address} redirected to another origin" in message, message
                assert KEY not in message

            await each_route(url, ROUTES, check)
            assert upstream.requests == len(ROUTES), "each request is sent once"
    assert other.requests == 0


def error_quoting(secret: str) -> Answer:
    """A stream that begins, then ends with an error event quoting `secret`, split between two writes."""

    async def answer(exchange: Exchange) -> None:
        await exchange.head()
        for data in answer_frames()[:3]:
            await exchange.send(data)
        quoted = secret or exchange.headers.get("authorization", "").removeprefix("Bearer ")
        event = frame({"error": {"message": f"Incorrect API key provided: {quoted}.", "code": "invalid_api_key"}})
        cut = event.index(quoted.encode()) + len(quoted) // 2
        await exchange.send(event[:cut])
        await asyncio.sleep(0.05)  # two reads on the proxy's side, most likely
        await exchange.send(event[cut:])
        await exchange.end()

    return answer


STREAMED = [route for route in ROUTES if route.stream]


async def test_a_key_quoted_mid_stream_is_masked_on_every_route(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    def check(outcome: Outcome) -> None:
        assert KEY.encode() not in outcome.body, outcome.body
        if outcome.route.stream:
            assert stream_error(outcome).startswith("Incorrect API key provided: ***")

    caplog.set_level("DEBUG")
    async with stack.answering(error_quoting(KEY)) as url:
        await each_route(url, ROUTES, check)
    assert all(KEY not in record.getMessage() for record in caplog.records)
    assert any("Incorrect API key provided: ***" in record.getMessage() for record in caplog.records)


async def test_a_forwarded_client_key_quoted_mid_stream_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    """With no key of its own the proxy forwards the client's; the upstream's words must not show it either."""
    client_key = "client-own-key-0123456789"
    caplog.set_level("DEBUG")
    async with RawUpstream(error_quoting("")) as upstream, proxy(upstream.url, api_key=None) as url:
        headers = {"authorization": f"Bearer {client_key}"}
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT, headers=headers) as client:
            for route in STREAMED:
                response = await client.post(route.path, json=route.body())
                assert response.status_code == 200
                assert client_key.encode() not in response.content and b"***" in response.content, route
    assert all(client_key not in record.getMessage() for record in caplog.records)


# ---------------------------------------------------------------- the total request deadline


async def dribble_forever(exchange: Exchange) -> None:
    """Streams get words forever, never silent for long; other requests get nothing at all."""
    if not exchange.streamed:
        await exchange.hold(PATIENT)
        return
    await exchange.head()
    for data in answer_frames()[:2]:
        await exchange.send(data)
    while True:
        await exchange.send(frame(delta_chunk({"content": " more"})))
        await asyncio.sleep(0.05)


def ends_by_the_deadline(seconds: float) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        words = f"the request timeout of {seconds:g} s passed before upstream 127.0.0.1:"
        if outcome.route.stream:
            assert stream_error(outcome).startswith(words)
        else:
            assert error_message(outcome, 504).startswith(words)

    return check


async def test_a_request_timeout_is_a_504_before_the_answer_and_an_error_line_after() -> None:
    async with (
        RawUpstream(dribble_forever) as upstream,
        proxy(upstream.url, read_timeout=PATIENT, request_timeout=0.5) as url,
    ):
        await each_route(url, ROUTES, ends_by_the_deadline(0.5))


async def test_a_models_timeout_ms_sets_its_deadline_and_is_not_sent(tmp_path: Any) -> None:
    config = tmp_path / "oai2ollama.toml"
    config.write_text(f'[models."{MODEL}"]\noptions = {{ timeout_ms = 400, temperature = 0.5 }}\n')
    bodies: list[dict[str, Any]] = []

    async def answer(exchange: Exchange) -> None:
        bodies.append(exchange.request)
        await dribble_forever(exchange)

    async with RawUpstream(answer) as upstream, proxy(upstream.url, read_timeout=PATIENT, config=config) as url:
        await each_route(url, ROUTES, ends_by_the_deadline(0.4))
    assert len(bodies) == len(ROUTES) and all(body["temperature"] == 0.5 for body in bodies)
    assert not any("timeout" in json.dumps(body) for body in bodies), bodies


# ---------------------------------------------------------------- the server shutting down


@asynccontextmanager
async def server_process(base_url: str, tmp_path: Any, *flags: str) -> AsyncIterator[tuple[Any, str]]:
    """`python -m oai2ollama` on a free loopback port, started from an empty directory and environment."""
    port = closed_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "HOME", "LANG", "SYSTEMROOT", "XDG_DATA_HOME")
    }
    command = ["-m", "oai2ollama", "--base-url", base_url, "--api-key", KEY, "--host", "127.0.0.1"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        "--port",
        str(port),
        *flags,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
            for _ in range(300):
                try:
                    if (await client.get("/api/version")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stopped(process: Any) -> str:
    """SIGTERM, and what the process wrote to stderr until it exited."""
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    async with asyncio.timeout(CLIENT_TIMEOUT * 2):
        stderr = await process.stderr.read()
        await process.wait()
    return stderr.decode()


async def streams_through_a_stop(url: str, process: Any, on_stop: Callable[[], None]) -> tuple[list[Outcome], str]:
    """Open a stream on each route, stop the server once each has begun, and read them to their end."""
    begun = [asyncio.Event() for _ in STREAMED]

    async def read(route: Route, begun: asyncio.Event) -> Outcome:
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
            async with client.stream("POST", route.path, json=route.body()) as response:
                received, broken = b"", None
                try:
                    async for part in response.aiter_bytes():
                        received += part
                        begun.set()
                except httpx.HTTPError as exc:
                    broken = f"{type(exc).__name__}: {exc}"
        return Outcome(route, response.status_code, response.headers, received, broken, 0.0)

    readers = [asyncio.create_task(read(route, event)) for route, event in zip(STREAMED, begun, strict=True)]
    async with asyncio.timeout(CLIENT_TIMEOUT):
        for event in begun:
            await event.wait()
    stop = asyncio.create_task(stopped(process))
    await asyncio.sleep(0.2)  # the server has stopped accepting and is waiting for the open streams
    on_stop()
    outcomes = await asyncio.gather(*readers)
    return outcomes, await stop


def quiet_exit(process: Any, stderr: str) -> None:
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr
    assert "Cancel" not in stderr, stderr  # uvicorn's backstop, which cancels what is left, was not needed


async def test_streams_open_past_the_grace_end_with_a_shutting_down_line(tmp_path: Any) -> None:
    async def endless(exchange: Exchange) -> None:
        await exchange.head()
        for data in answer_frames()[:3]:
            await exchange.send(data)
        await exchange.hold(PATIENT)

    async with (
        RawUpstream(endless) as upstream,
        server_process(upstream.url, tmp_path, "--shutdown-grace", "0.5") as (process, url),
    ):
        outcomes, stderr = await streams_through_a_stop(url, process, lambda: None)
        assert upstream.hung_up.is_set(), "the upstream requests were closed"
    for outcome in outcomes:
        assert stream_error(outcome) == "the server is shutting down", outcome.route
    quiet_exit(process, stderr)
    assert stderr.count("ending 3 open answer(s)") == 1, stderr


async def test_streams_that_finish_within_the_grace_are_whole(tmp_path: Any) -> None:
    release = asyncio.Event()

    async def slow(exchange: Exchange) -> None:
        frames = answer_frames()
        await exchange.head()
        for data in frames[:3]:
            await exchange.send(data)
        await release.wait()
        for data in frames[3:]:
            await exchange.send(data)
        await exchange.end()

    async with (
        RawUpstream(slow) as upstream,
        server_process(upstream.url, tmp_path, "--shutdown-grace", "20") as (process, url),
    ):
        outcomes, stderr = await streams_through_a_stop(url, process, release.set)
    for outcome in outcomes:
        assert answer_text(outcome) == TEXT, outcome.route
    quiet_exit(process, stderr)
