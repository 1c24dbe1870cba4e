"""The ledger's tables as the newest migration leaves them (`migrations/versions/` creates them).

Migrations never import this module: each one spells out the schema of its own revision, so an old
database upgrades step by step whatever these definitions later become.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# One row per answered request. Never what was said: no prompt, no answer, no key (only its name).
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("key_name", sa.String(200)),
    sa.Column("client", sa.String(200), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("dialect", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("upstream", sa.String(200)),
    sa.Column("upstream_model", sa.String(200)),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("error_kind", sa.String(64)),
    sa.Column("input_tokens", sa.Integer()),
    sa.Column("output_tokens", sa.Integer()),
    sa.Column("reasoning_tokens", sa.Integer()),
    sa.Column("cached_tokens", sa.Integer()),
    sa.Column("tokens_estimated", sa.Boolean(), nullable=False),
    sa.Column("first_byte", sa.Float()),  # seconds
    sa.Column("duration", sa.Float(), nullable=False),  # seconds
    sa.Column("streamed", sa.Boolean(), nullable=False),
    sa.Column("cost_usd", sa.Float()),  # None: the model has no known price
)

# The admin page's request log, filtered by model, key or errors (migration 0004).
REQUEST_ERRORS = sa.text("status = 0 OR status >= 400 OR error_kind IS NOT NULL")
sa.Index("ix_requests_model_at", requests.c.model, requests.c.at)
sa.Index("ix_requests_key_name_at", requests.c.key_name, requests.c.at)
sa.Index("ix_requests_errors_at", requests.c.at, sqlite_where=REQUEST_ERRORS, postgresql_where=REQUEST_ERRORS)

COUNT = sa.BigInteger()

# Totals per UTC day, upstream, model (the upstream's id) and key; '' where a request had none.
# Kept a year, long after the requests they sum are pruned.
usage_daily = sa.Table(
    "usage_daily",
    metadata,
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("upstream", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("key_name", sa.String(200), primary_key=True),
    sa.Column("requests", COUNT, nullable=False),
    sa.Column("errors", COUNT, nullable=False),
    sa.Column("input_tokens", COUNT, nullable=False),
    sa.Column("output_tokens", COUNT, nullable=False),
    sa.Column("reasoning_tokens", COUNT, nullable=False),
    sa.Column("cached_tokens", COUNT, nullable=False),
    sa.Column("cost_usd", sa.Float(), nullable=False),
    sa.Column("priced", COUNT, nullable=False),
    sa.Column("duration_sum", sa.Float(), nullable=False),
    sa.Column("duration_count", COUNT, nullable=False),
    sa.Column("first_token_sum", sa.Float(), nullable=False),
    sa.Column("first_token_count", COUNT, nullable=False),
)
DAILY_KEY = ("day", "upstream", "model", "key_name")
DAILY_SUMS = tuple(column.name for column in usage_daily.columns if column.name not in DAILY_KEY)

WHEN = sa.DateTime(timezone=True)

# State shared by every process and replica (see migration 0003).
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),  # SHA-256 hex of the key
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("models", sa.Text()),  # JSON list of globs; NULL: every model
    sa.Column("created_at", WHEN, nullable=False),
    sa.Column("expires_at", WHEN),
    sa.Column("revoked_at", WHEN),
    sa.Column("tokens_per_day", sa.BigInteger()),
    sa.Column("requests_per_minute", sa.Integer()),
    sa.Column("last_used_at", WHEN),
)
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("digest", sa.String(200), nullable=False),
    sa.Column("created_at", WHEN, nullable=False),
)
model_edits = sa.Table(
    "model_edits",
    metadata,
    sa.Column("model", sa.String(300), primary_key=True),
    sa.Column("edits", sa.Text(), nullable=False),
    sa.Column("updated_at", WHEN, nullable=False),
)
models_in_use = sa.Table(
    "models_in_use",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("card", sa.Text(), nullable=False),
    sa.Column("used_at", sa.Float(), nullable=False),
)
# A counter per kind of shared state, raised with every change: processes poll this small table.
state_versions = sa.Table(
    "state_versions",
    metadata,
    sa.Column("topic", sa.String(50), primary_key=True),
    sa.Column("version", sa.BigInteger(), nullable=False),
)
