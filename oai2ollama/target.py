"""One OpenAI-compatible upstream: where it is, how it is reached, and what it must never be sent back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import httpx

from .masking import Secrets
from .translate.dialects import kind_from_host


@dataclass(frozen=True)
class Target:
    """One OpenAI-compatible upstream."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    name: str = "default"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Whether /v1/responses is relayed here or translated to chat completions; "auto" finds out.
    responses: str = "auto"
    kind: str | None = None  # configured; else detected (see `Catalog.dialect`)

    # Cached: the routes name the host in every error and pass it down every stream.
    @cached_property
    def host(self) -> str:
        return httpx.URL(self.base_url).host or self.base_url

    @cached_property
    def address(self) -> str:
        """`host` with the port when the base URL names one: which local server is down matters."""
        url = httpx.URL(self.base_url)
        return f"{self.host}:{url.port}" if url.port is not None else self.host

    @cached_property
    def secrets(self) -> Secrets:
        """What this upstream is sent that none of its words may carry back (see `masking`)."""
        return Secrets.of_upstream(self.api_key, self.headers)

    @cached_property
    def host_kind(self) -> str | None:
        """The kind of server its host or local port gives away (see translate/dialects.py)."""
        return kind_from_host(self.host, httpx.URL(self.base_url).port)

    @cached_property
    def auth_header(self) -> str:
        """Azure's OpenAI service takes the key as `api-key`; every other upstream as a bearer token."""
        return "api-key" if (self.kind or self.host_kind) == "azure" else "authorization"

    def url(self, path: str) -> str:
        """The URL of `path` on this upstream; a base URL's query (Azure's `?api-version=…`) stays on it."""
        base, _, query = self.base_url.partition("?")
        return f"{base.rstrip('/')}{path}?{query}" if query else base + path

    @cached_property
    def origin(self) -> str:
        url = httpx.URL(self.base_url)
        return f"{url.scheme}://{url.netloc.decode()}"
