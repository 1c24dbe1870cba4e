"""The admin page's edits to models: read from its form, checked as the config file's model tables
are, kept in `model_edits` (one JSON object per model), and applied by every process.

An edit holds only what differs from what the model would be without it (the config file and
detection), so the page can say where each value comes from, and resetting deletes the row. Each
change raises the `model_edits` topic in its transaction: every process's poller reapplies them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..config_file import read_model
from ..config_reader import ConfigError
from ..ledger import tables
from ..shared_state import bump
from ..translate.models import ALL_CAPABILITIES, ModelCard

TOPIC = "model_edits"
REFRESH_TOPIC = "models_refresh"  # raised by the page's "refresh from upstreams": every process asks its upstreams
EDITABLE_CAPABILITIES = tuple(name for name in ALL_CAPABILITIES if name != "completion")
_WHERE = "model edit"


class EditError(ValueError):
    """A value the form cannot take; the message names the field."""


def _options_text(options: Mapping[str, Any]) -> str:
    return json.dumps(dict(options), indent=2, sort_keys=True) if options else "{}"


def form_values(card: ModelCard) -> dict[str, Any]:
    """What the edit form shows for a card."""
    return {
        "alias": card.alias or "",
        "hidden": card.hidden,
        "capabilities": [name for name in card.capabilities if name != "completion"],
        "context_length": str(card.context_length),
        "options": _options_text(card.options),
    }


def edit_from_form(form: Mapping[str, list[str]], baseline: ModelCard, pattern: str) -> dict[str, Any]:
    """The edit a submitted form makes to `baseline` (the model without edits): only what differs.
    `pattern` is the id clients see, for the config file's checks."""
    first = {name: (values[0] if values else "") for name, values in form.items()}
    alias = first.get("alias", "").strip()
    capabilities = [name for name in form.get("capabilities", []) if name]
    unknown = [name for name in capabilities if name not in EDITABLE_CAPABILITIES]
    if unknown:
        raise EditError(f"capabilities: unknown {unknown[0]!r}")
    try:
        options = json.loads(first.get("options", "").strip() or "{}")
    except json.JSONDecodeError as exc:
        raise EditError(f"options: not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    if not isinstance(options, dict):
        raise EditError('options: must be a JSON object, e.g. {"temperature": 0.3}')
    table: dict[str, Any] = {"hidden": first.get("hidden", "") in ("on", "true", "1"), "options": options}
    table["capabilities"] = capabilities
    if alias:
        table["alias"] = alias
    length = first.get("context_length", "").strip()
    if length:
        table["context_length"] = length
    try:
        rule = read_model(pattern, table, _WHERE)
    except ConfigError as exc:
        raise EditError(str(exc).removeprefix(f"{_WHERE}: ").strip()) from None
    edit: dict[str, Any] = {}
    if (rule.alias or "") != (baseline.alias or ""):
        edit["alias"] = rule.alias or ""
    if rule.hidden != baseline.hidden:
        edit["hidden"] = bool(rule.hidden)
    wanted = set(rule.capabilities or ())
    if wanted != set(baseline.capabilities) - {"completion"}:
        edit["capabilities"] = [name for name in ALL_CAPABILITIES if name in wanted]
    if rule.context_length is not None and rule.context_length != baseline.context_length:
        edit["context_length"] = rule.context_length
    if dict(rule.options) != dict(baseline.options):
        edit["options"] = dict(rule.options)
    return edit


async def load(connection: AsyncConnection) -> dict[str, dict[str, Any]]:
    table = tables.model_edits
    rows = await connection.execute(sa.select(table.c.model, table.c.edits))
    loaded = {}
    for model, text in rows:
        try:
            edit = json.loads(text)
        except json.JSONDecodeError:
            continue  # a row damaged by hand is ignored, not fatal
        if isinstance(edit, dict):
            loaded[model] = edit
    return loaded


async def save(connection: AsyncConnection, model: str, edit: Mapping[str, Any]) -> None:
    """Store `edit` for `model` (an `edit_key`), or delete its row when it is empty; in one
    transaction with the topic's bump."""
    table = tables.model_edits
    if not edit:
        await connection.execute(table.delete().where(table.c.model == model))
    else:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        values = {"model": model, "edits": json.dumps(dict(edit), sort_keys=True), "updated_at": datetime.now(UTC)}
        statement = dialect.insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.model], set_={"edits": values["edits"], "updated_at": values["updated_at"]}
        )
        await connection.execute(statement)
    await bump(connection, TOPIC)
