"""Ollama's discovery and model-management routes: /, version, tags, show, ps, pull and friends.

Discovery answers come from the catalog (no upstream round trip per call). Management routes
cannot change what an upstream serves: `pull` of a served model succeeds so that clients that
pull before use proceed; the others say clearly why they cannot work.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .. import access, wire
from ..catalog import Catalog
from ..errors import ProxyError
from ..http import JSON, NDJSON, json_body, json_response
from ..in_use import ModelsInUse, as_now
from ..translate.model_views import ps_entry, show_answer, tags_entry
from . import Endpoint, RouteTable

routes = RouteTable()

MANAGED_UPSTREAM = "models are served by the upstream and cannot be {} through oai2ollama"


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog


@routes("/", "GET", "HEAD")
async def root(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


@routes("/api/version", "GET", "HEAD")
async def version(request: Request) -> Response:
    return json_response({"version": request.app.state.settings.ollama_version})


@routes("/api/tags", "GET", "HEAD")
async def tags(request: Request) -> Response:
    catalog = _catalog(request)
    await catalog.cards()
    # Built and encoded once per catalog refresh: clients poll this (Open WebUI, Copilot).
    body = catalog.index.rendered(
        "tags", lambda cards: wire.dumps({"models": [tags_entry(c, catalog.started) for c in cards]})
    )
    return Response(body, media_type=JSON)


@routes("/api/show", "POST")
async def show(request: Request) -> Response:
    req = await json_body(request)
    request.state.model = name = req.get("model") or req.get("name")
    catalog = _catalog(request)
    card = await catalog.known(name)
    return json_response(show_answer(card, catalog.started))


@routes("/api/ps", "GET")
async def ps(request: Request) -> Response:
    in_use: ModelsInUse = request.app.state.in_use
    index = _catalog(request).index
    loaded = as_now(await in_use.everywhere(), lambda card: index.lookup(card.client_id))
    return json_response({"models": [ps_entry(card, expires) for card, expires in loaded if access.may_use(card)]})


@routes("/api/experimental/model-recommendations", "GET")
async def model_recommendations(request: Request) -> Response:
    # Ollama recommends models to pull from ollama.com; nothing can be pulled here, so the list is
    # empty (the Ollama VS Code extension asks on every refresh and only logs an empty answer).
    return json_response({"recommendations": []})


@routes("/api/pull", "POST")
async def pull(request: Request) -> Response:
    req = await json_body(request)
    request.state.model = name = req.get("model") or req.get("name")
    card = await _catalog(request).known(name)
    steps = [
        {"status": "pulling manifest"},
        {"status": f"{card.name} is served by the upstream"},
        {"status": "success"},
    ]
    if req.get("stream", True) is False:
        return json_response(steps[-1])
    return Response(b"".join(wire.ndjson_line(step) for step in steps), media_type=NDJSON)


def _refuse(done: str) -> Endpoint:
    async def refuse(request: Request) -> Response:
        raise ProxyError(MANAGED_UPSTREAM.format(done), status=400)

    return refuse


for route, method, done in (
    ("/api/push", "POST", "pushed"),
    ("/api/create", "POST", "created"),
    ("/api/copy", "POST", "copied"),
    ("/api/delete", "DELETE", "deleted"),
):
    routes(route, method)(_refuse(done))


@routes("/api/blobs/{digest}", "HEAD", "POST")
async def blobs(request: Request) -> Response:
    digest = request.path_params["digest"]
    # HEAD answers "no such blob" so that clients do not try to create models from it.
    raise ProxyError(f"blob {digest} not found: " + MANAGED_UPSTREAM.format("uploaded"), status=404)
