"""What the Models and Settings pages show, as plain rows: pure, from the catalog and the settings.

Secrets never reach a row: keys and tokens are said to be set or not, header values are left out,
a URL's password and query values are masked.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import SecretStr

from ..catalog import Catalog, edit_key
from ..config import Settings
from ..configuration import CatalogConfig, Configuration, Source
from ..masking import MASK
from ..model_rules import settings_for
from ..translate.models import detect, ollama_name

PAGE = "page"
FILE = "config"
DETECTED = "detected"
DEFAULT = "default"


def model_row(catalog: Catalog, config: CatalogConfig, source: Source, entry: dict[str, Any]) -> dict[str, Any]:
    """One model as clients see it, and where each of its values comes from."""
    card = catalog.card_of(source, entry)
    upstream_id = str(entry["id"])
    key = edit_key(source.name, upstream_id)
    edit = catalog.edits.get(key, {})
    rule = settings_for(card.client_id, config.rules)
    flag_length = any(
        name in config.context_lengths
        for name in (card.client_id.lower(), ollama_name(card.client_id.lower()), upstream_id.lower())
    )

    def origin(name: str, configured: bool, detected: bool = False) -> str:
        if name in edit:
            return PAGE
        if configured:
            return FILE
        return DETECTED if detected else DEFAULT

    served = catalog.index.named(card.name)
    return {
        "key": key,
        "card": card,
        "upstream": source.name,
        "served": served is not None and served.upstream == card.upstream and served.upstream_id == card.upstream_id,
        "edited": bool(edit),
        "options": json.dumps(dict(card.options), sort_keys=True) if card.options else "",
        "origin": {
            "alias": origin("alias", bool(rule and rule.alias)),
            "hidden": origin("hidden", bool(rule and rule.hidden)),
            "capabilities": origin("capabilities", bool(rule and rule.capabilities is not None), True),
            "context_length": origin(
                "context_length",
                bool(rule and rule.context_length) or flag_length,
                detect(entry).context_length is not None,
            ),
            "options": origin("options", bool(rule and rule.options)),
        },
    }


def safe_url(url: str) -> str:
    """A URL without its password or user, and with the values of its query masked (a key may be one)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return MASK
    query = "&".join(
        f"{name}={MASK if name != 'api-version' else value}" for name, value in parsed.params.multi_items()
    )
    clean = parsed.copy_with(username=None, password=None, query=None)
    return f"{clean}?{query}" if query else str(clean)


def _value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "set (hidden)"
    if isinstance(value, list) and value and isinstance(value[0], SecretStr):
        return f"{len(value)} set (hidden)"
    if value is None or value == [] or value == {}:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def settings_rows(settings: Settings, configuration: Configuration) -> list[dict[str, Any]]:
    """The effective configuration in sections of (name, value, note) rows."""
    server = []
    for name, info in type(settings).model_fields.items():
        if info.exclude or name in ("capacities", "ollama_host"):
            continue
        value = getattr(settings, name)
        if name == "database_url":
            shown = _database(value)
        elif name == "base_url" and value:
            shown = safe_url(value)
        else:
            shown = _value(value)
        given = "set" if name in settings.model_fields_set else "default"
        server.append({"name": "--" + name.replace("_", "-"), "value": shown, "note": given})
    upstreams = [
        {
            "name": source.name,
            "value": safe_url(source.target.base_url),
            "note": "; ".join(
                part
                for part in (
                    f"prefix {source.prefix!r}" if source.prefix else "",
                    "API key set (hidden)" if source.target.api_key else "each client's own key is forwarded",
                    f"headers: {', '.join(sorted(source.target.headers))} (values hidden)"
                    if source.target.headers
                    else "",
                    f"models: {', '.join(source.include.patterns)}" if source.include.patterns else "",
                    f"except: {', '.join(source.exclude.patterns)}" if source.exclude.patterns else "",
                    f"kind {source.target.kind}" if source.target.kind else "",
                )
                if part
            ),
        }
        for source in configuration.catalog.sources
    ]
    rules = [
        {
            "name": rule.pattern,
            "value": ", ".join(
                f"{name}={value}"
                for name, value in (
                    ("alias", rule.alias),
                    ("capabilities", list(rule.capabilities) if rule.capabilities is not None else None),
                    ("context_length", rule.context_length),
                    ("hidden", rule.hidden),
                    ("options", json.dumps(dict(rule.options), sort_keys=True) if rule.options else None),
                )
                if value is not None
            ),
            "note": "config file",
        }
        for rule in configuration.catalog.rules
    ]
    keys = [
        {
            "name": key.name or "–",
            "value": "models: " + ", ".join(key.models.patterns) if key.models is not None else "every model",
            "note": "the key itself is never shown",
        }
        for key in configuration.keys
    ]
    return [
        {"title": "Server", "rows": server},
        {"title": "Upstreams", "rows": upstreams},
        {"title": "Model rules (config file)", "rows": rules},
        {"title": "API keys (flags and config file)", "rows": keys},
    ]


def _database(value: SecretStr | None) -> str:
    from ..ledger.database import resolve_url, shown

    try:
        url = resolve_url(value.get_secret_value() if value else None)
    except ValueError:
        return MASK
    return "none (no ledger)" if url is None else shown(url)
