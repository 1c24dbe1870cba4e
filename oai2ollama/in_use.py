"""The models in use: what /api/ps lists.

A model counts as loaded for a keep-alive window after it last answered, like a model Ollama
keeps in memory; a request with `keep_alive: 0` (`ollama stop`) unloads it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .translate.models import ModelCard

# How long a model stays in /api/ps after its last use, like Ollama's default keep_alive.
KEEP_ALIVE_SECONDS = 300.0


class ModelsInUse:
    """Models in use by the name clients used, each with the wall-clock time its keep-alive ends."""

    def __init__(self, *, keep_alive: float = KEEP_ALIVE_SECONDS, clock: Callable[[], float] = time.time):
        self._keep_alive = keep_alive
        self._clock = clock
        self._used: dict[str, tuple[ModelCard, float]] = {}  # lower-cased name → card, last use

    def touch(self, card: ModelCard) -> None:
        self._used[card.name.lower()] = (card, self._clock())

    def forget(self, name: str) -> None:
        """Unload (`keep_alive: 0`, `ollama stop`): by any name of the model."""
        self._used.pop(name.lower(), None)
        self._used.pop(name.lower() + ":latest", None)

    def loaded(self) -> list[tuple[ModelCard, float]]:
        """(card, expires) of models used within the window, longest remaining lifetime first."""
        now = self._clock()
        expired = [name for name, (_, used) in self._used.items() if used + self._keep_alive <= now]
        for name in expired:
            del self._used[name]
        recent = [(card, used + self._keep_alive) for card, used in self._used.values()]
        recent.sort(key=lambda item: item[1], reverse=True)
        return recent
