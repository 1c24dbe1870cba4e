"""The OpenAI routes Ollama serves (/v1/*), relayed to the upstream.

The upstream's status, content type and body (error bodies too) reach the client unchanged and
streams are relayed chunk by chunk; only the model name is resolved and client-private fields
are dropped on the way up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response

from .. import wire
from ..catalog import Catalog
from ..errors import ProxyError, UpstreamError, message_from_body, openai_body
from ..http import StreamResponse, encode_stream, json_body, json_response
from ..records import ErrorKind, state_of
from ..translate.model_views import openai_model
from ..translate.openai_request import chat_controls, upstream_request
from ..translate.overrides import openai_request as openai_overrides
from ..translate.reasoning import without_reasoning_document, without_reasoning_events
from ..translate.reasoning_echo import ReasoningEcho
from ..translate.usage import UsageTap, request_tokens, token_usage
from ..upstream import ERROR_BODY_LIMIT, relayed_headers
from ..upstream import Response as UpstreamResponse
from . import Endpoint, RouteTable, send_upstream

routes = RouteTable()

# The field upstreams read a reasoning effort from: OpenAI's name, which most servers share (once
# upstreams have kinds, each kind names its own).


def _sse_error(exc: ProxyError) -> bytes:
    return wire.sse_frame(openai_body(exc.status, exc.message))


def _same(chunk: bytes) -> bytes:
    return chunk


def _no_bytes(exc: ProxyError) -> bytes:
    return b""


SMALL_DOCUMENT = 1 << 20


def _streamable(content_type: str) -> bool:
    return "event-stream" in content_type or "json" in content_type


def _small_document(response: UpstreamResponse) -> bool:
    length = response.headers.get("content-length", "")
    return "event-stream" not in response.content_type and length.isdigit() and int(length) <= SMALL_DOCUMENT


async def _relay(request: Request, path: str) -> Response:
    req = await json_body(request)
    catalog: Catalog = request.app.state.catalog
    request.state.model = req.get("model")
    card = await catalog.resolve(req.get("model"))
    body = upstream_request(req, upstream_model=card.upstream_id)
    capabilities = frozenset(card.capabilities)
    exclude = False
    if path == "/chat/completions":
        effort_field = catalog.dialect(catalog.target(card)).effort_field
        body, exclude = chat_controls(body, card.options, capabilities=capabilities, reasoning_field=effort_field)
    else:
        body = openai_overrides(body, card.options, path=path, capabilities=capabilities)
    response = await send_upstream(request, card, path, body, translated=False)
    if not response.ok:
        request.state.error_kind = ErrorKind.of_upstream_status(response.status)
        return await relay_error(response)
    streamed = body.get("stream") is True
    # Text is counted only where no usage is to be expected: OpenAI servers send it on a stream
    # only when asked (`stream_options.include_usage`), and embeddings have no output.
    tap = UsageTap(count_text=path != "/embeddings" and not (streamed and _asks_usage(body)))
    relay_usage(request, tap, body)
    if exclude:
        response = cast(UpstreamResponse, WithoutReasoning(response))
    chat = path == "/chat/completions" and not exclude  # hidden reasoning has nothing to echo
    return await relay_answer(response, streamed=streamed, tap=tap, request=request, echo_reasoning=chat)


def _asks_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def relay_usage(request: Request, tap: UsageTap, body: dict[str, Any]) -> None:
    """The relayed answer's usage for the request's record, from `tap` once the answer is over."""
    request.state.usage = lambda: token_usage(
        tap.usage,
        input_estimate=lambda: request_tokens(body),
        output_tokens=tap.output_estimate,
    )


async def relay_answer(
    response: UpstreamResponse,
    *,
    streamed: bool,
    tap: UsageTap | None = None,
    request: Request | None = None,
    echo_reasoning: bool = False,
) -> Response:
    """A successful upstream answer, relayed as it comes; `tap` sees every byte of it on the way.
    `echo_reasoning`: a chat stream's reasoning is also given as `reasoning_text` (see `reasoning_echo`)."""
    if streamed and not _streamable(response.content_type):
        # An HTML page or plain text with 200 where a stream was asked for: an upstream fault,
        # said as one, not relayed as if it were the answer.
        preview = (await response.read(ERROR_BODY_LIMIT))[:120].decode("utf-8", "replace")
        raise UpstreamError(f"upstream {response.target.host} sent a body that is not an event stream: {preview}")
    if _small_document(response):
        # A non-streamed answer of known, modest size is one JSON document: sent whole with its
        # length, it skips the streaming machinery, and a read failure is still a proper error.
        body = await response.read()
        if tap is not None:
            tap.feed_whole(body)
        return Response(body, status_code=response.status, headers=relayed_headers(response.headers))
    sse = "event-stream" in response.content_type
    on_error = _sse_error if sse else _no_bytes
    state = None
    if request is not None:
        request.state.streamed = streamed
        state = state_of(request.scope)
    encode: Callable[[bytes], bytes] = tap.feed if tap is not None else _same
    finish = None
    if sse and echo_reasoning:
        echo, tapped = ReasoningEcho(), encode
        encode, finish = (lambda chunk: echo.feed(tapped(chunk))), echo.close
    return StreamResponse(
        encode_stream(response.chunks(), encode, on_error, state, finish),
        status_code=response.status,
        headers=relayed_headers(response.headers),
        on_error=on_error,
    )


