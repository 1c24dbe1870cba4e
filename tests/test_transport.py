"""The upstream client on real sockets: each transport failure becomes one readable `UpstreamError`,
whichever transport carries the request (ours over aiohttp, or httpx's for HTTP/2), and
connections go back to the pool or are closed as they should."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator

import pytest

from oai2ollama.errors import UpstreamError
from oai2ollama.target import Target
from oai2ollama.transport import describe_os_error
from oai2ollama.upstream import ERROR_BODY_LIMIT, Upstreams

from .test_faults import (
    Answer,
    Exchange,
    RawUpstream,
    answer_frames,
    closed_port,
    endless_error_page,
    error_quoting,
)

pytestmark = pytest.mark.anyio

READ_TIMEOUT = 0.3


@pytest.fixture(params=[False, True], ids=["aiohttp", "httpx-http2"])
async def upstreams(request: pytest.FixtureRequest) -> AsyncIterator[Upstreams]:
    client = Upstreams(connect_timeout=2, read_timeout=READ_TIMEOUT, http2=request.param)
    yield client
    await client.aclose()


async def fetch(upstreams: Upstreams, url: str) -> bytes:
    """POST and read the whole body, as the routes do."""
    response = await upstreams.send(Target(url, "sk-transport"), "POST", "/chat/completions", body={"stream": True})
    await response.raise_for_error()
    return b"".join([part async for part in response.chunks()])


async def closed_at_once(exchange: Exchange) -> None:
    await exchange.close()


async def reset_at_once(exchange: Exchange) -> None:
    exchange.reset()


async def not_http(exchange: Exchange) -> None:
    exchange.writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await exchange.writer.drain()
    await exchange.close()


async def silent(exchange: Exchange) -> None:
    await exchange.hold(READ_TIMEOUT * 10)


async def chunked_then_closed(exchange: Exchange) -> None:
    await exchange.head()
    await exchange.send(answer_frames()[0])
    await asyncio.sleep(0.05)
    await exchange.close()


async def chunked_then_reset(exchange: Exchange) -> None:
    await exchange.head()
    await exchange.send(answer_frames()[0])
    await asyncio.sleep(0.05)
    exchange.reset()


async def short_of_its_length(exchange: Exchange) -> None:
    await exchange.head(framing="length:10000")
    await exchange.send(answer_frames()[0])
    await asyncio.sleep(0.05)
    await exchange.close()


async def silent_after_headers(exchange: Exchange) -> None:
    await exchange.head()
    await exchange.send(answer_frames()[0])
    await exchange.hold(READ_TIMEOUT * 10)


FAULTS: list[tuple[Answer, int, str]] = [
    (closed_at_once, 502, "failed to answer: "),
    (reset_at_once, 502, "failed to answer: connection reset by peer"),
    (not_http, 502, "failed to answer: "),
    (silent, 504, f"did not answer within {READ_TIMEOUT} s"),
    (chunked_then_closed, 502, "broke off the answer: "),
    (chunked_then_reset, 502, "broke off the answer: connection reset by peer"),
    (short_of_its_length, 502, "broke off the answer: "),
    (silent_after_headers, 504, f"stopped sending for too long (over {READ_TIMEOUT} s)"),
]


@pytest.mark.parametrize(("answer", "status", "words"), FAULTS, ids=[answer.__name__ for answer, _, _ in FAULTS])
async def test_each_transport_failure_is_one_readable_error(
    upstreams: Upstreams, answer: Answer, status: int, words: str
) -> None:
    async with RawUpstream(answer) as upstream:
        began = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await fetch(upstreams, upstream.url)
    message = caught.value.message
    assert caught.value.status == status, message
    assert words in message and message.startswith("upstream 127.0.0.1"), message
    assert "\n" not in message and "400, message" not in message, message  # aiohttp's own texts span lines
    assert time.monotonic() - began < READ_TIMEOUT * 5


async def test_the_aiohttp_transport_names_what_it_could_not_parse() -> None:
    upstreams = Upstreams(read_timeout=READ_TIMEOUT)
    try:
        async with RawUpstream(not_http) as upstream:
            with pytest.raises(UpstreamError) as caught:
                await fetch(upstreams, upstream.url)
    finally:
        await upstreams.aclose()
    assert "failed to answer: not a valid HTTP answer (Bad status line: " in caught.value.message
    assert "SSH-2.0-OpenSSH_9.6" in caught.value.message


async def test_refused_names_host_port_and_cause(upstreams: Upstreams) -> None:
    port = closed_port()
    with pytest.raises(UpstreamError) as caught:
        await fetch(upstreams, f"http://127.0.0.1:{port}/v1")
    assert (caught.value.status, caught.value.message) == (
        502,
        f"cannot reach upstream 127.0.0.1:{port}: connection refused",
    )


async def test_a_whole_answer_returns_its_connection_to_the_pool(upstreams: Upstreams) -> None:
    async def whole(exchange: Exchange) -> None:
        await exchange.head()
        for data in answer_frames():
            await exchange.send(data)
        await exchange.end()

    async with RawUpstream(whole) as upstream:
        for _ in range(3):
            assert (await fetch(upstreams, upstream.url)).endswith(b"data: [DONE]\n\n")
        assert (upstream.requests, upstream.connections) == (3, 1)


async def test_an_abandoned_answer_closes_its_connection_at_once() -> None:
    async def endless(exchange: Exchange) -> None:
        await exchange.head()
        await exchange.send(answer_frames()[0])
        await exchange.hold(10)

    upstreams = Upstreams(read_timeout=30)
    try:
        async with RawUpstream(endless) as upstream:
            response = await upstreams.send(Target(upstream.url), "POST", "/chat/completions", body={})
            chunks = response.chunks()
            await anext(chunks)
            await chunks.aclose()
            closed = time.monotonic()
            await asyncio.wait_for(upstream.hung_up.wait(), 2)
            assert upstream.hung_up_at - closed < 0.5
    finally:
        await upstreams.aclose()


async def test_a_huge_error_body_is_not_waited_for(upstreams: Upstreams) -> None:
    """A gateway pouring out an endless error page: the first bytes say enough."""

    async with RawUpstream(endless_error_page) as upstream:
        began = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await fetch(upstreams, upstream.url)
        await asyncio.wait_for(upstream.hung_up.wait(), 1)  # the connection is closed, not left to the GC
    assert caught.value.status == 503
    assert caught.value.message.startswith("Service Unavailable.") and len(caught.value.message) < 600
    assert time.monotonic() - began < 2
    assert ERROR_BODY_LIMIT <= 1 << 20


async def test_an_error_answer_keeps_retry_after_but_not_its_content_type(upstreams: Upstreams) -> None:
    async def limited(exchange: Exchange) -> None:
        await exchange.whole(429, "text/html", b"<html>slow down</html>", retry_after="3", x_ratelimit_reset="1s")

    async with RawUpstream(limited) as upstream:
        with pytest.raises(UpstreamError) as caught:
            await fetch(upstreams, upstream.url)
    assert caught.value.status == 429
    assert caught.value.headers == {"retry-after": "3", "x-ratelimit-reset": "1s"}


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)"), "connection refused"),
        (OSError(errno.ECONNREFUSED, "Connect call failed"), "connection refused"),  # aiohttp's wrapper
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connection reset by peer"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "host unreachable"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot resolve the host name (Name or"),
        (OSError(-3, "Temporary failure in name resolution"), "cannot resolve the host name (Temporary failure"),
        (TimeoutError(), "timed out"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "TLS failed"),
        (OSError(errno.EMFILE, "Too many open files"), "Too many open files"),
        (OSError("All connection attempts failed"), "All connection attempts failed"),
    ],
)
def test_socket_failures_in_a_few_words(error: OSError, words: str) -> None:
    assert describe_os_error(error).startswith(words)


def test_an_untrusted_certificate_is_named() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate"
    assert describe_os_error(error) == "TLS certificate not accepted (self-signed certificate)"


async def test_a_stream_that_keeps_producing_outlives_the_read_timeout(upstreams: Upstreams) -> None:
    """The read timeout is how long the upstream may stay silent, not how long an answer may take."""

    async def steady(exchange: Exchange) -> None:
        await exchange.head()
        for data in answer_frames([f" w{n}" for n in range(10)]):
            await exchange.send(data)
            await asyncio.sleep(READ_TIMEOUT / 3)
        await exchange.end()

    async with RawUpstream(steady) as upstream:
        began = time.monotonic()
        body = await fetch(upstreams, upstream.url)
    assert time.monotonic() - began > READ_TIMEOUT * 4
    assert body.endswith(b"data: [DONE]\n\n") and b" w9" in body


async def test_an_upstream_that_never_reads_a_huge_request_is_504(upstreams: Upstreams) -> None:
    """Socket buffers fill and the request cannot be sent whole: the answer still times out."""

    release = asyncio.Event()

    async def deaf_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(deaf_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        began = time.monotonic()
        with pytest.raises(UpstreamError) as caught:
            await upstreams.send(Target(f"http://127.0.0.1:{port}/v1"), "POST", "/chat/completions", body=b"x" * 2**25)
        assert time.monotonic() - began < READ_TIMEOUT * 8
    finally:
        release.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # the handler closes its socket
    assert caught.value.status == 504, caught.value.message
    assert caught.value.message == f"upstream 127.0.0.1:{port} stopped reading the request for {READ_TIMEOUT} s"


# ---- redirects: within the upstream's own origin only, each request sent once per hop


API_KEY_HEADER = "azure-style-secret-header-value"
CONVERSATION = {"messages": [{"role": "user", "content": "a private conversation"}], "stream": False}


def redirect_target(url: str) -> Target:
    return Target(url, "sk-redirect-secret-0123", headers={"api-key": API_KEY_HEADER})


def recording(seen: list[Exchange], then: Answer) -> Answer:
    async def answer(exchange: Exchange) -> None:
        seen.append(exchange)
        await then(exchange)

    return answer


async def ok(exchange: Exchange) -> None:
    await exchange.whole(200, "application/json", json.dumps({"got": exchange.request}).encode())


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_origin_is_refused_and_carries_nothing_there(
    upstreams: Upstreams, status: int
) -> None:
    """Two servers on two ports are two origins: what the upstream was given must stay with it."""
    there: list[Exchange] = []
    here: list[Exchange] = []
    async with RawUpstream(recording(there, ok)) as other:
        elsewhere = other.url + "/chat/completions?token=signed-secret"

        async def moved(exchange: Exchange) -> None:
            await exchange.whole(status, "text/plain", b"moved", location=elsewhere)

        async with RawUpstream(recording(here, moved)) as upstream:
            with pytest.raises(UpstreamError) as caught:
                await upstreams.send(redirect_target(upstream.url), "POST", "/chat/completions", body=CONVERSATION)
    port = upstream.url.split(":")[2].split("/")[0]
    other_port = other.url.split(":")[2].split("/")[0]
    assert there == [], [(e.method, e.path, e.headers) for e in there]
    assert len(here) == 1, "the request must be sent once"
    assert caught.value.status == 502
    message = caught.value.message
    assert message.startswith(f"upstream 127.0.0.1:{port} redirected to another origin (http://127.0.0.1:{other_port})")
    for secret in ("sk-redirect-secret", API_KEY_HEADER, "signed-secret"):
        assert secret not in message


async def test_a_redirect_within_the_origin_is_followed_once_per_hop(upstreams: Upstreams) -> None:
    seen: list[Exchange] = []

    async def answer(exchange: Exchange) -> None:
        if exchange.path == "/v1/old":
            await exchange.whole(307, "text/plain", b"", location="/v1/new")
        else:
            await ok(exchange)

    async with RawUpstream(recording(seen, answer)) as upstream:
        response = await upstreams.send(redirect_target(upstream.url), "POST", "/old", body=CONVERSATION)
        assert await response.json() == {"got": CONVERSATION}
    assert [(e.method, e.path) for e in seen] == [("POST", "/v1/old"), ("POST", "/v1/new")]
    assert all(e.headers["api-key"] == API_KEY_HEADER for e in seen)
    assert all(e.request == CONVERSATION for e in seen)


async def test_a_303_within_the_origin_becomes_a_get_without_the_body(upstreams: Upstreams) -> None:
    seen: list[Exchange] = []

    async def answer(exchange: Exchange) -> None:
        if exchange.path == "/v1/old":
            await exchange.whole(303, "text/plain", b"", location="/v1/new")
        else:
            await ok(exchange)

    async with RawUpstream(recording(seen, answer)) as upstream:
        response = await upstreams.send(redirect_target(upstream.url), "POST", "/old", body=CONVERSATION)
        await response.read()
    assert [(e.method, e.path, e.request) for e in seen] == [("POST", "/v1/old", CONVERSATION), ("GET", "/v1/new", {})]
    assert "content-type" not in seen[1].headers


async def test_endless_redirects_end_after_a_few_hops(upstreams: Upstreams) -> None:
    seen: list[Exchange] = []

    async def loop(exchange: Exchange) -> None:
        await exchange.whole(307, "text/plain", b"", location=exchange.path)

    async with RawUpstream(recording(seen, loop)) as upstream:
        with pytest.raises(UpstreamError) as caught:
            await upstreams.send(redirect_target(upstream.url), "POST", "/chat/completions", body=CONVERSATION)
    assert caught.value.status == 502
    assert "redirected more than 5 times" in caught.value.message
    assert len(seen) == 6


async def test_a_configured_header_quoted_mid_stream_is_masked(upstreams: Upstreams) -> None:
    async with RawUpstream(error_quoting(API_KEY_HEADER)) as upstream:
        target = redirect_target(upstream.url)
        response = await upstreams.send(target, "POST", "/chat/completions", body={"stream": True})
        body = b"".join([chunk async for chunk in response.chunks()])
    assert API_KEY_HEADER.encode() not in body
    assert b"Incorrect API key provided: ***." in body


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, False),
        ({"NO_PROXY": "127.0.0.1,localhost"}, False),
        ({"no_proxy": "*"}, False),
        ({"HTTPS_PROXY": "http://proxy.example:3128"}, True),
        ({"http_proxy": "http://proxy.example:3128", "NO_PROXY": "localhost"}, True),
        ({"ALL_PROXY": ""}, False),
    ],
)
def test_only_a_named_proxy_turns_on_aiohttps_per_request_proxy_lookup(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: bool
) -> None:
    # With trust_env, aiohttp looks proxies and netrc up in a thread on every request (measured:
    # ~40% fewer requests/s); NO_PROXY, common in corporate shells, must not switch that on.
    from oai2ollama import transport

    for name in list(transport.os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert transport._proxy_configured() is expected


# ---- each phase bounded by its own timeout


async def hold_open(exchange: Exchange) -> None:
    await exchange.head()
    await exchange.send(answer_frames()[0])
    await exchange.hold(60)


@pytest.mark.parametrize("http2", [False, True], ids=["aiohttp", "httpx-http2"])
async def test_waiting_for_a_pooled_connection_is_bounded_by_the_connect_timeout(http2: bool) -> None:
    """With the pool full, the next request fails after the connect timeout, not the read timeout."""
    upstreams = Upstreams(connect_timeout=0.3, read_timeout=60, http2=http2, max_connections=1)
    try:
        async with RawUpstream(hold_open) as upstream:
            target = Target(upstream.url)
            first = await upstreams.send(target, "POST", "/chat/completions", body={"stream": True})
            try:
                with pytest.raises(UpstreamError) as caught:
                    async with asyncio.timeout(10):  # only keeps a hang from hanging the suite
                        await upstreams.send(target, "POST", "/chat/completions", body={"stream": True})
            finally:
                await first.aclose()
    finally:
        await upstreams.aclose()
    assert caught.value.status == 504, caught.value.message


async def test_dns_resolution_is_bounded_by_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp.connector

    async def never(*args: object, **kwargs: object) -> list[dict[str, object]]:
        await asyncio.Event().wait()
        return []

    monkeypatch.setattr(aiohttp.connector.DefaultResolver, "resolve", never)
    upstreams = Upstreams(connect_timeout=0.3, read_timeout=60)
    try:
        with pytest.raises(UpstreamError) as caught:
            async with asyncio.timeout(10):
                await upstreams.send(Target("http://slow-dns.invalid/v1"), "GET", "/models")
    finally:
        await upstreams.aclose()
    assert caught.value.status == 504, caught.value.message
    assert caught.value.message == "upstream slow-dns.invalid did not accept a connection in time"


async def test_a_request_timeout_bounds_the_whole_answer(upstreams: Upstreams) -> None:
    async def endless(exchange: Exchange) -> None:
        await exchange.head()
        while True:  # never silent for long: only a total deadline ends it
            await exchange.send(answer_frames()[1])
            await asyncio.sleep(READ_TIMEOUT / 5)

    async with RawUpstream(endless) as upstream:
        target = Target(upstream.url)
        response = await upstreams.send(target, "POST", "/x", body={"stream": True}, request_timeout=0.5)
        with pytest.raises(UpstreamError) as caught:
            async with asyncio.timeout(10):
                async for _ in response.chunks():
                    pass
    assert caught.value.status == 504
    assert caught.value.message.startswith("the request timeout of 0.5 s passed before upstream 127.0.0.1:")
