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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from . import access
from .configuration import CatalogConfig, Source
from .errors import ProxyError, UpstreamError, model_not_found
from .model_index import ModelIndex
from .model_rules import settings_for, with_edit
from .records import ErrorKind
from .target import Target
from .translate.dialects import DIALECTS, Dialect, kind_from_models
from .translate.models import ModelCard, describe, listing_entries, ollama_name
from .upstream import Upstreams

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
        self._entries: dict[str, list[dict[str, Any]]] = {}  # upstream name → its listed /models entries
        self._by_source: dict[str, list[ModelCard]] = {}
        self._edits: Mapping[str, Mapping[str, Any]] = {}  # the admin page's, by `edit_key`
        self._listed: set[str] = set()  # upstreams whose /models answered at least once
        self._failing: dict[str, str] = {}  # upstream name → the failure last logged
        self._kinds: dict[str, str] = {}  # upstream name → the kind its /models answer gave away
        self._fetched_at: float | None = None
        self._due = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self.started = time.time()
        self.index = ModelIndex(card for source in self._sources for card in self._extra_cards(source, set()))

    def target(self, card: ModelCard) -> Target:
        """The upstream that serves `card`; send it `card.upstream_id`."""
        return self._targets.get(card.upstream, self._sources[0].target)

    async def cards(self) -> list[ModelCard]:
        """The listed models (hidden ones excluded) the caller's key may use, in upstream order.

        While nothing is listed because upstreams cannot be asked, that is said (502), naming each
        and why: an empty list would tell clients that there are no models.
        """
        await self._fresh()
        if not self.index.listed and self._failing:
            problems = "; ".join(
                f"upstream {s.name} ({s.target.host}): {self._failing[s.name]}"
                for s in self._sources
                if s.name in self._failing
            )
            raise UpstreamError(f"cannot list models: {problems}", kind=ErrorKind.UNREACHABLE)
        return access.visible(self.index.listed)

    async def resolve(self, name: object) -> ModelCard:
        """The card for a client's model name, for a request to the model.

        A listed name (exact, alias, with or without `:latest`) or a variant of one (`…:online`,
        sent as asked, described as its base model) gets its card; any other name goes to the
        upstream that would take it (by prefix, else the upstream without one), which answers for
        itself: names it accepts but does not list (deployments, wildcard routes, a model added
        since the last refresh) work, and its own 404 reaches the client. Only a name no upstream
        can take is our 404. Every route resolves here, so this is also where a key limited to
        some models (see `access`) is refused any other: 403.
        """
        name = _model_name(name)
        await self._fresh()
        card = self._known(name)
        if card is None:
            self._refresh_soon()  # a model added upstream since the last refresh is listed next time
            card = self._unlisted(name)
        if card is None:
            raise model_not_found(name)
        access.check(name, card)
        return card

    async def known(self, name: object) -> ModelCard:
        """The card of a model the catalog knows (what /api/show and /api/pull describe): a listed
        name or a variant of one. While the upstream that would serve it cannot be listed, that is
        said, naming the upstream and why, rather than guessed."""
        name = _model_name(name)
        await self._fresh()
        card = self._known(name)
        if card is None:
            source = self._route(name)
            if source is not None and source.name in self._failing and source.name not in self._listed:
                problem = self._failing[source.name]
                raise UpstreamError(
                    f"cannot tell whether upstream {source.name} ({source.target.host}) serves model '{name}': "
                    f"its models cannot be listed: {problem}",
                    kind=ErrorKind.UNREACHABLE,
                )
            raise model_not_found(name)
        access.check(name, card)
        return card

    def listed_card(self, name: str) -> ModelCard | None:
        """The card of a name the catalog lists (or hides), without asking any upstream."""
        return self.index.lookup(name)

    def listing_outcomes(self) -> dict[str, bool]:
        """Per upstream asked so far: whether its last /models listing answered."""
        return {
            source.name: source.name not in self._failing
            for source in self._sources
            if source.name in self._failing or source.name in self._listed
        }

    def dialect(self, target: Target) -> Dialect:
        """What kind of server `target` is: as configured, else as its /models answer or its host tells."""
        kind = target.kind or self._kinds.get(target.name) or target.host_kind or "generic"
        return DIALECTS[kind]

    async def check_access(self, name: object) -> None:
        """Refuse (403, or 404 if unknown) a model the caller's key may not use; routes that need no
        card (token counting) call this, the others get the same check from `resolve`."""
        if access.caller_models.get() is not None:
            await self.resolve(name)

    async def refresh(self) -> None:
        """Fetch every upstream's list now, whatever the TTL says (joins a refresh under way)."""
        self.refresh_in_background()
        await asyncio.shield(self._refresh)

    def refresh_in_background(self) -> None:
        """Start fetching every upstream's list now without waiting for it (joins a refresh under way)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._load())

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

    def _known(self, name: str) -> ModelCard | None:
        card = self.index.lookup(name)
        if card is not None:
            return card
        base, tag = _split_tag(name)
        if not tag or tag == "latest":
            return self._configured_alias(name)
        card = self.index.lookup(base)
        if card is None or ":" in card.upstream_id.rsplit("/", 1)[-1]:
            return None  # a tag of a tagged id is another model (qwen3:8b, qwen3:14b), not a variant
        # A variant (OpenRouter's `:online`, `:free`, `:thinking`…) is its base model, sent as asked.
        return replace(card, name=name, upstream_id=f"{card.upstream_id}:{tag}", client_id=f"{card.client_id}:{tag}")

    def _configured_alias(self, name: str) -> ModelCard | None:
        """A configured alias names its model even while the model's upstream cannot be listed."""
        wanted = ollama_name(name.lower())
        rule = next((r for r in self._config.rules if r.alias and ollama_name(r.alias.lower()) == wanted), None)
        if rule is None or rule.is_glob:
            return None
        source = self._route(rule.pattern)
        if source is None:
            return None
        card = self._card(source, {"id": _strip_prefix(rule.pattern, source)})
        # The admin page may have renamed the model or cleared its alias: then the old name is no longer its.
        return card if card.alias is not None and ollama_name(card.alias.lower()) == wanted else None

    def _route(self, name: str) -> Source | None:
        """The upstream that would take a name no upstream lists: the one whose prefix it carries
        (the longest), else the first without a prefix."""
        lowered = name.lower()
        prefixed = [s for s in self._sources if s.prefix and lowered.startswith(s.prefix.lower())]
        if prefixed:
            return max(prefixed, key=lambda s: len(s.prefix))
        return next((s for s in self._sources if not s.prefix), None)

    def _unlisted(self, name: str) -> ModelCard | None:
        source = self._route(name)
        if source is None:
            return None
        upstream_id = _strip_prefix(name, source)
        if self.dialect(source.target).kind != "ollama":
            upstream_id = upstream_id.removesuffix(":latest")  # Ollama-style names of untagged ids
        if not upstream_id or not source.lists(upstream_id):
            return None
        card = self._card(source, {"id": upstream_id})
        return replace(card, name=ollama_name(name)) if card.alias is None else card

    def apply_edits(self, edits: Mapping[str, Mapping[str, Any]]) -> None:
        """The admin page's edits (by `edit_key`), which win over the config file: every card is
        described anew from the upstreams' last answers, at once."""
        self._edits = dict(edits)
        for source in self._sources:
            if source.name in self._entries:
                self._by_source[source.name] = [self._card(source, entry) for entry in self._entries[source.name]]
        self._publish()

    @property
    def edits(self) -> Mapping[str, Mapping[str, Any]]:
        return self._edits

    def models(self) -> Iterator[tuple[Source, dict[str, Any]]]:
        """Every model the upstreams list (hidden and shadowed ones too) or that is configured as an
        extra, as (upstream, its /models entry): what the admin page shows."""
        for source in self._sources:
            listed = self._entries.get(source.name, [])
            yield from ((source, entry) for entry in listed)
            ids = {str(entry["id"]) for entry in listed}
            yield from ((source, {"id": model_id}) for model_id in source.extra_models if model_id not in ids)

    def card_of(self, source: Source, entry: dict[str, Any], *, edited: bool = True) -> ModelCard:
        """The card of one model, as clients see it, or as it would be without the page's edits."""
        return self._card(source, entry, edited=edited)

    def upstream_states(self) -> list[dict[str, Any]]:
        """Per upstream: name, host, kind, whether its last listing answered (None: not asked yet),
        how many models it lists, and its failure if it is failing."""
        return [
            {
                "name": source.name,
                "host": source.target.host,
                "kind": self.dialect(source.target).kind,
                "listed": (source.name not in self._failing)
                if source.name in self._listed or source.name in self._failing
                else None,
                "models": len(self._entries.get(source.name, ())),
                "error": self._failing.get(source.name),
            }
            for source in self._sources
        ]

    def _card(self, source: Source, entry: dict[str, Any], *, edited: bool = True) -> ModelCard:
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
        settings = settings_for(client_id, self._config.rules)
        edit = self._edits.get(edit_key(source.name, upstream_id)) if edited else None
        if edit:
            settings = with_edit(settings, edit)
            explicit = edit.get("context_length") or explicit  # the page's wins over --context-lengths too
        return describe(
            entry,
            upstream=source.name,
            remote_host=source.target.origin,
            prefix=source.prefix,
            capabilities=self._config.capabilities,
            context_length=explicit,
            default_context_length=self._config.default_context_length,
            settings=settings,
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
        for source, listed in zip(self._sources, fetched, strict=True):
            if listed is not None:
                self._entries[source.name] = listed
                self._by_source[source.name] = [self._card(source, entry) for entry in listed]
        self._publish()
        self._fetched_at = now = self._clock()
        retry = min(self._config.ttl, RETRY_SECONDS) if None in fetched else self._config.ttl
        self._due = now + retry

    def _publish(self) -> None:
        cards: list[ModelCard] = []
        for source in self._sources:
            cards += self._by_source.get(source.name, [])
            cards += self._extra_cards(source, {card.upstream_id for card in self._by_source.get(source.name, [])})
        self.index = ModelIndex(cards, known_shadowed=self.index.shadowed)

    async def _list(self, source: Source) -> list[dict[str, Any]] | None:
        """The upstream's listed model entries, or None when it could not say (the failure is logged)."""
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
        kind = kind_from_models(entries)
        if kind is not None:
            self._kinds[source.name] = kind
        return [entry for entry in entries if source.lists(str(entry["id"]))]

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


def edit_key(upstream: str, upstream_id: str) -> str:
    """Which model an admin-page edit is for: `upstream/upstream id` (`model_edits.model`)."""
    return f"{upstream}/{upstream_id}"


def _model_name(name: object) -> str:
    if name is None or name == "":
        raise ProxyError("model is required", status=400)
    if not isinstance(name, str):
        raise ProxyError("model must be a string", status=400)
    return name


def _split_tag(name: str) -> tuple[str, str]:
    """`org/model:tag` → (`org/model`, `tag`); a name without a tag has an empty one."""
    head, slash, last = name.rpartition("/")
    base, colon, tag = last.partition(":")
    return (f"{head}{slash}{base}", tag) if colon else (name, "")


def _strip_prefix(name: str, source: Source) -> str:
    return name[len(source.prefix) :] if name.lower().startswith(source.prefix.lower()) else name
