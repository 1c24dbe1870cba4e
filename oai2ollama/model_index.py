"""One published state of the catalog: the listed models and every name that reaches one.

Built anew on each refresh and never changed after, so a request holds a consistent view and
views rendered from it (the whole /api/tags answer) can be kept with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import access
from .translate.models import ModelCard

log = logging.getLogger("oai2ollama.catalog")
T = TypeVar("T")

Shadowed = frozenset[tuple[str, str]]  # (upstream, client id) of models hidden by another's name


class ModelIndex:
    def __init__(self, cards: Iterable[ModelCard], *, known_shadowed: Shadowed = frozenset()):
        # A configured alias claims its name before any discovered id: explicit beats found.
        cards = list(cards)
        owners: dict[str, ModelCard] = {}
        shadowed: set[tuple[str, str]] = set()
        for card in sorted(cards, key=lambda c: c.alias is None):
            owner = owners.setdefault(card.name.lower(), card)
            if owner is not card:
                shadowed.add((card.upstream, card.client_id))
                if (card.upstream, card.client_id) not in known_shadowed:
                    log.warning(
                        "model %s of upstream %s is hidden: upstream %s already serves %s (set a prefix or an alias)",
                        card.client_id,
                        card.upstream,
                        owner.upstream,
                        card.name,
                    )
        self.shadowed: Shadowed = frozenset(shadowed)
        kept = [card for card in cards if owners[card.name.lower()] is card]
        self._exact = dict(owners)
        for card in kept:
            self._exact.setdefault(card.client_id.lower(), card)
        self._aliases = {card.alias.lower(): card for card in kept if card.alias}
        self.listed = [card for card in kept if not card.hidden]
        self._views: dict[Any, Any] = {}

    def lookup(self, name: str) -> ModelCard | None:
        """The card for a client's name, case-insensitively: exact name, then alias, then with
        `:latest` added or taken away, as Ollama resolves `tiny` ↔ `tiny:latest` either way."""
        key = name.lower()
        if key.endswith(":latest"):
            keys: tuple[str, ...] = (key, key.removesuffix(":latest"))
        elif ":" not in key.rsplit("/", 1)[-1]:
            keys = (key, key + ":latest")
        else:
            keys = (key,)
        for candidate in keys:
            card = self._exact.get(candidate) or self._aliases.get(candidate)
            if card is not None:
                return card
        return None

    def named(self, name: str) -> ModelCard | None:
        """The card listed under exactly this (listed) name."""
        return self._exact.get(name.lower())

    def rendered(self, view: str, render: Callable[[list[ModelCard]], T]) -> T:
        """`render(listed cards the caller may see)`, computed once per index (and per model-limited key)."""
        key = access.view_key(view)
        if key not in self._views:
            self._views[key] = render(access.visible(self.listed))
        return self._views[key]  # type: ignore[no-any-return]
