"""Each request's estimated cost: the config file's price, else genai-prices' table, else none."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from oai2ollama.config_file import ConfigError, parse
from oai2ollama.configuration import Source
from oai2ollama.ledger.costs import Prices
from oai2ollama.model_rules import ModelRule, settings_for
from oai2ollama.records import RequestRecord, Usage
from oai2ollama.target import Target
from oai2ollama.translate.models import Price

SOURCES = [
    Source(Target("https://api.openai.com/v1", None)),  # named "default"
    Source(Target("http://127.0.0.1:8080/v1", None, "local")),
    Source(Target("https://openrouter.ai/api/v1", None, "openrouter"), prefix="or/"),
]


def record(**fields: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "started_at": 1_780_000_000.0,
        "method": "POST",
        "path": "/api/chat",
        "dialect": "ollama",
        "status": 200,
        "duration": 1.0,
        "first_byte": 0.1,
        "model": "gpt-4o",
        "upstream": "default",
        "upstream_model": "gpt-4o",
        "usage": Usage(input_tokens=1000, output_tokens=500, cached_tokens=200),
    }
    return RequestRecord(**(values | fields))


def test_the_price_table_knows_a_provider_by_its_url() -> None:
    # gpt-4o: $2.50 in, $1.25 cached in, $10 out per million: 800*2.5 + 200*1.25 + 500*10
    assert Prices(SOURCES).cost(record()) == pytest.approx(0.00725)
    cost = Prices(SOURCES).cost(record(upstream="openrouter", upstream_model="openai/gpt-4o", model="or/openai/gpt-4o"))
    assert cost is not None and cost > 0


@pytest.mark.parametrize(
    "changes",
    [
        {"upstream": "local"},  # a local server: the same id costs nothing we know of
        {"upstream_model": "tiny-local-model"},  # a model the table does not know
        {"usage": None},  # no token counts
        {"usage": Usage()},
        {"upstream": None, "upstream_model": None},  # no upstream took it
        {"upstream": "gone"},  # an upstream not configured (a record from another configuration)
    ],
)
def test_no_known_price_is_no_cost_never_a_guess(changes: dict[str, Any]) -> None:
    assert Prices(SOURCES).cost(record(**changes)) is None


def test_a_configured_price_wins_and_matches_the_id_clients_see() -> None:
    rules = [
        ModelRule("or/*", price=Price(input=1.0, output=2.0)),
        ModelRule("tiny-local-model", price=Price(input=0.5, output=0.25)),
    ]
    prices = Prices(SOURCES, rules)
    # 1000 in (cached input counts as input here) and 500 out
    assert prices.cost(record(upstream="local", upstream_model="tiny-local-model")) == pytest.approx(0.000625)
    routed = record(upstream="openrouter", upstream_model="openai/gpt-4o")
    assert prices.cost(routed) == pytest.approx(0.002)
    assert prices.cost(dataclasses.replace(routed, usage=Usage(output_tokens=10))) == pytest.approx(0.00002)
    assert prices.cost(record()) == pytest.approx(0.00725)  # no rule for it: the table


@pytest.mark.parametrize(
    ("base_url", "model"),
    [
        ("https://api.openai.com/v1", "gpt-4o"),
        ("https://api.openai.com/v1", "o3"),  # prices by date
        ("https://api.anthropic.com/v1", "claude-sonnet-4-5"),  # tiered: the table's arithmetic each time
        ("https://openrouter.ai/api/v1", "openai/gpt-4o-mini"),
    ],
)
def test_remembered_rates_give_the_tables_own_figures(base_url: str, model: str) -> None:
    """Prices remembers each model's rates per token (the table's arithmetic costs ~150 µs a
    request); the figures are the table's, for any counts and any date."""
    prices = Prices([Source(Target(base_url, None))])
    for started_at in (1_700_000_000.0, 1_780_000_000.0):
        for tokens in [(1000, 500, 200), (0, 7, 0), (250_000, 10, 0), (1, 0, 5), (3, 3, 3)]:
            input_tokens, output_tokens, cached_tokens = tokens
            usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached_tokens)
            fields = {"upstream_model": model, "model": model, "started_at": started_at, "usage": usage}
            expected = genai_prices.calc_price(
                genai_prices.Usage(
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cache_read_tokens=min(cached_tokens, input_tokens) or None,
                ),
                model,
                provider_api_url=base_url,
                genai_request_timestamp=datetime.fromtimestamp(started_at, UTC),
            )
            for _ in range(2):  # found, then remembered
                assert prices.cost(record(**fields)) == pytest.approx(float(expected.total_price), rel=1e-9, abs=1e-15)


def test_settings_for_merges_the_price_like_other_keys() -> None:
    rules = [ModelRule("*", price=Price(1, 1)), ModelRule("gpt-4o", price=Price(2.5, 10)), ModelRule("gpt-*")]
    merged = settings_for("gpt-4o:latest", rules)
    assert merged is not None and merged.price == Price(2.5, 10)
    other = settings_for("gpt-4.1", rules)
    assert other is not None and other.price == Price(1, 1)


def load(text: str) -> Any:
    import tomllib

    return parse(tomllib.loads(text), path=Path("o.toml"), environ={})


def test_the_config_file_reads_a_price() -> None:
    config = load('[models."gpt-4o"]\nprice = { input = 2.5, output = 10 }\n')
    assert config.models[0].price == Price(input=2.5, output=10.0)


@pytest.mark.parametrize(
    ("price", "words"),
    [
        ("{ input = 2.5 }", 'o.toml: [models."m"] price.output: is required (USD per million tokens)'),
        ('{ input = "2.5", output = 1 }', "price.input: must be a number (USD per million tokens), not a string"),
        ("{ input = -1, output = 1 }", "price.input: must be zero or more"),
        ("{ input = 1, output = nan }", "price.output: must be zero or more"),
        ("{ input = 1, output = true }", "price.output: must be a number"),
        ("{ input = 1, output = 1, cached = 0.5 }", "unknown key"),
        ("2.5", "price: must be a table"),
    ],
)
def test_a_bad_price_names_the_key(price: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(f'[models."m"]\nprice = {price}\n')
    assert words in str(caught.value)
