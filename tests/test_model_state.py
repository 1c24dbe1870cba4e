"""The published model index and the models in use, each on its own."""

from __future__ import annotations

import logging

import pytest

from oai2ollama.in_use import ModelsInUse, as_now
from oai2ollama.model_index import ModelIndex
from oai2ollama.translate.models import ModelCard, ModelSettings, describe


def card(model_id: str, upstream: str = "u", prefix: str = "", **settings: object) -> ModelCard:
    return describe(
        {"id": model_id},
        upstream=upstream,
        remote_host="http://u.test",
        prefix=prefix,
        capabilities=(),
        context_length=None,
        default_context_length=4096,
        settings=ModelSettings(**settings) if settings else None,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("name", "found"),
    [("gpt-4o", "gpt-4o:latest"), ("GPT-4o:latest", "gpt-4o:latest"), ("best", "gpt-4o:latest"), ("gpt-5", None)],
)
def test_lookup_by_name_tag_case_and_alias(name: str, found: str | None) -> None:
    index = ModelIndex([card("gpt-4o", alias="best")])
    hit = index.lookup(name)
    assert (hit.client_id + ":latest" if hit else None) == found


def test_the_first_upstream_keeps_a_name_and_the_shadowed_model_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cards = [card("m", "a"), card("m", "b")]
    with caplog.at_level(logging.WARNING):
        first = ModelIndex(cards)
        ModelIndex(cards, known_shadowed=first.shadowed)
    assert [c.upstream for c in first.listed] == ["a"]
    assert len([r for r in caplog.records if "is hidden" in r.getMessage()]) == 1


def test_hidden_models_answer_but_are_not_listed() -> None:
    index = ModelIndex([card("secret", hidden=True), card("open")])
    assert [c.client_id for c in index.listed] == ["open"]
    assert index.lookup("secret") is not None


def test_a_view_is_rendered_once_per_index() -> None:
    index = ModelIndex([card("a")])
    renders: list[int] = []
    for _ in range(3):
        index.rendered("names", lambda cards: renders.append(len(cards)))
    assert renders == [1]


def test_models_in_use_expire_and_can_be_unloaded() -> None:
    now = [1000.0]
    in_use = ModelsInUse(keep_alive=300, clock=lambda: now[0])
    a, b = card("A"), card("b")
    in_use.touch(a)
    now[0] += 10
    in_use.touch(b)
    assert in_use.loaded() == [(b, 1310.0), (a, 1300.0)]
    in_use.forget("B")  # `ollama stop b`: the name without its tag
    assert in_use.loaded() == [(a, 1300.0)]
    now[0] += 291
    assert in_use.loaded() == []


_NOW = ModelIndex([card("gpt-4o", alias="best"), card("mini"), card("gpt-4o", upstream="other", prefix="o/")])


@pytest.mark.parametrize(
    ("loaded", "shown"),
    [
        # A use from before an alias was set: the card as listed now.
        ([(card("gpt-4o"), 900.0)], [("best:latest", 900.0)]),
        # The same model used under its old and its new name: once, the later expiry kept.
        ([(card("gpt-4o", alias="best"), 950.0), (card("gpt-4o"), 900.0)], [("best:latest", 950.0)]),
        # Another upstream's model of the same id keeps its own card.
        ([(card("gpt-4o", upstream="other", prefix="o/"), 900.0)], [("o/gpt-4o:latest", 900.0)]),
        # A model no longer listed keeps the card of its use.
        ([(card("gone"), 900.0), (card("mini"), 800.0)], [("gone:latest", 900.0), ("mini:latest", 800.0)]),
    ],
)
def test_models_in_use_show_the_card_listed_now(
    loaded: list[tuple[ModelCard, float]], shown: list[tuple[str, float]]
) -> None:
    now = as_now(loaded, lambda used: _NOW.lookup(used.client_id))
    assert [(c.name, expires) for c, expires in now] == shown
