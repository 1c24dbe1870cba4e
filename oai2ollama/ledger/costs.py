"""Each request's estimated cost in USD: the config file's `price` for the model, else the maintained
`genai-prices` table; None where neither knows the model, never a guess.

Token counts are OpenAI's: input includes cached input, output includes reasoning. With a
configured price, cached input is charged as input (the file gives no cached price); the table
prices cached input at its own rate where it has one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import genai_prices

from ..configuration import Source
from ..model_rules import ModelRule, settings_for
from ..records import RequestRecord

log = logging.getLogger("oai2ollama.ledger")

PER = 1_000_000  # prices are per million tokens


class Prices:
    def __init__(self, sources: Sequence[Source] = (), rules: Sequence[ModelRule] = ()) -> None:
        # The upstream's base URL tells the table which provider's prices apply: the same model id
        # costs differently at OpenAI, OpenRouter or Azure, and nothing on a local server.
        self._upstreams = {source.name: (source.target.base_url, source.prefix) for source in sources}
        self._rules = rules

    def cost(self, record: RequestRecord) -> float | None:
        usage = record.usage
        if usage is None or (usage.input_tokens is None and usage.output_tokens is None):
            return None
        base_url, prefix = self._upstreams.get(record.upstream or "", (None, ""))
        upstream_model = record.upstream_model
        # Rules match the id clients see: the upstream's id behind the upstream's prefix.
        client_id = prefix + upstream_model if upstream_model else record.model
        configured = settings_for(client_id, self._rules) if client_id else None
        input_tokens, output_tokens = usage.input_tokens or 0, usage.output_tokens or 0
        if configured is not None and configured.price is not None:
            price = configured.price
            return (input_tokens * price.input + output_tokens * price.output) / PER
        if not upstream_model or base_url is None:
            return None
        tokens = genai_prices.Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=min(usage.cached_tokens or 0, input_tokens) or None,
        )
        try:
            calculation = genai_prices.calc_price(
                tokens,
                upstream_model,
                provider_api_url=base_url,
                genai_request_timestamp=datetime.fromtimestamp(record.started_at, UTC),
            )
        except LookupError:  # a provider or model the table does not know: no cost
            return None
        except ValueError as exc:  # the table's own refusal of odd counts: no cost either
            log.debug("no price for %s at %s: %s", upstream_model, record.upstream, exc)
            return None
        return float(calculation.total_price)
