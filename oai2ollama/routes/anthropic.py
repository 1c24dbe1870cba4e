"""Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens), answered by the upstream's
chat completions. `x-api-key` is forwarded like a bearer token when no upstream key is set;
`anthropic-version` and `anthropic-beta` are accepted and not required."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import wire
from ..catalog import Catalog
from ..errors import BadRequest, ProxyError, anthropic_body
from ..http import SSE, StreamResponse, encode_stream, json_body, json_response, started
from ..records import state_of
from ..translate.answer import pieces, without_thinking
from ..translate.anthropic_answer import collect_message, message_events
from ..translate.anthropic_request import messages_request
from ..translate.anthropic_tokens import estimate_input_tokens
from ..translate.overrides import openai_request as openai_overrides
from ..translate.reasoning import exclude_requested
from ..translate.streams import openai_chunks
from ..translate.usage import Meter
from . import RouteTable, record_usage, send_upstream

routes = RouteTable()


def _frame(event: dict[str, Any]) -> bytes:
    return wire.sse_frame(event, event=event["type"])


def _error_frame(exc: ProxyError) -> bytes:
    return wire.sse_frame(anthropic_body(exc.status, exc.message), event="error")


@routes("/v1/messages", "POST")
@routes("/anthropic/v1/messages", "POST")  # the seed gateway's path, which its users configured
async def messages(request: Request) -> Response:
    req = await json_body(request)
    catalog: Catalog = request.app.state.catalog
    card = await catalog.resolve(req.get("model"))
    request.state.model = req["model"]
    body = messages_request(req, upstream_model=card.upstream_id)
    body = openai_overrides(body, card.options, capabilities=frozenset(card.capabilities))
    # The seed gateway's control, as on every route: the request's, else the model's option.
    hide_thinking = exclude_requested(req.get("exclude_reasoning", card.options.get("exclude_reasoning")))
    estimate = estimate_input_tokens(req)
    response = await send_upstream(request, card, "/chat/completions", body)
    await response.raise_for_error()
    upstream_chunks = openai_chunks(response.chunks(), content_type=response.content_type, host=response.target.host)
    meter = Meter()
    record_usage(request, meter, body, input_tokens=estimate)
    answer = pieces(upstream_chunks)
    if hide_thinking:
        answer = without_thinking(answer)
    events = message_events(answer, model=req["model"], input_tokens=estimate, meter=meter)
    if req.get("stream") is not True:
        return json_response(await collect_message(events))
    first: AsyncIterator[dict[str, Any]] = await started(events)
    request.state.streamed = True
    stream_body = encode_stream(first, _frame, _error_frame, state_of(request.scope))
    return StreamResponse(stream_body, media_type=SSE, on_error=_error_frame)


@routes("/v1/messages/count_tokens", "POST")
@routes("/anthropic/v1/messages/count_tokens", "POST")
async def count_tokens(request: Request) -> Response:
    """An estimate that needs no upstream call; see `estimate_input_tokens` for how it is made."""
    req = await json_body(request)
    if not isinstance(req.get("model"), str) or not req["model"]:
        raise BadRequest("model: Field required")
    request.state.model = req["model"]
    catalog: Catalog = request.app.state.catalog
    await catalog.check_access(req["model"])
    return json_response({"input_tokens": estimate_input_tokens(req)})
