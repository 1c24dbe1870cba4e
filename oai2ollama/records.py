"""What one answered request was: the record the usage ledger stores and the metrics count.

Never what was said: no prompt, no answer, no key (only its name). Routes note what they learn in
the request's state (`RequestState` names the keys); the request log builds one `RequestRecord`
when the answer is over and hands it to each observer, which must only enqueue: observers run on
the request path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    """Tokens one answer used, from the upstream's `usage`, or estimated where it sent none."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    estimated: bool = False


@dataclass(slots=True)
class RequestRecord:
    started_at: float  # Unix time the request arrived
    method: str
    path: str
    dialect: str  # "ollama", "openai" or "anthropic": the shape of the route's answers and errors
    status: int  # 0: the client left before an answer began
    duration: float  # seconds to the answer's last byte
    first_byte: float | None  # seconds to the answer's first body byte (time to first token, when streamed)
    model: str | None = None  # as the client named it
    upstream: str | None = None
    upstream_model: str | None = None
    key_name: str | None = None
    client: str = ""  # the user agent, cut short
    streamed: bool = False
    error_kind: str | None = None
    usage: Usage | None = None


Observer = Callable[[RequestRecord], None]


class RequestState:
    """The keys of `scope["state"]` (Starlette's `request.state`) that make a record."""

    MODEL = "model"  # the model name as the client sent it
    CARD = "card"  # the ModelCard the request was sent for (upstream, upstream id)
    KEY_NAME = "key_name"  # set by the guards for a request with one of our keys
    STREAMED = "streamed"
    USAGE = "usage"  # a Usage, once the answer's usage is known
    ERROR_KIND = "error_kind"


def state_of(scope: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state
