"""The usage ledger: one row per answered request in SQLite or PostgreSQL, written off the request path.

`database` picks and opens the database and runs the migrations (`migrations/`), `tables` and
`store` hold the schema and every statement, `rows` turns a `RequestRecord` into a row, and
`writer.Ledger` is the request-log observer with its queue, which hands batches to the writer
process (`child`, fed in `frames`).

`Ledger` is imported on first use: the writer process imports this package too, and needs
neither the queue nor the price table (a third of its start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .writer import Ledger

__all__ = ["Ledger"]


def __getattr__(name: str) -> Any:
    if name == "Ledger":
        from .writer import Ledger

        return Ledger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
