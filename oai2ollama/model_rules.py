"""Which models a pattern names: shell-style globs over model ids, a model's `models` filter, and
the config file's `[models."<id or glob>"]` rules merged into one model's settings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import translate
from typing import Any

from .translate.models import ModelSettings, Price, ollama_name


def is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


@dataclass(frozen=True)
class Globs:
    """Case-insensitive shell-style patterns matched against model ids, with or without `:latest`."""

    patterns: tuple[str, ...] = ()
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple(re.compile(translate(p.lower())) for p in self.patterns)
        object.__setattr__(self, "_compiled", compiled)

    def match(self, model_id: str) -> bool:
        key = model_id.lower()
        tagged = ollama_name(key)
        return any(rx.match(key) or rx.match(tagged) for rx in self._compiled)


def passes(upstream_id: str, include: Globs, exclude: Globs) -> bool:
    """Whether an upstream's model passes its `models` filter: included (or no include), not excluded."""
    if include.patterns and not include.match(upstream_id):
        return False
    return not exclude.match(upstream_id)


@dataclass(frozen=True)
class ModelRule:
    """One `[models."<id or glob>"]` table; None means the key was not given."""

    pattern: str
    alias: str | None = None
    capabilities: tuple[str, ...] | None = None
    context_length: int | None = None
    hidden: bool | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    price: Price | None = None
    _glob: Globs | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_glob", Globs((self.pattern,)) if self.is_glob else None)

    @property
    def is_glob(self) -> bool:
        return is_glob(self.pattern)

    def matches(self, model_id: str) -> bool:
        if self._glob is not None:
            return self._glob.match(model_id)
        return ollama_name(self.pattern.lower()) == ollama_name(model_id.lower())


def settings_for(model_id: str, rules: Sequence[ModelRule]) -> ModelSettings | None:
    """The merged settings of every rule matching `model_id` (the id clients see, prefix included).

    Globs apply in file order, then the exact rule; a later rule overrides the keys it sets, and
    options merge key by key, so `[models."*"]` can hold defaults that a model's own table refines.
    """
    matching = [r for r in rules if r.is_glob and r.matches(model_id)]
    matching += [r for r in rules if not r.is_glob and r.matches(model_id)]
    if not matching:
        return None
    alias = capabilities = context_length = None
    hidden = False
    options: dict[str, Any] = {}
    price: Price | None = None
    for rule in matching:
        alias = rule.alias or alias
        capabilities = rule.capabilities if rule.capabilities is not None else capabilities
        context_length = rule.context_length or context_length
        hidden = rule.hidden if rule.hidden is not None else hidden
        options.update(rule.options)
        price = rule.price or price
    return ModelSettings(
        alias=alias,
        capabilities=capabilities,
        context_length=context_length,
        hidden=hidden,
        options=options,
        price=price,
    )


EDITABLE = ("alias", "hidden", "capabilities", "context_length", "options")


def with_edit(settings: ModelSettings | None, edit: Mapping[str, Any]) -> ModelSettings:
    """`settings` with the admin page's edit applied: each field it gives replaces the file's
    (options whole, as the page shows and edits them whole); an empty alias removes the file's."""
    changes: dict[str, Any] = {}
    if "alias" in edit:
        changes["alias"] = edit["alias"] or None
    if "hidden" in edit:
        changes["hidden"] = bool(edit["hidden"])
    if "capabilities" in edit:
        changes["capabilities"] = tuple(edit["capabilities"])
    if "context_length" in edit:
        changes["context_length"] = int(edit["context_length"])
    if "options" in edit:
        changes["options"] = dict(edit["options"])
    return replace(settings or ModelSettings(), **changes)
