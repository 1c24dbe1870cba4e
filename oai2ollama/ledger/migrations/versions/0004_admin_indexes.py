"""Indexes for the admin page's request log: a page of one model's or one key's requests, or of the
errors, newest first, is read down an index however many rows the ledger holds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Literal, not bound: a query uses a partial index only where its own condition is this very text.
ERRORS = sa.text("status = 0 OR status >= 400 OR error_kind IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_requests_model_at", "requests", ["model", "at"])
    op.create_index("ix_requests_key_name_at", "requests", ["key_name", "at"])
    # Errors are few: a partial index holds only them.
    op.create_index("ix_requests_errors_at", "requests", ["at"], sqlite_where=ERRORS, postgresql_where=ERRORS)


def downgrade() -> None:
    for name in ("ix_requests_errors_at", "ix_requests_key_name_at", "ix_requests_model_at"):
        op.drop_index(name, table_name="requests")
