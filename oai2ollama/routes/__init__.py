"""HTTP routes, one module per API family; each handler is glue between translate and upstream.

Handlers are plain Starlette routes inside the FastAPI app: FastAPI's own route class costs
~150 µs per request in dependency and scope handling that these handlers (which take the
request and return a response) do not use — a third of a proxied request's time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..catalog import Catalog
from ..in_use import ModelsInUse
from ..translate.dialects import adapt
from ..translate.models import ModelCard
from ..translate.overrides import request_timeout
from ..translate.usage import Meter, request_tokens, token_usage
from ..upstream import Response as UpstreamResponse
from ..upstream import Upstreams

Endpoint = Callable[[Request], Awaitable[Response]]


class RouteTable(list[Route]):
    """A module's routes: `@routes("/api/chat", "POST")` registers a handler."""

    def __call__(self, path: str, *methods: str) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.append(Route(path, endpoint, methods=list(methods)))
            return endpoint

        return register


async def send_upstream(
    request: Request, card: ModelCard, path: str, body: dict[str, Any], *, translated: bool = True
) -> UpstreamResponse:
    """Send a request built for `card` to the upstream that serves it, adapted to the kind of server
    it is, with the client's headers (for a key the upstream may need); a model that answered
    counts as used for /api/ps. `translated`: we wrote the body (see `dialects.adapt`)."""
    catalog: Catalog = request.app.state.catalog
    upstreams: Upstreams = request.app.state.upstreams
    target = catalog.target(card)
    if path == "/chat/completions":  # the legacy /completions knows only `max_tokens`
        body = adapt(body, catalog.dialect(target), translated=translated)
    timeout = request_timeout(card.options, request.app.state.settings.request_timeout)
    # For the request's record (see `records`), also when the upstream cannot be reached.
    request.state.card = card
    request.state.upstream_sent = time.perf_counter()
    in_use: ModelsInUse = request.app.state.in_use
    use = in_use.starting(card)  # written to the database now, in the background, for every process's /api/ps
    try:
        response = await upstreams.send(
            target, "POST", path, body=body, client_headers=request.headers, request_timeout=timeout
        )
    except BaseException:
        in_use.failed(use)
        raise
    if response.ok:
        in_use.touch(card)
    else:
        in_use.failed(use)
    return response


def record_usage(request: Request, meter: Meter, body: Mapping[str, Any], input_tokens: int | None = None) -> None:
    """The answer's usage for the request's record, read from `meter` once the answer is over;
    counts the upstream leaves out are estimated from `body` (the request sent upstream) or
    `input_tokens`, and from the answer's text."""

    def estimate_input() -> int:
        return input_tokens if input_tokens is not None else request_tokens(body)

    request.state.usage = lambda: token_usage(
        meter.usage, input_estimate=estimate_input, output_chars=meter.output_chars
    )
