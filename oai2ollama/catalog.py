"""The model catalog: which models exist, which upstream serves each, what each can do.

Every upstream's /models answer is fetched concurrently and cached for a TTL. The first request
waits for the first fetch (bounded by `timeout`); after that a stale catalog keeps answering while
one refresh runs in the background, so /api/tags and /api/show never wait on a slow upstream
more than once. An upstream that fails keeps its last known models and cannot hide the others';
its failure is logged when it starts, not on every refresh or request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from . import access
from .config_file import settings_for
from .configuration import CatalogConfig, Source
from .errors import ProxyError, model_not_found
from .model_index import ModelIndex
from .translate.models import ModelCard, describe, listing_entries, ollama_name
from .upstream import Target, Upstreams

log = logging.getLogger("oai2ollama.catalog")

# An upstream that failed is asked again this soon (or at the TTL, if shorter), so a local server
# started after oai2ollama appears without waiting a whole TTL.
RETRY_SECONDS = 10.0
# A request for an unknown model triggers a background refresh at most this often.
MISS_REFRESH_SECONDS = 10.0


class Catalog:
    def __init__(self, upstreams: Upstreams, config: CatalogConfig, *, clock: Callable[[], float] = time.monotonic):
        if not config.sources:
            raise ValueError("the catalog needs at least one upstream")
        self._upstreams = upstreams
        self._config = config
        self._sources = list(config.sources)
        self._targets = {source.name: source.target for source in self._sources}
        self._clock = clock
        self._by_source: dict[str, list[ModelCard]] = {}
        self._listed: set[str] = set()  # upstreams whose /models answered at least once
        self._failing: dict[str, str] = {}  # upstream name → the failure last logged
        self._fetched_at: float | None = None
        self._due = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self.started = time.time()
        self.index = ModelIndex(card for source in self._sources for card in self._extra_cards(source, set()))

    def target(self, card: ModelCard) -> Target:
        """The upstream that serves `card`; send it `card.upstream_id`."""
        return self._targets.get(card.upstream, self._sources[0].target)

    async def cards(self) -> list[ModelCard]:
        """The listed models (hidden ones excluded) the caller's key may use, in upstream order."""
        await self._fresh()
        return access.visible(self.index.listed)

    async def resolve(self, name: object) -> ModelCard:
        """The card for a client's model name: exact name, then alias, then without `:latest`.

        Every route that uses a model resolves it here, so this is where a key limited to some
        models (see `access`) is refused any other: 403.
        """
        if name is None or name == "":
            raise ProxyError("model is required", status=400)
        if not isinstance(name, str):
            raise ProxyError("model must be a string", status=400)
        await self._fresh()
        card = self.index.lookup(name) or self._passthrough(name)
        if card is None:
            self._refresh_soon()  # a model added upstream since the last refresh is found next time
            raise model_not_found(name)
        access.check(name, card)
        return card

    async def check_access(self, name: object) -> None:
        """Refuse (403, or 404 if unknown) a model the caller's key may not use; routes that need no
        card (token counting) call this, the others get the same check from `resolve`."""
        if access.caller_models.get() is not None:
            await self.resolve(name)

    async def refresh(self) -> None:
        """Fetch every upstream's list now, whatever the TTL says (joins a refresh under way)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._load())
        await asyncio.shield(self._refresh)

    async def announce(self) -> None:
        """List every upstream once at start-up and say, per upstream that answered, how many models
        it lists; one that could not be listed has already been logged, with why."""
        await self.refresh()
        for source in self._sources:
            if source.name not in self._failing:
                count = len(self._by_source.get(source.name, ()))
                listed = f"{count} model" + ("" if count == 1 else "s")
                log.info("upstream %s (%s) answered: %s listed", source.name, source.target.host, listed)

    async def aclose(self) -> None:
        """Stop a refresh under way (call before the upstream client closes)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)

    def _passthrough(self, name: str) -> ModelCard | None:
        """Without a model list to check against, trust the client and let the upstream judge."""
        silent = [source for source in self._sources if source.name not in self._listed]
        if not silent:
            return None
        # A configured alias still names its model while the model's upstream is silent.
        wanted = ollama_name(name.lower())
        name = next((r.pattern for r in self._config.rules if r.alias and ollama_name(r.alias.lower()) == wanted), name)
        lowered = name.lower()
        prefixed = [s for s in silent if s.prefix and lowered.startswith(s.prefix.lower())]
        if prefixed:
            source = max(prefixed, key=lambda s: len(s.prefix))
        elif len(silent) == len(self._sources):
            source = next((s for s in silent if not s.prefix), silent[0])
        else:
            return None  # the upstreams that did answer do not have it
        upstream_id = name[len(source.prefix) :] if lowered.startswith(source.prefix.lower()) else name
        return self._card(source, {"id": upstream_id.removesuffix(":latest")})

    def _card(self, source: Source, entry: dict[str, Any]) -> ModelCard:
        upstream_id = str(entry["id"])
        client_id = source.prefix + upstream_id
        lengths = self._config.context_lengths
        explicit = next(
            (
                lengths[key]
                for key in (client_id.lower(), ollama_name(client_id.lower()), upstream_id.lower())
                if key in lengths
            ),
            None,
        )
        return describe(
            entry,
            upstream=source.name,
            remote_host=source.target.origin,
            prefix=source.prefix,
            capabilities=self._config.capabilities,
            context_length=explicit,
            default_context_length=self._config.default_context_length,
            settings=settings_for(client_id, self._config.rules),
        )

    def _extra_cards(self, source: Source, listed: set[str]) -> list[ModelCard]:
        return [self._card(source, {"id": model_id}) for model_id in source.extra_models if model_id not in listed]

    async def _fresh(self) -> None:
        if self._fetched_at is not None and self._clock() < self._due:
            return
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._load())
        if self._fetched_at is None:
            # Nothing to answer from yet; every waiting request shares the one fetch.
            await asyncio.shield(self._refresh)

    def _refresh_soon(self) -> None:
        if self._fetched_at is None or self._clock() - self._fetched_at < MISS_REFRESH_SECONDS:
            return
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._load())

    async def _load(self) -> None:
        fetched = await asyncio.gather(*(self._list(source) for source in self._sources))
        cards: list[ModelCard] = []
        for source, listed in zip(self._sources, fetched, strict=True):
            if listed is not None:
                self._by_source[source.name] = listed
            cards += self._by_source.get(source.name, [])
            cards += self._extra_cards(source, {card.upstream_id for card in self._by_source.get(source.name, [])})
        self.index = ModelIndex(cards, known_shadowed=self.index.shadowed)
        self._fetched_at = now = self._clock()
        retry = min(self._config.ttl, RETRY_SECONDS) if None in fetched else self._config.ttl
        self._due = now + retry

    async def _list(self, source: Source) -> list[ModelCard] | None:
        """The upstream's listed models, or None when it could not say (the failure is logged)."""
        try:
            async with asyncio.timeout(self._config.timeout):
                listing = await self._upstreams.get_json(source.target, "/models")
        except ProxyError as exc:
            return self._failed(source, exc.message)
        except TimeoutError:
            return self._failed(source, f"no answer within {self._config.timeout:g} s")
        entries = listing_entries(listing)
        if entries is None:
            return self._failed(source, "its /models answer holds no model list")
        if self._failing.pop(source.name, None) is not None:
            log.info("upstream %s lists its models again", source.name)
        self._listed.add(source.name)
        return [self._card(source, entry) for entry in entries if source.lists(str(entry["id"]))]

    def _failed(self, source: Source, problem: str) -> None:
        kept = len(self._by_source.get(source.name, []))
        if self._failing.get(source.name) != problem:
            outcome = f"keeping its {kept} known models" if kept else "its models are unavailable until it answers"
            log.warning(
                "could not list the models of upstream %s (%s): %s; %s",
                source.name,
                source.target.host,
                problem,
                outcome,
            )
        self._failing[source.name] = problem
        return None
