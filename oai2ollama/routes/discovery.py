"""Ollama's discovery and model-management routes: /, version, tags, show, ps, pull and friends.

Discovery answers come from the catalog (no upstream round trip per call). Management routes
cannot change what an upstream serves: `pull` of a served model succeeds so that clients that
pull before use proceed; the others say clearly why they cannot work.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from .. import wire
from ..catalog import Catalog
from ..errors import ProxyError
from ..http import JSON, NDJSON, json_body, json_response
from ..translate.models import ps_entry, show_answer, tags_entry

router = APIRouter()

MANAGED_UPSTREAM = "models are served by the upstream and cannot be {} through oai2ollama"


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version(request: Request) -> Response:
    return json_response({"version": request.app.state.settings.ollama_version})


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> Response:
    catalog = _catalog(request)
    await catalog.cards()
    # Built and encoded once per catalog refresh: clients poll this (Open WebUI, Copilot).
    body = catalog.rendered(
        "tags", lambda cards: wire.dumps({"models": [tags_entry(c, catalog.started) for c in cards]})
    )
    return Response(body, media_type=JSON)


@router.post("/api/show")
async def show(request: Request) -> Response:
    req = await json_body(request)
    request.state.model = name = req.get("model") or req.get("name")
    catalog = _catalog(request)
    card = await catalog.resolve(name)
    return json_response(show_answer(card, catalog.started))


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    loaded = _catalog(request).loaded()
    return json_response({"models": [ps_entry(card, expires) for card, expires in loaded]})


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    req = await json_body(request)
    request.state.model = name = req.get("model") or req.get("name")
    card = await _catalog(request).resolve(name)
    steps = [
        {"status": "pulling manifest"},
        {"status": f"{card.name} is served by the upstream"},
        {"status": "success"},
    ]
    if req.get("stream", True) is False:
        return json_response(steps[-1])
    return Response(b"".join(wire.ndjson_line(step) for step in steps), media_type=NDJSON)


@router.post("/api/push")
async def push() -> Response:
    raise ProxyError(MANAGED_UPSTREAM.format("pushed"), status=400)


@router.post("/api/create")
async def create() -> Response:
    raise ProxyError(MANAGED_UPSTREAM.format("created"), status=400)


@router.post("/api/copy")
async def copy() -> Response:
    raise ProxyError(MANAGED_UPSTREAM.format("copied"), status=400)


@router.delete("/api/delete")
async def delete() -> Response:
    raise ProxyError(MANAGED_UPSTREAM.format("deleted"), status=400)


@router.api_route("/api/blobs/{digest}", methods=["HEAD", "POST"])
async def blobs(digest: str) -> Response:
    # HEAD answers "no such blob" so that clients do not try to create models from it.
    raise ProxyError(f"blob {digest} not found: " + MANAGED_UPSTREAM.format("uploaded"), status=404)
