"""Alembic's entry point for the ledger's migrations, run through `database.migrate` only.

It is handed an open connection (an async engine's, via `run_sync`): there is no alembic.ini and no
URL here, so a password never passes through Alembic's configuration or logging.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the ledger's migrations run through oai2ollama.ledger.database.migrate")
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
