"""State every process and replica shares: API keys made at runtime, the admin page's token and
its edits to models, the models in use, and a version per kind of state so that processes poll
one small table to learn what changed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(200), nullable=False),
        # The key itself is never stored: its SHA-256 (hex), and the first characters to tell keys apart.
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("models", sa.Text()),  # JSON list of globs; NULL: every model
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN),
        sa.Column("revoked_at", WHEN),
        sa.Column("tokens_per_day", sa.BigInteger()),
        sa.Column("requests_per_minute", sa.Integer()),
        sa.Column("last_used_at", WHEN),
        sa.PrimaryKeyConstraint("name", name="pk_api_keys"),
        sa.UniqueConstraint("digest", name="uq_api_keys_digest"),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(100), nullable=False),  # e.g. 'admin_token'
        sa.Column("digest", sa.String(200), nullable=False),  # a hash, never the secret
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_secrets"),
    )
    op.create_table(
        "model_edits",
        sa.Column("model", sa.String(300), nullable=False),  # the model as its upstream lists it: 'upstream/id'
        sa.Column("edits", sa.Text(), nullable=False),  # JSON object of the fields edited
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_model_edits"),
    )
    op.create_table(
        "models_in_use",
        sa.Column("name", sa.String(300), nullable=False),  # lower-cased, as clients named it
        sa.Column("card", sa.Text(), nullable=False),  # JSON
        sa.Column("used_at", sa.Float(), nullable=False),  # seconds since the epoch
        sa.PrimaryKeyConstraint("name", name="pk_models_in_use"),
    )
    op.create_table(
        "state_versions",
        sa.Column("topic", sa.String(50), nullable=False),  # 'keys', 'model_edits', 'models_in_use'
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", name="pk_state_versions"),
    )


def downgrade() -> None:
    for table in ("state_versions", "models_in_use", "model_edits", "secrets", "api_keys"):
        op.drop_table(table)
