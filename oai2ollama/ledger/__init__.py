"""The usage ledger: one row per answered request in SQLite or PostgreSQL, written off the request path.

`database` picks and opens the database and runs the migrations (`migrations/`), `tables` and
`store` hold the schema and every statement, `rows` turns a `RequestRecord` into a row, and
`writer.Ledger` is the request-log observer with its queue and background writer.
"""

from .writer import Ledger

__all__ = ["Ledger"]
