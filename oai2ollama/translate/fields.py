"""Checks shared by the request translators: a bad field is a `BadRequest` that names it."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest


def objects(value: Any, problem: str) -> list[dict[str, Any]]:
    """`value` as a list of objects, or a 400 saying `problem`."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise BadRequest(problem)
    return value


def text_of(part: dict[str, Any], where: str, what: str = "text part") -> str:
    """A text part's `text`, which must be a string."""
    text = part.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"{where}: a {what} needs a string `text`")
    return text
