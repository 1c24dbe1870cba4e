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
