"""HTTP routes, one module per API family; each handler is glue between translate and upstream.

Handlers are plain Starlette routes inside the FastAPI app: FastAPI's own route class costs
~150 µs per request in dependency and scope handling that these handlers (which take the
request and return a response) do not use — a third of a proxied request's time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]


class RouteTable(list[Route]):
    """A module's routes: `@routes("/api/chat", "POST")` registers a handler."""

    def __call__(self, path: str, *methods: str) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            self.append(Route(path, endpoint, methods=list(methods)))
            return endpoint

        return register
