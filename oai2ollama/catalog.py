"""The model catalog: which models exist, who serves them, what each can do.

The upstreams' /models answers are cached for a short TTL. The first request waits for the
first fetch; after that a stale catalog keeps answering while one refresh runs in the
background, so /api/tags and /api/show never wait on a slow upstream more than once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import ProxyError, model_not_found
from .translate.models import ModelCard, describe, ollama_name
from .upstream import Target, Upstreams

log = logging.getLogger("oai2ollama.catalog")

# How long a model stays in /api/ps after its last use, like Ollama's default keep_alive.
KEEP_ALIVE_SECONDS = 300.0


@dataclass
class CatalogConfig:
    extra_models: Sequence[str] = ()
    capabilities: Sequence[str] = ()
    context_lengths: dict[str, int] = field(default_factory=dict)
    default_context_length: int = 131072
    ttl: float = 60.0


class Catalog:
    def __init__(
        self,
        upstreams: Upstreams,
        targets: Sequence[Target],
        config: CatalogConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._upstreams = upstreams
        self._targets = {target.name: target for target in targets}
        self._default = targets[0]
        self._config = config
        self._clock = clock
        self._cards: list[ModelCard] = []
        self._by_name: dict[str, ModelCard] = {}
        self._listed = False  # whether any upstream's /models answered
        self._fetched_at: float | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._used: dict[str, float] = {}
        self.started = time.time()
        self._index(self._extra_cards())

    def target(self, card: ModelCard) -> Target:
        return self._targets.get(card.upstream, self._default)

    async def cards(self) -> list[ModelCard]:
        await self._fresh()
        return self._cards

    async def resolve(self, name: object) -> ModelCard:
        """The card for a client's model name: exact, then without `:latest`, then as a bare id."""
        if not isinstance(name, str) or not name:
            raise ProxyError("model is required", status=400)
        await self._fresh()
        key = name.lower()
        card = self._by_name.get(key) or self._by_name.get(ollama_name(key))
        if card is None and key.endswith(":latest"):
            card = self._by_name.get(key.removesuffix(":latest"))
        if card is not None:
            return card
        if not self._listed:
            # Without a model list to check against, trust the client and let the upstream judge.
            return self._card(name.removesuffix(":latest"), self._default)
        raise model_not_found(name)

    def touch(self, card: ModelCard) -> None:
        self._used[card.name] = time.time()

    def loaded(self) -> list[tuple[ModelCard, float]]:
        """Models used within the keep-alive window, longest remaining lifetime first."""
        now = time.time()
        recent = [
            (name, used + KEEP_ALIVE_SECONDS) for name, used in self._used.items() if used + KEEP_ALIVE_SECONDS > now
        ]
        recent.sort(key=lambda item: item[1], reverse=True)
        return [(self._by_name[name.lower()], expires) for name, expires in recent if name.lower() in self._by_name]

    def _card(self, upstream_id: str, target: Target, entry: dict[str, object] | None = None) -> ModelCard:
        config = self._config
        return describe(
            entry or {"id": upstream_id},
            upstream=target.name,
            remote_host=target.origin,
            capabilities=config.capabilities,
            context_length=config.context_lengths.get(upstream_id)
            or config.context_lengths.get(ollama_name(upstream_id)),
            default_context_length=config.default_context_length,
        )

    def _extra_cards(self) -> list[ModelCard]:
        return [self._card(model_id, self._default) for model_id in self._config.extra_models]

    def _index(self, cards: list[ModelCard]) -> None:
        by_name: dict[str, ModelCard] = {}
        unique: list[ModelCard] = []
        for card in cards:
            for key in (card.name.lower(), card.upstream_id.lower()):
                by_name.setdefault(key, card)
            if by_name[card.name.lower()] is card:
                unique.append(card)
        self._cards, self._by_name = unique, by_name

    async def _fresh(self) -> None:
        now = self._clock()
        if self._fetched_at is not None and now - self._fetched_at < self._config.ttl:
            return
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._load())
        if self._fetched_at is None:
            # Nothing to answer from yet; every waiting request shares the one fetch.
            await asyncio.shield(self._refresh)

    async def refresh(self) -> None:
        """Fetch now, whatever the TTL says."""
        await self._load()

    async def _load(self) -> None:
        cards: list[ModelCard] = []
        listed = False
        for target in self._targets.values():
            try:
                listing = await self._upstreams.get_json(target, "/models")
            except ProxyError as exc:
                log.warning("could not list models of upstream %s: %s", target.host, exc.message)
                cards.extend(card for card in self._cards if card.upstream == target.name)
                listed = listed or self._listed
                continue
            entries = listing.get("data") if isinstance(listing, dict) else listing
            if not isinstance(entries, list):
                log.warning("upstream %s answered /models without a model list", target.host)
                continue
            listed = True
            cards.extend(
                self._card(str(entry["id"]), target, entry)
                for entry in entries
                if isinstance(entry, dict) and entry.get("id")
            )
        cards.extend(self._extra_cards())
        self._index(cards)
        self._listed = listed
        self._fetched_at = self._clock()
