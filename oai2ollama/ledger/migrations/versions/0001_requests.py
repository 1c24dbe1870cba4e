"""The ledger: one row per answered request.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite numbers rows itself only in an INTEGER PRIMARY KEY; PostgreSQL needs 64 bits for a busy ledger.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_name", sa.String(200)),
        sa.Column("client", sa.String(200), nullable=False, server_default=""),
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
        sa.Column("tokens_estimated", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("first_byte", sa.Float()),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("streamed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_requests_at", "requests", ["at"])


def downgrade() -> None:
    op.drop_index("ix_requests_at", table_name="requests")
    op.drop_table("requests")
