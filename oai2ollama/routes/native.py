"""Ollama's native inference routes: /api/chat, /api/generate, /api/embed, /api/embeddings."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..catalog import Catalog
from ..errors import BadRequest, ProxyError, ollama_body
from ..http import NDJSON, StreamResponse, encode_stream, json_body, json_response, started
from ..records import state_of
from ..translate import generate_context
from ..translate import ollama_request as to_openai
from ..translate.ollama_answer import (
    Kind,
    OllamaEncoder,
    collect_batches,
    embed_answer,
    load_answer,
    ndjson_line,
    ollama_lines,
)
from ..translate.overrides import native_request as native_overrides
from ..translate.reasoning import exclude_requested
from ..translate.streams import openai_chunk_batches
from ..translate.usage import Meter, request_tokens, token_usage
from . import Endpoint, RouteTable, record_usage, send_upstream

routes = RouteTable()

# A zero Go duration: "0", "0s", "0m0s", "0.0h"…; `keep_alive` set to it unloads the model.
# Units separate the numbers, so no run of zeros can be split two ways: with `(0+…)+` a long
# run of zeros and a wrong last character backtracked for ever, holding the event loop.
_UNIT = r"(?:ns|us|µs|ms|s|m|h)"
_ZERO_DURATION = re.compile(rf"0+(?:\.0*)?(?:{_UNIT}0+(?:\.0*)?)*{_UNIT}?")


def _error_line(exc: ProxyError) -> bytes:
    return ndjson_line(ollama_body(exc.message))


def _unloads(keep_alive: Any) -> bool:
    if isinstance(keep_alive, str):
        return _ZERO_DURATION.fullmatch(keep_alive.strip()) is not None
    return not isinstance(keep_alive, bool) and isinstance(keep_alive, int | float) and keep_alive == 0


def _is_load(req: dict[str, Any], kind: Kind) -> bool:
    """An empty request only loads (or, with `keep_alive: 0`, unloads) the model."""
    if kind == "chat":
        messages = req.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise BadRequest("messages must be a list")
        return not messages
    return not req.get("prompt") and not req.get("suffix")


async def _answer(request: Request, kind: Kind) -> Response:
    started_ns = time.perf_counter_ns()
    req = await json_body(request)
    catalog: Catalog = request.app.state.catalog
    card = await catalog.resolve(req.get("model"))
    request.state.model = model = req["model"]
    if _is_load(req, kind):
        unload = _unloads(req.get("keep_alive"))
        if unload:  # `ollama stop`: the model leaves /api/ps at once
            await request.app.state.in_use.unload(card.name)
        return json_response(load_answer(kind, model, unload=unload))
    capabilities = frozenset(card.capabilities)
    req = native_overrides(req, card.options)
    context_after: Callable[[str], list[int]] | None = None
    if kind == "chat":
        body = to_openai.chat_request(req, upstream_model=card.upstream_id, capabilities=capabilities)
        path = "/chat/completions"
    elif to_openai.uses_completions(req):
        body = to_openai.generate_request(req, upstream_model=card.upstream_id, capabilities=capabilities)
        path = "/completions"
    else:
        conversation = generate_context.conversation(req)
        body = to_openai.generate_request(
            req, upstream_model=card.upstream_id, capabilities=capabilities, conversation=conversation
        )
        path = "/chat/completions"
        context_after = partial(conversation.context_after, to_openai.generate_prompt(req))
    thinking = not exclude_requested(req.get("exclude_reasoning"))
    stream = req.get("stream", True) is not False
    response = await send_upstream(request, card, path, body)
    await response.raise_for_error()
    host = response.target.host
    batches = openai_chunk_batches(response.chunks(), content_type=response.content_type, host=host)
    encoder = OllamaEncoder(kind, model, started_ns, context_after=context_after, thinking=thinking)
    meter = Meter()
    record_usage(request, meter, body)
    if not stream:
        return json_response(await collect_batches(batches, encoder, meter))
    lines = ollama_lines(batches, encoder, meter)
    first: AsyncIterator[bytes] = await started(lines)
    request.state.streamed = True
    stream_body = encode_stream(first, bytes, _error_line, state_of(request.scope))
    return StreamResponse(stream_body, media_type=NDJSON, on_error=_error_line)


def _answer_as(kind: Kind) -> Endpoint:
    async def answer(request: Request) -> Response:
        return await _answer(request, kind)

    return answer


routes("/api/chat", "POST")(_answer_as("chat"))
routes("/api/generate", "POST")(_answer_as("generate"))


async def _embeddings(request: Request, req: dict[str, Any], inputs: list[str], started_ns: int) -> dict[str, Any]:
    """The native embed answer for `inputs`; nothing to embed answers at once."""
    catalog: Catalog = request.app.state.catalog
    card = await catalog.resolve(req.get("model"))
    request.state.model = model = req["model"]
    if not inputs:
        return {"model": model, "embeddings": []}
    body = to_openai.embed_request(inputs, upstream_model=card.upstream_id, dimensions=req.get("dimensions"))
    response = await send_upstream(request, card, "/embeddings", body)
    await response.raise_for_error()
    answer = await response.json()
    usage = answer.get("usage") if isinstance(answer, dict) else None
    request.state.usage = token_usage(usage, input_estimate=lambda: request_tokens(body))  # no output: vectors
    return embed_answer(
        model,
        answer,
        count=len(inputs),
        host=response.target.host,
        started_ns=started_ns,
        now_ns=time.perf_counter_ns(),
    )


@routes("/api/embed", "POST")
async def embed(request: Request) -> Response:
    started_ns = time.perf_counter_ns()
    req = await json_body(request)
    inputs = to_openai.embed_inputs(req, "input")
    if req.get("truncate") not in (None, True, False):
        raise BadRequest("truncate must be a boolean")
    return json_response(await _embeddings(request, req, inputs, started_ns))


@routes("/api/embeddings", "POST")
async def embeddings(request: Request) -> Response:
    """The legacy route: one `prompt`, one `embedding`, no metrics."""
    started_ns = time.perf_counter_ns()
    req = await json_body(request)
    prompt = req.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    answer = await _embeddings(request, req, [prompt] if prompt else [], started_ns)
    vectors = answer["embeddings"]
    return json_response({"embedding": vectors[0] if vectors else []})