class WithoutReasoning:
    """An upstream answer read with its reasoning taken out (`exclude_reasoning`), for `relay_answer`:
    only the requests that ask for it pay for parsing the chunks."""

    def __init__(self, response: UpstreamResponse):
        self._response = response
        self.target, self.status, self.headers = response.target, response.status, response.headers
        self.content_type = response.content_type

    async def read(self, limit: int | None = None) -> bytes:
        body = await self._response.read(limit)
        return body if limit is not None else without_reasoning_document(body)

    def chunks(self) -> AsyncIterator[bytes]:
        if "event-stream" in self.content_type:
            return without_reasoning_events(self._response.chunks())
        return self._document()

    async def _document(self) -> AsyncIterator[bytes]:
        yield await self.read()


async def relay_error(response: UpstreamResponse, body: bytes | None = None) -> Response:
    """An upstream error reaches the client as sent (it is small, so it is read whole), except that
    secrets are masked (as they were read) and a gateway's HTML page becomes an OpenAI error object.
    `body` is the error body when the caller has read it already."""
    if body is None:
        body = await response.read(ERROR_BODY_LIMIT)
    headers = relayed_headers(response.headers)
    if body.lstrip().startswith(b"<"):
        message = message_from_body(response.status, body)
        headers.pop("content-type", None)
        return json_response(openai_body(response.status, message), status=response.status, headers=headers)
    return Response(body, status_code=response.status, headers=headers)


def _relay_to(path: str) -> Endpoint:
    async def relay(request: Request) -> Response:
        return await _relay(request, path)

    return relay


for route, path in (
    ("/v1/chat/completions", "/chat/completions"),
    ("/chat/completions", "/chat/completions"),  # some Copilot builds call the base URL without /v1
    ("/v1/completions", "/completions"),
    ("/v1/embeddings", "/embeddings"),
):
    routes(route, "POST")(_relay_to(path))


@routes("/v1/models", "GET")
@routes("/models", "GET")
async def models(request: Request) -> Response:
    catalog: Catalog = request.app.state.catalog
    cards = await catalog.cards()
    return json_response({"object": "list", "data": [openai_model(card, catalog.started) for card in cards]})


@routes("/v1/models/{model:path}", "GET")
async def model(request: Request) -> Response:
    model: str = request.path_params["model"]
    catalog: Catalog = request.app.state.catalog
    card = await catalog.known(model)
    answer = openai_model(card, catalog.started)
    answer["id"] = model
    return json_response(answer)
