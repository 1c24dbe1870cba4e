"""Each request's estimated cost, and daily totals per model, key and upstream.

The daily totals are built from the rows already there, so an upgraded ledger reports its past.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COUNT = sa.BigInteger()


def upgrade() -> None:
    op.add_column("requests", sa.Column("cost_usd", sa.Float()))
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        # '' where a request had none (no upstream took it, no key): key columns cannot be NULL.
        sa.Column("upstream", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("key_name", sa.String(200), nullable=False),
        sa.Column("requests", COUNT, nullable=False),
        sa.Column("errors", COUNT, nullable=False),
        sa.Column("input_tokens", COUNT, nullable=False),
        sa.Column("output_tokens", COUNT, nullable=False),
        sa.Column("reasoning_tokens", COUNT, nullable=False),
        sa.Column("cached_tokens", COUNT, nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("priced", COUNT, nullable=False),  # requests with a cost
        sa.Column("duration_sum", sa.Float(), nullable=False),
        sa.Column("duration_count", COUNT, nullable=False),
        sa.Column("first_token_sum", sa.Float(), nullable=False),  # streamed requests only
        sa.Column("first_token_count", COUNT, nullable=False),
        sa.PrimaryKeyConstraint("day", "upstream", "model", "key_name", name="pk_usage_daily"),
    )
    day = "date(at)" if op.get_bind().dialect.name == "sqlite" else "CAST(at AT TIME ZONE 'UTC' AS DATE)"
    op.execute(
        f"""
        INSERT INTO usage_daily
        SELECT {day}, COALESCE(upstream, ''), COALESCE(upstream_model, model, ''), COALESCE(key_name, ''),
            count(*),
            sum(CASE WHEN status = 0 OR status >= 400 OR error_kind IS NOT NULL THEN 1 ELSE 0 END),
            COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0),
            COALESCE(sum(reasoning_tokens), 0), COALESCE(sum(cached_tokens), 0),
            0, 0,
            sum(duration), count(*),
            COALESCE(sum(CASE WHEN streamed THEN first_byte END), 0),
            count(CASE WHEN streamed THEN first_byte END)
        FROM requests
        GROUP BY 1, 2, 3, 4
        """
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_column("requests", "cost_usd")
