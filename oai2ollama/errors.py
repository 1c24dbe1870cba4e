"""Our error type, and how each API dialect renders it.

Every failure becomes a `ProxyError` at the point where it is understood (a bad request in a
translator, a transport failure in `upstream`), and is rendered once by the app's handlers:
`{"error": "..."}` on Ollama routes, OpenAI's error object on `/v1`, Anthropic's on `/v1/messages`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from . import wire
from .records import ErrorKind


class ProxyError(Exception):
    """`kind`: one of `records.ErrorKind`, for the request's record; see `error_kind`."""

    status = 500

    def __init__(
        self, message: str, status: int | None = None, headers: dict[str, str] | None = None, *, kind: str | None = None
    ):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.kind = kind


class BadRequest(ProxyError):
    status = 400


class NotFound(ProxyError):
    status = 404


class UpstreamError(ProxyError):
    """The upstream answered with an error, could not be reached, or broke its protocol."""

    status = 502


def error_kind(exc: ProxyError) -> str:
    """What kind of failure `exc` is (`records.ErrorKind`): as it was raised, else by its class and status."""
    if exc.kind is not None:
        return exc.kind
    if isinstance(exc, UpstreamError):
        return ErrorKind.UPSTREAM_INVALID  # transport failures and the upstream's statuses say their kind
    return ErrorKind.BAD_REQUEST if exc.status < 500 else ErrorKind.INTERNAL


def model_not_found(name: str) -> NotFound:
    return NotFound(f"model '{name}' not found")


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

_ANTHROPIC_TYPES = {
    **_OPENAI_TYPES,
    413: "request_too_large",
    503: "overloaded_error",
    529: "overloaded_error",
}


def ollama_body(message: str) -> dict[str, Any]:
    return {"error": message}


def openai_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = _OPENAI_TYPES.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}


def message_from_body(status: int, body: bytes, reason: str = "") -> str:
    """The human message inside an upstream error body, whatever shape the upstream chose.

    OpenAI: `{"error": {"message": ...}}`; many servers: `{"error": "..."}`, `{"message": ...}`,
    FastAPI's `{"detail": ...}`. A non-JSON body (an HTML gateway page) is summarised, not relayed.
    """
    try:
        data = wire.loads(body) if body else None
    except wire.InvalidJSON:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        for candidate in (
            error,
            error.get("message") if isinstance(error, dict) else None,
            data.get("message"),
            data.get("detail"),
        ):
            if isinstance(candidate, str) and candidate:
                return candidate
            if isinstance(candidate, list) and candidate:
                return str(wire.dumps(candidate), "utf-8")
    text = body.decode("utf-8", "replace").strip()
    if text and not text.startswith("<"):
        return text if len(text) <= _MAX_PLAIN else text[:_MAX_PLAIN] + "…"
    if not reason and status in _PHRASES:
        reason = _PHRASES[status]  # HTTP/2 has no reason phrase
    return f"upstream answered {status} {reason}".rstrip()


# A plain-text error longer than this is cut: it is a message for a person, not a payload.
_MAX_PLAIN = 500
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


OPENAI_PATHS = ("/v1/", "/chat/completions", "/models")
ANTHROPIC_PATHS = ("/v1/messages", "/anthropic/")  # the second: the seed gateway's legacy prefix


def dialect(path: str) -> str:
    """Which of the three error shapes a route answers in."""
    if path.startswith(ANTHROPIC_PATHS):
        return "anthropic"
    if path.startswith(OPENAI_PATHS):
        return "openai"
    return "ollama"
