"""What a guard answers instead of the route."""

from __future__ import annotations

from dataclasses import dataclass

from ..records import ErrorKind


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    headers: dict[str, str] | None = None
    kind: str = ErrorKind.REFUSED  # for the request's record
