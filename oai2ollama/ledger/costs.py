"""Each request's estimated cost in USD: the config file's `price` for the model, else the maintained
`genai-prices` table; None where neither knows the model, never a guess.

Token counts are OpenAI's: input includes cached input, output includes reasoning. With a
configured price, cached input is charged as input (the file gives no cached price); the table
prices cached input at its own rate where it has one.

The writer prices every record, so the lookups are done once: which price applies to an
(upstream, model) is remembered, and so is a table price's rate per kind of token. genai-prices
itself takes ~150 µs to price one request (unit registry, validation, Decimal arithmetic) and ~15 µs
to say it does not know a model; a remembered rate is a few multiplications.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelPrice, TieredPrices

from ..configuration import Source
from ..model_rules import ModelRule, settings_for
from ..records import RequestRecord, Usage
from ..translate.models import Price

log = logging.getLogger("oai2ollama.ledger")

PER = 1_000_000  # prices are per million tokens
# Distinct (upstream, model) pairs remembered; past it, the oldest half is forgotten (ids a client
# makes up, for instance, must not grow the process).
_REMEMBERED = 4096


@dataclass(frozen=True, slots=True)
class _Table:
    """A model the price table knows, at one provider."""

    provider: Any
    model: Any


@dataclass(frozen=True, slots=True)
class _Rates:
    """A table price without tiers as USD per token of each kind, plus what any request costs: the
    table's own arithmetic, done once on probe counts (its prices are linear in each count)."""

    fixed: float
    input: float  # uncached input
    cached: float  # input read from a cache
    output: float


class Prices:
    def __init__(self, sources: Sequence[Source] = (), rules: Sequence[ModelRule] = ()) -> None:
        # The upstream's base URL tells the table which provider's prices apply: the same model id
        # costs differently at OpenAI, OpenRouter or Azure, and nothing on a local server.
        self._upstreams = {source.name: (source.target.base_url, source.prefix) for source in sources}
        self._rules = rules
        # (upstream, upstream model, model) -> a configured Price, a _Table, or None (no price).
        self._found: dict[tuple[str | None, str | None, str | None], Price | _Table | None] = {}
        # A table price's rates, by the identity of its ModelPrice (the table's own objects, kept
        # alive by the table; a model may change price at a date, so each period has its own).
        self._rates: dict[int, tuple[ModelPrice, _Rates | None]] = {}

    def load(self) -> None:
        """Read the price table now rather than when the first record is priced: reading it takes
        ~0.2 s, which would stall the event loop under the first requests, and leaves ~40,000
        objects that start-up then takes out of the garbage collector's sight (`cli.settle_heap`),
        instead of every full collection walking them."""
        data_snapshot.get_snapshot()

    def cost(self, record: RequestRecord) -> float | None:
        usage = record.usage
        if usage is None or (usage.input_tokens is None and usage.output_tokens is None):
            return None
        key = (record.upstream, record.upstream_model, record.model)
        try:
            found = self._found[key]
        except KeyError:
            if len(self._found) >= _REMEMBERED:
                for old in list(self._found)[: _REMEMBERED // 2]:
                    del self._found[old]
            found = self._found[key] = self._find(*key)
        if found is None:
            return None
        input_tokens, output_tokens = usage.input_tokens or 0, usage.output_tokens or 0
        if input_tokens < 0 or output_tokens < 0:  # no one's usage: no cost (the table refuses them too)
            return None
        if isinstance(found, Price):
            return (input_tokens * found.input + output_tokens * found.output) / PER
        return self._table_cost(found, usage, input_tokens, output_tokens, record.started_at)

    def _find(self, upstream: str | None, upstream_model: str | None, model: str | None) -> Price | _Table | None:
        base_url, prefix = self._upstreams.get(upstream or "", (None, ""))
        # Rules match the id clients see: the upstream's id behind the upstream's prefix.
        client_id = prefix + upstream_model if upstream_model else model
        configured = settings_for(client_id, self._rules) if client_id else None
        if configured is not None and configured.price is not None:
            return configured.price
        if not upstream_model or base_url is None:
            return None
        try:
            provider, info = data_snapshot.get_snapshot().find_provider_model(upstream_model, None, None, base_url)
        except LookupError:  # a provider or model the table does not know: no cost
            return None
        return _Table(provider, info)

    def _table_cost(
        self, table: _Table, usage: Usage, input_tokens: int, output_tokens: int, started_at: float
    ) -> float | None:
        cached_tokens = max(0, min(usage.cached_tokens or 0, input_tokens))
        when = datetime.fromtimestamp(started_at, UTC)
        price = table.model.get_prices(when)  # the price in force then (cheap: a few comparisons)
        remembered = self._rates.get(id(price))
        if remembered is None or remembered[0] is not price:
            remembered = self._rates[id(price)] = (price, _rates_of(table, price, when))
        rates = remembered[1]
        if rates is not None:
            uncached = input_tokens - cached_tokens
            return rates.fixed + uncached * rates.input + cached_tokens * rates.cached + output_tokens * rates.output
        # Tiered prices (the rate depends on the prompt's size): the table's own arithmetic each time.
        return _calculate(table, input_tokens, output_tokens, cached_tokens, when)


def _calculate(
    table: _Table, input_tokens: int, output_tokens: int, cached_tokens: int, when: datetime
) -> float | None:
    tokens = genai_prices.Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached_tokens or None
    )
    try:
        calculation = table.model.calc_price(tokens, table.provider, genai_request_timestamp=when)
    except ValueError as exc:  # the table's own refusal of odd counts: no cost
        log.debug("no price for %s: %s", table.model.id, exc)
        return None
    return float(calculation.total_price)


def _rates_of(table: _Table, price: ModelPrice, when: datetime) -> _Rates | None:
    """`price` as rates per token, or None if it has tiers (or the table refuses the probes)."""
    if any(isinstance(value, TieredPrices) for value in vars(price).values()):
        return None
    probe = PER
    fixed = _calculate(table, 0, 0, 0, when)
    uncached = _calculate(table, probe, 0, 0, when)
    cached = _calculate(table, probe, 0, probe, when)
    output = _calculate(table, 0, probe, 0, when)
    if fixed is None or uncached is None or cached is None or output is None:
        return None
    return _Rates(fixed, (uncached - fixed) / probe, (cached - fixed) / probe, (output - fixed) / probe)
