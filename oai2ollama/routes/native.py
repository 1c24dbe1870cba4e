"""Ollama's native inference routes: /api/chat, /api/generate, /api/embed, /api/embeddings."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from .. import wire
from ..catalog import Catalog
from ..errors import BadRequest, ProxyError, ollama_body
from ..http import NDJSON, StreamResponse, encode_stream, json_body, json_response, started
from ..translate import ollama_request as to_openai
from ..translate.answer import pieces
from ..translate.ollama_answer import Kind, collect, embed_answer, load_answer, ollama_chunks
from ..translate.streams import openai_chunks
from ..upstream import Upstreams

router = APIRouter()


def _error_line(exc: ProxyError) -> bytes:
    return wire.ndjson_line(ollama_body(exc.message))


async def _answer(request: Request, kind: Kind) -> Response:
    started_ns = time.perf_counter_ns()
    req = await json_body(request)
    catalog: Catalog = request.app.state.catalog
    upstreams: Upstreams = request.app.state.upstreams
    card = await catalog.resolve(req.get("model"))
    request.state.model = model = req["model"]
    if not (req.get("messages") if kind == "chat" else req.get("prompt") or req.get("suffix")):
        return json_response(load_answer(kind, model, unload=req.get("keep_alive") in (0, "0", "0s")))
    capabilities = frozenset(card.capabilities)
    if kind == "chat":
        body = to_openai.chat_request(req, upstream_model=card.upstream_id, capabilities=capabilities)
        path = "/chat/completions"
    else:
        body = to_openai.generate_request(req, upstream_model=card.upstream_id, capabilities=capabilities)
        path = "/completions" if to_openai.uses_completions(req) else "/chat/completions"
    target = catalog.target(card)
    response = await upstreams.send(target, "POST", path, body=body, client_headers=request.headers)
    await response.raise_for_error()
    catalog.touch(card)
    upstream_chunks = openai_chunks(response.chunks(), content_type=response.content_type, host=target.host)
    chunks = ollama_chunks(pieces(upstream_chunks), kind=kind, model=model, started_ns=started_ns)
    if req.get("stream", True) is False:
        return json_response(await collect(chunks, kind))
    first: AsyncIterator[dict[str, Any]] = await started(chunks)
    return StreamResponse(encode_stream(first, wire.ndjson_line, _error_line), media_type=NDJSON)


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    return await _answer(request, "chat")


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    return await _answer(request, "generate")


async def _embeddings(request: Request, req: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
    catalog: Catalog = request.app.state.catalog
    card = await catalog.resolve(req.get("model"))
    request.state.model = req["model"]
    if not inputs:
        return {"data": []}
    body = to_openai.embed_request(inputs, upstream_model=card.upstream_id, dimensions=req.get("dimensions"))
    response = await request.app.state.upstreams.send(
        catalog.target(card), "POST", "/embeddings", body=body, client_headers=request.headers
    )
    await response.raise_for_error()
    catalog.touch(card)
    answer = await response.json()
    if not isinstance(answer, dict) or len(answer.get("data") or []) != len(inputs):
        raise ProxyError(f"upstream {catalog.target(card).host} returned the wrong number of embeddings", status=502)
    return answer


@router.post("/api/embed")
async def embed(request: Request) -> Response:
    started_ns = time.perf_counter_ns()
    req = await json_body(request)
    inputs = to_openai.embed_inputs(req, "input")
    if req.get("truncate") not in (None, True, False):
        raise BadRequest("truncate must be a boolean")
    answer = await _embeddings(request, req, inputs)
    return json_response(embed_answer(req["model"], answer, started_ns, time.perf_counter_ns()))


@router.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    req = await json_body(request)
    prompt = req.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    answer = await _embeddings(request, req, [prompt] if prompt else [])
    data = answer["data"]
    return json_response({"embedding": data[0].get("embedding", []) if data else []})
