"""The one upstream client: pooling, authentication, and every failure turned into our own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from oai2ollama.app import create_app
from oai2ollama.config import Settings
from oai2ollama.errors import UpstreamError
from oai2ollama.target import Target
from oai2ollama.transport import AiohttpTransport
from oai2ollama.upstream import Upstreams

from .fakes import API_KEY, BASE_URL, FakeUpstream, closed_port, dribble, openai_error, sse, sse_response, text_stream

pytestmark = pytest.mark.anyio

TARGET = Target(BASE_URL, api_key=API_KEY)
KEYLESS = Target(BASE_URL)


@pytest.fixture
async def mock(fake: FakeUpstream) -> AsyncIterator[Upstreams]:
    client = Upstreams(transport=fake.transport())
    yield client
    await client.aclose()


# ---- the pooled client ------------------------------------------------------------------------


async def test_lifespan_opens_one_pooled_client_and_closes_it() -> None:
    settings = Settings(_env_file=None, base_url=BASE_URL, connect_timeout=4, read_timeout=900)  # type: ignore[call-arg]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        upstreams: Upstreams = app.state.upstreams
        client: httpx.AsyncClient = upstreams._client
        assert app.state.catalog is not None
        assert client.timeout.connect == 4 and client.timeout.read == 900
        assert not client.follow_redirects  # `Upstreams._exchange` follows them, within one origin
        transport = client._transport
        assert isinstance(transport, AiohttpTransport), "HTTP/1.1 upstreams go through the faster transport"
        assert transport._limits.max_connections >= 500, "hundreds of concurrent streams must not queue"
    assert client.is_closed


async def test_http2_uses_httpx_transport_with_http2_offered() -> None:
    upstreams = Upstreams(http2=True)
    try:
        pool = upstreams._client._transport._pool  # type: ignore[attr-defined]
        assert pool._http2, "HTTP/2 must be offered where the upstream supports it"
        assert pool._max_connections >= 500
        assert pool._max_keepalive_connections >= 100
    finally:
        await upstreams.aclose()


async def test_one_client_for_every_request(fake: FakeUpstream, mock: Upstreams) -> None:
    seen: set[int] = set()
    fake.on("GET", "/ping", lambda request: httpx.Response(200, json={}))
    client = mock._client
    for _ in range(3):
        response = await mock.send(TARGET, "GET", "/ping")
        await response.read()
        seen.add(id(mock._client))
    assert seen == {id(client)}


async def test_redirects_are_followed(fake: FakeUpstream, mock: Upstreams) -> None:
    fake.on("POST", "/old", httpx.Response(307, headers={"location": BASE_URL + "/new"}))
    fake.on("POST", "/new", lambda request: httpx.Response(200, json={"got": request.content.decode()}))
    response = await mock.send(TARGET, "POST", "/old", body={"a": 1})
    assert response.status == 200
    assert await response.json() == {"got": '{"a":1}'}


# ---- authentication -----------------------------------------------------------------------------


def auth_headers(fake: FakeUpstream) -> list[str]:
    return fake.requests[-1].headers.get_list("authorization")


async def send_models(mock: Upstreams, target: Target, client_headers: dict[str, str] | None) -> None:
    response = await mock.send(target, "GET", "/models", client_headers=httpx.Headers(client_headers or {}))
    await response.read()


@pytest.mark.parametrize(
    ("target", "client_headers", "sent"),
    [
        (TARGET, None, [f"Bearer {API_KEY}"]),
        (TARGET, {"Authorization": "Bearer client-key"}, [f"Bearer {API_KEY}"]),
        (TARGET, {"x-api-key": "client-key"}, [f"Bearer {API_KEY}"]),
        (KEYLESS, {"Authorization": "Bearer client-key"}, ["Bearer client-key"]),
        (KEYLESS, {"x-api-key": "client-key"}, ["Bearer client-key"]),
        (KEYLESS, {"Authorization": "Bearer client-key", "x-api-key": "other"}, ["Bearer client-key"]),
        (KEYLESS, {"Authorization": "Bearer "}, []),
        (KEYLESS, {"Authorization": "Bearer ", "x-api-key": "client-key"}, ["Bearer client-key"]),
        (KEYLESS, None, []),
    ],
    ids=[
        "key",
        "key-beats-client",
        "key-beats-x-api-key",
        "client-forwarded",
        "x-api-key-as-bearer",
        "authorization-first",
        "empty-bearer-dropped",
        "empty-bearer-then-x-api-key",
        "nothing",
    ],
)
async def test_authorization(
    fake: FakeUpstream, mock: Upstreams, target: Target, client_headers: dict[str, str] | None, sent: list[str]
) -> None:
    await send_models(mock, target, client_headers)
    assert auth_headers(fake) == sent
    assert "x-api-key" not in fake.requests[-1].headers


async def test_key_not_in_target_repr() -> None:
    assert API_KEY not in repr(TARGET) and API_KEY not in str(TARGET)


# ---- transport failures -------------------------------------------------------------------------


async def test_connection_refused_is_502_naming_host_and_cause() -> None:
    upstreams = Upstreams(connect_timeout=2)
    target = Target(f"http://127.0.0.1:{closed_port()}/v1", api_key=API_KEY)
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstreams.send(target, "GET", "/models")
    finally:
        await upstreams.aclose()
    assert caught.value.status == 502
    message = caught.value.message
    assert "127.0.0.1" in message
    assert "refused" in message.lower() or "connect call failed" in message.lower()
    assert API_KEY not in message


async def test_silent_upstream_times_out_with_504() -> None:
    hold = asyncio.Event()

    async def answer_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()
        writer.close()

    server = await asyncio.start_server(answer_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstreams = Upstreams(connect_timeout=2, read_timeout=0.2)
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstreams.send(Target(f"http://127.0.0.1:{port}/v1"), "POST", "/chat/completions", body={})
    finally:
        await upstreams.aclose()
        hold.set()
        server.close()
        await server.wait_closed()
    assert caught.value.status == 504
    assert "127.0.0.1" in caught.value.message and "0.2 s" in caught.value.message


@pytest.mark.parametrize(
    ("raised", "status", "words"),
    [
        (httpx.ConnectTimeout("slow"), 504, "connection"),
        (httpx.ReadTimeout("slow"), 504, "did not answer"),
        (httpx.PoolTimeout("busy"), 504, "no free connection"),
        (httpx.ConnectError("[Errno 111] Connection refused"), 502, "Connection refused"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), 502, "disconnected"),
    ],
)
async def test_transport_errors_become_ours(raised: Exception, status: int, words: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise raised

    upstreams = Upstreams(transport=httpx.MockTransport(fail))
    try:
        with pytest.raises(UpstreamError) as caught:
            await upstreams.send(TARGET, "GET", "/models")
    finally:
        await upstreams.aclose()
    assert caught.value.status == status
    assert words in caught.value.message and "upstream.test" in caught.value.message


async def test_failure_mid_body_is_502(fake: FakeUpstream, mock: Upstreams) -> None:
    body = dribble(sse(*text_stream("a"), done=False), error=httpx.ReadError("connection reset"))
    fake.on("POST", "/chat/completions", sse_response(body))
    response = await mock.send(TARGET, "POST", "/chat/completions", body={})
    received = b""
    with pytest.raises(UpstreamError) as caught:
        async for part in response.chunks():
            received += part
    assert b"chat.completion.chunk" in received
    assert caught.value.status == 502 and "connection reset" in caught.value.message


async def test_invalid_json_is_502(fake: FakeUpstream, mock: Upstreams) -> None:
    fake.on("GET", "/models", httpx.Response(200, content=b"<html>login</html>"))
    with pytest.raises(UpstreamError) as caught:
        await mock.get_json(TARGET, "/models")
    assert caught.value.status == 502 and "invalid JSON" in caught.value.message


# ---- error answers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (openai_error(400, "max_tokens is too large"), 400, "max_tokens is too large"),
        (openai_error(401, "Incorrect API key provided"), 401, "Incorrect API key provided"),
        (openai_error(404, "The model `x` does not exist"), 404, "The model `x` does not exist"),
        (httpx.Response(422, json={"detail": "field required"}), 422, "field required"),
        (httpx.Response(400, json={"error": "bad prompt"}), 400, "bad prompt"),
        (httpx.Response(500, json={"message": "engine crashed"}), 500, "engine crashed"),
        (httpx.Response(503, text="overloaded, try later"), 503, "overloaded, try later"),
        (
            httpx.Response(502, html="<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"),
            502,
            "upstream answered 502 Bad Gateway",
        ),
        (httpx.Response(500, content=b""), 500, "upstream answered 500 Internal Server Error"),
    ],
)
async def test_raise_for_error_keeps_status_and_message(
    fake: FakeUpstream, mock: Upstreams, answer: httpx.Response, status: int, message: str
) -> None:
    fake.on("POST", "/chat/completions", answer)
    response = await mock.send(TARGET, "POST", "/chat/completions", body={})
    with pytest.raises(UpstreamError) as caught:
        await response.raise_for_error()
    assert caught.value.status == status
    assert caught.value.message == message
    assert "<" not in caught.value.message


async def test_retry_after_kept_on_429(fake: FakeUpstream, mock: Upstreams) -> None:
    fake.on("POST", "/chat/completions", openai_error(429, "slow down", "rate_limit_error", **{"Retry-After": "7"}))
    response = await mock.send(TARGET, "POST", "/chat/completions", body={})
    with pytest.raises(UpstreamError) as caught:
        await response.raise_for_error()
    assert caught.value.status == 429
    assert caught.value.headers.get("retry-after") == "7"


async def test_ok_answer_raises_nothing(fake: FakeUpstream, mock: Upstreams) -> None:
    response = await mock.send(TARGET, "GET", "/models")
    await response.raise_for_error()
    assert (await response.json())["object"] == "list"


async def test_key_quoted_by_the_upstream_is_masked(fake: FakeUpstream, mock: Upstreams) -> None:
    fake.on("GET", "/models", openai_error(401, f"Incorrect API key provided: {API_KEY}."))
    with pytest.raises(UpstreamError) as caught:
        await mock.get_json(TARGET, "/models")
    assert API_KEY not in caught.value.message and "***" in caught.value.message


async def test_body_is_released_after_an_error(fake: FakeUpstream, mock: Upstreams) -> None:
    closed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b'{"error": {"message": "nope"}}'
        finally:
            closed.set()

    fake.on("GET", "/models", lambda request: httpx.Response(400, content=body()))
    with pytest.raises(UpstreamError):
        await mock.get_json(TARGET, "/models")
    assert closed.is_set()
