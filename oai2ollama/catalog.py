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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import config_file
from .config import Settings
from .config_file import Globs, ModelRule, passes, settings_for
from .errors import ProxyError, model_not_found
from .guards import caller_models
from .translate.models import ModelCard, describe, listing_entries, ollama_name
from .upstream import Target, Upstreams

log = logging.getLogger("oai2ollama.catalog")
T = TypeVar("T")

# How long a model stays in /api/ps after its last use, like Ollama's default keep_alive.
KEEP_ALIVE_SECONDS = 300.0
# An upstream that failed is asked again this soon (or at the TTL, if shorter), so a local server
# started after oai2ollama appears without waiting a whole TTL.
RETRY_SECONDS = 10.0
# How long the catalog waits for one upstream's /models before serving without it.
LIST_TIMEOUT_SECONDS = 15.0
# A request for an unknown model triggers a background refresh at most this often.
MISS_REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class Source:
    """One upstream as the catalog sees it: where it is, and which of its models to list."""

    target: Target
    prefix: str = ""
    include: Globs = field(default_factory=Globs)
    exclude: Globs = field(default_factory=Globs)
    extra_models: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.target.name

    def lists(self, upstream_id: str) -> bool:
        return passes(upstream_id, self.include, self.exclude)


@dataclass
class CatalogConfig:
    sources: Sequence[Source]
    rules: Sequence[ModelRule] = ()
    capabilities: Sequence[str] = ()  # for chat models whose metadata is silent about them
    context_lengths: Mapping[str, int] = field(default_factory=dict)  # --context-lengths, by id
    default_context_length: int = 131072
    ttl: float = 60.0
    timeout: float = LIST_TIMEOUT_SECONDS


