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
    """Tokens one answer used, from the upstream's `usage`, or estimated where it sent none.

    OpenAI's meaning throughout: `input_tokens` counts the whole prompt, the `cached_tokens` read
    from a cache included; `output_tokens` the whole answer, the `reasoning_tokens` included.
    `estimated`: at least one count is ours (characters / 4), not the upstream's.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    estimated: bool = False


class ErrorKind:
    """Why a request did not get a whole answer: a closed set, one per record at most.

    Before the answer began (the status says it): `refused` by the guards (no or wrong key, an
    expired or revoked one, a foreign origin or host, a key that may not use the model);
    `rate_limited`, a key over its tokens per day or requests per minute (429); `bad_request`, a request we could
    not take (invalid body, unknown model or route, too large); `upstream_4xx` and `upstream_5xx`,
    the upstream's own error status; `upstream_invalid`, an upstream answer that was not one (not
    an event stream, malformed JSON); `unreachable`, no connection or one broken off; `timeout`,
    connect, read or request timeout; `internal`, a bug of ours. After it began (status 200):
    `mid_stream`, the answer ended with an error line or event, or was broken off. At any time:
    `client_closed`, the client went away; `shutdown`, the server ended it while stopping.
    """

    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    BAD_REQUEST = "bad_request"
    UPSTREAM_4XX = "upstream_4xx"
    UPSTREAM_5XX = "upstream_5xx"
    UPSTREAM_INVALID = "upstream_invalid"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    INTERNAL = "internal"
    MID_STREAM = "mid_stream"
    CLIENT_CLOSED = "client_closed"
    SHUTDOWN = "shutdown"

    ALL = frozenset(
        (
            REFUSED,
            RATE_LIMITED,
            BAD_REQUEST,
            UPSTREAM_4XX,
            UPSTREAM_5XX,
            UPSTREAM_INVALID,
            UNREACHABLE,
            TIMEOUT,
            INTERNAL,
            MID_STREAM,
            CLIENT_CLOSED,
            SHUTDOWN,
        )
    )

    @staticmethod
    def of_upstream_status(status: int) -> str:
        return ErrorKind.UPSTREAM_4XX if status < 500 else ErrorKind.UPSTREAM_5XX


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
    error_kind: str | None = None  # one of `ErrorKind`
    usage: Usage | None = None
    upstream_duration: float | None = None  # seconds from sending the upstream request to the answer's last byte


Observer = Callable[[RequestRecord], None]


class RequestState:
    """The keys of `scope["state"]` (Starlette's `request.state`) that make a record."""

    MODEL = "model"  # the model name as the client sent it
    CARD = "card"  # the ModelCard the request was sent for (upstream, upstream id)
    KEY_NAME = "key_name"  # set by the guards for a request with one of our keys
    STREAMED = "streamed"
    # A Usage, or, for an answer still being streamed when the route returns, a function that
    # gives it (or None) once the answer is over: the request log calls it then.
    USAGE = "usage"
    ERROR_KIND = "error_kind"
    UPSTREAM_SENT = "upstream_sent"  # time.perf_counter() when the upstream request went out


def state_of(scope: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state
