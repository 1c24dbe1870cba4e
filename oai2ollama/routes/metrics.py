"""`GET /metrics`: the Prometheus text format (see `metrics`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..access import caller_models
from ..errors import ProxyError
from ..metrics import Metrics
from ..records import ErrorKind
from . import RouteTable

routes = RouteTable()


@routes("/metrics", "GET")
async def metrics(request: Request) -> Response:
    if caller_models.get() is not None:
        # Metrics name every model and key; a key limited to some models is not shown the others.
        raise ProxyError("this API key is limited to some models and may not read metrics", 403, kind=ErrorKind.REFUSED)
    registry: Metrics = request.app.state.metrics
    body, content_type = registry.exposition()
    return Response(body, media_type=content_type)
