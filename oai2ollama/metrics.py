"""Prometheus metrics: an observer of request records, and the text `GET /metrics` answers.

Names follow OpenTelemetry's GenAI semantic conventions as Prometheus spells them
(`gen_ai.client.token.usage` → `gen_ai_client_token_usage`); oai2ollama's own are prefixed
`oai2ollama_`. Observing a record costs a few microseconds: label children are kept by their
values, so a request is a handful of dictionary lookups and additions.

Label values stay few whatever clients send: a model is labelled with its catalog name only when
the catalog lists it (at most `MAX_MODELS` of them), anything else is `other`; routes are the
server's route templates, anything else `other`.

With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set before the server starts, as
prometheus_client requires) each process writes its values to files in that directory and a
scrape, served by any one process, adds them up. Values read from elsewhere (whether upstreams
list, the ledger's queue) are written by each process when it is scraped and, at most once a
second, when it answers a request; the gauges keep the most recent value of the live processes.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .records import RequestRecord
from .translate.models import ModelCard

# OpenTelemetry's advice for each instrument.
TOKEN_BUCKETS = tuple(float(4**power) for power in range(14))  # 1, 4, 16 … 67108864
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
FIRST_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

OTHER = "other"
MAX_MODELS = 500  # distinct model labels per process; more become `other`
REFRESH_SECONDS = 1.0

# `gen_ai.operation.name` per inference route: what the client asked for.
OPERATIONS = {
    "/api/chat": "chat",
    "/api/generate": "text_completion",
    "/api/embed": "embeddings",
    "/api/embeddings": "embeddings",
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/completions": "text_completion",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "chat",
    "/v1/responses": "chat",
}

_CONVERTER = re.compile(r":[^}]*}")  # `{model:path}` → `{model}`
_GEN_AI = ("gen_ai_request_model", "gen_ai_provider_name", "gen_ai_operation_name")


class ModelNames(Protocol):
    """What the metrics need of the catalog."""

    def listing_outcomes(self) -> dict[str, bool]: ...

    def listed_card(self, name: str) -> ModelCard | None: ...


class Metrics:
    """The instruments of one server process. `observe` is the request observer; `exposition`
    is what /metrics answers; `register_queue` lets the usage ledger show its queue."""

    def __init__(self, *, route_paths: Iterable[str] = (), multiprocess_dir: str | None = None):
        self.multiprocess_dir = multiprocess_dir
        # A `_created` series beside each one doubles what is scraped and tells nothing a
        # counter's reset does not; prometheus_client has only a process-wide switch for it.
        disable_created_metrics()
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per request, by token type (input, output), as counted by the upstream or estimated",
            ["gen_ai_token_type", *_GEN_AI],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self._client_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Seconds from sending the upstream request to the answer's last byte",
            [*_GEN_AI, "error_type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._server_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Seconds from the request's arrival to the answer's last byte",
            [*_GEN_AI, "error_type"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Seconds from the request's arrival to the first byte of a streamed answer",
            list(_GEN_AI),
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self._requests = Counter(
            "oai2ollama_requests", "Requests answered, by route and status", ["route", "status"], registry=registry
        )
        self._upstream_up = Gauge(
            "oai2ollama_upstream_up",
            "1 if the upstream's last /models listing answered, 0 if it failed",
            ["upstream"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self._queue_depth = Gauge(
            "oai2ollama_ledger_queue_depth",
            "Records waiting to be written to the usage ledger",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._queue_drops = Counter(
            "oai2ollama_ledger_dropped_records",
            "Records the usage ledger dropped: its queue was full, or a record could not be stored",
            registry=registry,
        )
        self._children: dict[Hashable, Any] = {}
        self._models: set[str] = set()
        self._catalog: ModelNames | None = None
        self._queue: tuple[Callable[[], int], Callable[[], int]] | None = None
        self._drops_seen = 0
        self._refreshed = 0.0
        self.bind_routes(route_paths)

    @classmethod
    def from_environment(cls, route_paths: Iterable[str] = ()) -> Metrics:
        return cls(route_paths=route_paths, multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)

    def bind_routes(self, paths: Iterable[str]) -> None:
        """The server's route templates, the only `route` label values besides `other`."""
        paths = list(paths)
        self._exact = {path for path in paths if "{" not in path}
        self._templates = [(path.split("{", 1)[0], _CONVERTER.sub("}", path)) for path in paths if "{" in path]

    def bind_catalog(self, catalog: ModelNames) -> None:
        self._catalog = catalog

    def register_queue(self, depth: Callable[[], int], drops: Callable[[], int]) -> None:
        """Show a queue in front of storage: `depth()` records waiting, `drops()` records dropped
        so far (a running total); both are read when metrics are refreshed, never per request."""
        self._queue = (depth, drops)
        self._drops_seen = 0

    # ------------------------------------------------------------------ per request

    def observe(self, record: RequestRecord) -> None:
        route = self._route(record.path)
        self._child(self._requests, (route, str(record.status))).inc()
        operation = OPERATIONS.get(route)
        if operation is not None and record.upstream is not None:
            self._observe_operation(record, operation)
        if self.multiprocess_dir is not None and time.monotonic() - self._refreshed > REFRESH_SECONDS:
            self.refresh()  # so that every worker's view is current, whichever is scraped

    def _observe_operation(self, record: RequestRecord, operation: str) -> None:
        labels = (self._model(record.model), record.upstream, operation)
        error = record.error_kind or ""
        self._child(self._server_duration, (*labels, error)).observe(record.duration)
        if record.upstream_duration is not None:
            self._child(self._client_duration, (*labels, error)).observe(record.upstream_duration)
        if record.streamed and record.first_byte is not None and record.status < 400:
            self._child(self._first_token, labels).observe(record.first_byte)
        usage = record.usage
        if usage is not None:
            if usage.input_tokens is not None:
                self._child(self._tokens, ("input", *labels)).observe(usage.input_tokens)
            if usage.output_tokens is not None:
                self._child(self._tokens, ("output", *labels)).observe(usage.output_tokens)

    def _child(self, metric: Any, labels: tuple[str | None, ...]) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _route(self, path: str) -> str:
        if path in self._exact:
            return path
        for prefix, template in self._templates:
            if path.startswith(prefix) and len(path) > len(prefix):
                return template
        return OTHER

    def _model(self, name: str | None) -> str:
        """A listed model's catalog name (its alias, else its id); anything else is `other`."""
        card = self._catalog.listed_card(name) if self._catalog is not None and name else None
        if card is None:
            return OTHER
        label = card.alias or card.client_id or card.name
        if label not in self._models:
            if len(self._models) >= MAX_MODELS:
                return OTHER
            self._models.add(label)
        return label

    # ------------------------------------------------------------------ per scrape

    def refresh(self) -> None:
        """Read the values that live elsewhere: upstream listing outcomes, the ledger's queue."""
        self._refreshed = time.monotonic()
        if self._catalog is not None:
            for upstream, up in self._catalog.listing_outcomes().items():
                self._child(self._upstream_up, (upstream,)).set(1 if up else 0)
        if self._queue is not None:
            depth, drops = self._queue
            self._queue_depth.set(depth())
            total = drops()
            if total > self._drops_seen:
                self._queue_drops.inc(total - self._drops_seen)
            self._drops_seen = max(total, self._drops_seen)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format, and its content type: this process's instruments, or with
        several processes, every process's, added up."""
        self.refresh()
        registry = self.registry
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This process is ending: its live gauges leave the sum (the others' files stay)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
