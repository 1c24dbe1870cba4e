"""OpenAI's Responses API (/v1/responses): relayed to upstreams that serve it, translated to chat
completions for those that do not.

Whether an upstream serves it is its `responses` setting in the config file (`relay`,
`translate`), or, by default, learned from its first answer: a 404 that is about the route (not
about the model), a 405 or a 501 to POST /responses marks the upstream as lacking it for the rest
of the process, and that request and every later one is translated. Translated responses are
kept (unless `store: false`) for `previous_response_id` and GET /v1/responses/{id}.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from .. import wire
from ..catalog import Catalog
from ..errors import BadRequest, ProxyError, message_from_body, openai_body
from ..http import SSE, StreamResponse, encode_stream, json_body, json_response, started
from ..records import ErrorKind, state_of
from ..response_store import MemoryResponseStore, ResponseStore, conversation
from ..translate.answer import pieces, without_thinking
from ..translate.models import ModelCard
from ..translate.openai_request import upstream_request
from ..translate.overrides import openai_request as openai_overrides
from ..translate.reasoning import exclude_requested
from ..translate.responses_answer import (
    ResponseEncoder,
    collect_response,
    new_id,
    response_events,
    response_object,
    with_output_text,
)
from ..translate.responses_request import chat_request, input_items
from ..translate.streams import openai_chunks
from ..translate.usage import Meter, UsageTap
from ..upstream import ERROR_BODY_LIMIT
from . import RouteTable, record_usage, send_upstream
from .openai import relay_answer, relay_error, relay_usage

log = logging.getLogger("oai2ollama.responses")
routes = RouteTable()

ROUTE_MISSING = (404, 405, 501)


class ResponsesState:
    """Per app: the kept responses, and the upstreams learned to have no /responses."""

    def __init__(self, store: ResponseStore | None = None):
        self.store: ResponseStore = store or MemoryResponseStore()
        self.without_route: set[str] = set()


def responses_state(app: Starlette) -> ResponsesState:
    state = getattr(app.state, "responses", None)
    if state is None:
        state = app.state.responses = ResponsesState()
    return state


def route_missing(status: int, body: bytes) -> bool:
    """Whether an error to POST /responses says the route does not exist. A 404 about the model
    ("The model `x` does not exist", `model_not_found`) is the model's, and is relayed."""
    if status not in ROUTE_MISSING:
        return False
    return status != 404 or ("model" not in message_from_body(status, body).lower() and b"model_not_found" not in body)


def _frame(event: dict[str, Any]) -> bytes:
    return wire.sse_frame(event, event=event["type"])


@routes("/v1/responses", "POST")
async def create(request: Request) -> Response:
    req = await json_body(request)
    catalog: Catalog = request.app.state.catalog
    request.state.model = req.get("model")
    card = await catalog.resolve(req.get("model"))
    target = catalog.target(card)
    body = upstream_request(dict(req), upstream_model=card.upstream_id)
    body = openai_overrides(body, card.options, path="/responses", capabilities=frozenset(card.capabilities))
    # The seed gateway's control (no OpenAI field: never sent on): the request's, else the model's option.
    hide_thinking = exclude_requested(body.pop("exclude_reasoning", card.options.get("exclude_reasoning")))
    state = responses_state(request.app)
    if target.responses == "translate" or (target.responses == "auto" and target.name in state.without_route):
        return await _translate(request, req["model"], body, card, hide_thinking)
    relayed = without_summary(body) if hide_thinking else body
    response = await send_upstream(request, card, "/responses", relayed)
    if response.ok:
        tap = UsageTap()  # Responses streams always end with their usage
        relay_usage(request, tap, body)
        return await relay_answer(response, streamed=body.get("stream") is True, tap=tap, request=request)
    error = await response.read(ERROR_BODY_LIMIT)
    if target.responses == "relay" or not route_missing(response.status, error):
        request.state.error_kind = ErrorKind.of_upstream_status(response.status)
        return await relay_error(response, error)
    state.without_route.add(target.name)
    log.info("upstream %s has no /responses (%d): translating to chat completions", target.name, response.status)
    return await _translate(request, req["model"], body, card, hide_thinking)


def without_summary(body: dict[str, Any]) -> dict[str, Any]:
    """A relayed request that hides reasoning asks for no summary of it: a Responses upstream shows
    the model's reasoning only as the summary a request asks for."""
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict) or reasoning.get("summary") is None:
        return body
    return {**body, "reasoning": {key: value for key, value in reasoning.items() if key != "summary"}}


async def _translate(
    request: Request, model: str, body: dict[str, Any], card: ModelCard, hide_thinking: bool
) -> Response:
    store = responses_state(request.app).store
    previous = body.get("previous_response_id")
    history: list[dict[str, Any]] = []
    if previous is not None:
        if not isinstance(previous, str):
            raise BadRequest("previous_response_id must be a string")
        found = await conversation(store, previous)
        if found is None:
            message = f"Previous response with id '{previous}' not found."
            error = openai_body(400, message, param="previous_response_id", code="previous_response_not_found")
            return json_response(error, status=400)
        history = found
    chat = chat_request(body, upstream_model=card.upstream_id, history=history)
    chat = openai_overrides(chat, card.options, capabilities=frozenset(card.capabilities))
    response = await send_upstream(request, card, "/chat/completions", chat)
    await response.raise_for_error()
    chunks = openai_chunks(response.chunks(), content_type=response.content_type, host=response.target.host)
    shell = response_object(body, response_id=new_id("resp"), created_at=int(time.time()), model=model)
    encoder = ResponseEncoder(shell)
    meter = Meter()
    record_usage(request, meter, chat)
    answer = pieces(chunks)
    events = response_events(without_thinking(answer) if hide_thinking else answer, encoder, meter)
    if body.get("store") is not False:
        events = _kept(events, store, input_items(body))
    if body.get("stream") is not True:
        return json_response(await collect_response(events))

    def failed(exc: ProxyError) -> bytes:
        return b"".join(_frame(event) for event in encoder.fail(exc.status, exc.message))

    first: AsyncIterator[dict[str, Any]] = await started(events)
    request.state.streamed = True
    stream_body = encode_stream(first, _frame, failed, state_of(request.scope))
    return StreamResponse(stream_body, media_type=SSE, on_error=failed)


async def _kept(
    events: AsyncIterator[dict[str, Any]], store: ResponseStore, items: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """The events, the finished response stored before the last one goes out (a client may
    hang up as soon as it has it)."""
    async for event in events:
        if event["type"] in ("response.completed", "response.incomplete"):
            await store.put(event["response"]["id"], {"response": event["response"], "input": items})
        yield event


@routes("/v1/responses/{response_id}", "GET")
async def retrieve(request: Request) -> Response:
    """A response this process translated and kept; relayed upstreams keep their own."""
    response_id: str = request.path_params["response_id"]
    record = await responses_state(request.app).store.get(response_id)
    if record is None:
        message = f"Response with id '{response_id}' not found."
        return json_response(openai_body(404, message, param="response_id"), status=404)
    return json_response(with_output_text(record["response"]))
