"""Which models the current request's API key may use.

The guards learn the key and set `caller_models`; the catalog consults it wherever a model is
named or listed, so that every route is covered without knowing about keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

from .errors import ProxyError
from .model_rules import Globs
from .records import ErrorKind
from .translate.models import ModelCard

# The model globs the current request's key may use; None: any model (no key, or an unrestricted one).
caller_models: ContextVar[Globs | None] = ContextVar("caller_models", default=None)


def permits(allowed: Globs, card: ModelCard) -> bool:
    """A key's globs name a model as clients do: its listed name, with or without `:latest`, or its
    id before any alias."""
    return (
        allowed.match(card.name)
        or allowed.match(card.name.removesuffix(":latest"))
        or (card.client_id != "" and allowed.match(card.client_id))
    )


def may_use(card: ModelCard) -> bool:
    allowed = caller_models.get()
    return allowed is None or permits(allowed, card)


def visible(cards: Iterable[ModelCard]) -> list[ModelCard]:
    """The cards the caller's key may see."""
    if caller_models.get() is None:
        return list(cards)
    return [card for card in cards if may_use(card)]


def check(name: str, card: ModelCard) -> None:
    """Refuse (403) a model the caller's key may not use."""
    if not may_use(card):
        raise ProxyError(f"this API key may not use model '{name}'", status=403, kind=ErrorKind.REFUSED)


def view_key(view: str) -> str | tuple[str, tuple[str, ...]]:
    """A rendered view depends on the caller's key when that key is limited to some models."""
    allowed = caller_models.get()
    return view if allowed is None else (view, allowed.patterns)