def catalog_config(settings: Settings) -> CatalogConfig:
    """Settings and the optional config file, combined; a problem raises a ValueError for the user.

    `--base-url`/`--api-key` define the upstream named `default`; each `[[upstreams]]` adds one.
    Flags and environment variables win over the file's `[defaults]`.
    """
    file = config_file.load(settings.config) if settings.config else None
    sources: list[Source] = []
    if settings.base_url:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        sources.append(Source(Target(base_url=settings.base_url, api_key=key), extra_models=(*settings.extra_models,)))
    for number, upstream in enumerate(file.upstreams if file else (), 1):
        if any(source.name == upstream.name for source in sources):
            raise config_file.ConfigError(
                f"{settings.config}: [[upstreams]] #{number} name: {upstream.name!r} is the name of the "
                "upstream given by --base-url; choose another name"
            )
        target = Target(upstream.base_url, upstream.api_key, upstream.name, dict(upstream.headers))
        sources.append(Source(target, upstream.prefix, upstream.include, upstream.exclude))
    if not sources:
        raise ValueError("base-url is required (flag --base-url or env OPENAI_BASE_URL, or [[upstreams]] in --config)")
    if settings.extra_models and not settings.base_url:
        first = sources[0]
        sources[0] = Source(first.target, first.prefix, first.include, first.exclude, (*settings.extra_models,))
    explicit = settings.model_fields_set
    defaults = file.defaults if file else config_file.Defaults()
    capabilities = settings.all_capabilities()
    if not ({"capabilities", "capacities"} & explicit) and defaults.capabilities is not None:
        capabilities = list(defaults.capabilities)
    context_length = settings.context_length
    if "context_length" not in explicit and defaults.context_length:
        context_length = defaults.context_length
    return CatalogConfig(
        sources=sources,
        rules=file.models if file else (),
        capabilities=capabilities,
        context_lengths={name.lower(): size for name, size in settings.context_lengths.items()},
        default_context_length=context_length,
        ttl=settings.models_ttl,
    )


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
        self._shadowed: set[tuple[str, str]] = set()
        self._cards: list[ModelCard] = []
        self._views: dict[str | tuple[str, tuple[str, ...]], Any] = {}
        self._exact: dict[str, ModelCard] = {}
        self._aliases: dict[str, ModelCard] = {}
        self._fetched_at: float | None = None
        self._due = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._used: dict[str, float] = {}
        self.started = time.time()
        self._publish([card for source in self._sources for card in self._extra_cards(source, set())])

    @property
    def targets(self) -> list[Target]:
        return [source.target for source in self._sources]

    def target(self, card: ModelCard) -> Target:
        """The upstream that serves `card`; send it `card.upstream_id`."""
        return self._targets.get(card.upstream, self._sources[0].target)

    async def cards(self) -> list[ModelCard]:
        """The listed models (hidden ones excluded) the caller's key may use, in upstream order."""
        await self._fresh()
        return _visible(self._cards)

    async def resolve(self, name: object) -> ModelCard:
        """The card for a client's model name: exact name, then alias, then without `:latest`.

        Every route that uses a model resolves it here, so this is where a key limited to some
        models (see `guards.caller_models`) is refused any other: 403.
        """
        if name is None or name == "":
            raise ProxyError("model is required", status=400)
        if not isinstance(name, str):
            raise ProxyError("model must be a string", status=400)
        await self._fresh()
        card = self._lookup(name.lower()) or self._passthrough(name)
        if card is None:
            self._refresh_soon()  # a model added upstream since the last refresh is found next time
            raise model_not_found(name)
        allowed = caller_models.get()
        if allowed is not None and not _permits(allowed, card):
            raise ProxyError(f"this API key may not use model '{name}'", status=403)
        return card

    async def check_access(self, name: object) -> None:
        """Refuse (403, or 404 if unknown) a model the caller's key may not use; routes that need no
        card (token counting) call this, the others get the same check from `resolve`."""
        if caller_models.get() is not None:
            await self.resolve(name)

    async def refresh(self) -> None:
        """Fetch every upstream's list now, whatever the TTL says (joins a refresh under way)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._load())
        await asyncio.shield(self._refresh)

    async def aclose(self) -> None:
        """Stop a refresh under way (call before the upstream client closes)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)

    def rendered(self, view: str, render: Callable[[list[ModelCard]], T]) -> T:
        """`render(listed cards)`, computed once per refresh (and per model-limited key): e.g. the
        whole /api/tags answer."""
        allowed = caller_models.get()
        key = view if allowed is None else (view, allowed.patterns)
        if key not in self._views:
            self._views[key] = render(_visible(self._cards))
        return self._views[key]  # type: ignore[no-any-return]

    def touch(self, card: ModelCard) -> None:
        self._used[card.name] = time.time()

    def loaded(self) -> list[tuple[ModelCard, float]]:
        """Models used within the keep-alive window, longest remaining lifetime first."""
        now = time.time()
        recent = [(name, used + KEEP_ALIVE_SECONDS) for name, used in self._used.items()]
        recent = [item for item in recent if item[1] > now]
        recent.sort(key=lambda item: item[1], reverse=True)
        allowed = caller_models.get()
        return [
            (self._exact[name.lower()], expires)
            for name, expires in recent
            if name.lower() in self._exact and (allowed is None or _permits(allowed, self._exact[name.lower()]))
        ]

    def _lookup(self, key: str) -> ModelCard | None:
        keys = (key, key.removesuffix(":latest")) if key.endswith(":latest") else (key,)
        for candidate in keys:
            card = self._exact.get(candidate) or self._aliases.get(candidate)
            if card is not None:
                return card
        return None

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
        self._publish(cards)
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

    def _publish(self, cards: list[ModelCard]) -> None:
        # A configured alias claims its name before any discovered id: explicit beats found.
        owners: dict[str, ModelCard] = {}
        shadowed: set[tuple[str, str]] = set()
        for card in sorted(cards, key=lambda c: c.alias is None):
            key = card.name.lower()
            owner = owners.setdefault(key, card)
            if owner is not card:
                shadowed.add((card.upstream, card.client_id))
                if (card.upstream, card.client_id) not in self._shadowed:
                    log.warning(
                        "model %s of upstream %s is hidden: upstream %s already serves %s (set a prefix or an alias)",
                        card.client_id,
                        card.upstream,
                        owner.upstream,
                        card.name,
                    )
        self._shadowed = shadowed
        kept = [card for card in cards if owners[card.name.lower()] is card]
        exact = dict(owners)
        for card in kept:
            exact.setdefault(card.client_id.lower(), card)
        self._exact = exact
        self._aliases = {card.alias.lower(): card for card in kept if card.alias}
        self._cards = [card for card in kept if not card.hidden]
        self._views.clear()


def _permits(allowed: Globs, card: ModelCard) -> bool:
    """A key's globs name a model as clients do: its listed name, with or without `:latest`, or its
    id before any alias."""
    return (
        allowed.match(card.name)
        or allowed.match(card.name.removesuffix(":latest"))
        or (card.client_id != "" and allowed.match(card.client_id))
    )


def _visible(cards: list[ModelCard]) -> list[ModelCard]:
    allowed = caller_models.get()
    if allowed is None:
        return cards
    return [card for card in cards if _permits(allowed, card)]
