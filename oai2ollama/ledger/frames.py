"""The records' form on the way to the ledger's writer process (`child`): plain values, pickled.

A frame is a 4-byte big-endian length and a pickled list of `wire_record` tuples. Pickling the
records as dataclasses costs ten times as much (~6 µs a record), on the serving thread.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from ..records import RequestRecord, Usage

HEADER = struct.Struct("!I")
RECORD_FIELDS = tuple(name for name in RequestRecord.__slots__ if name != "usage")  # type: ignore[attr-defined]
USAGE_FIELDS = tuple(Usage.__slots__)  # type: ignore[attr-defined]

WireRecord = tuple[tuple[Any, ...], tuple[Any, ...] | None, float | None]


def wire_record(record: RequestRecord, cost: float | None) -> WireRecord:
    usage = record.usage
    fields = tuple(getattr(record, name) for name in RECORD_FIELDS)
    return fields, None if usage is None else tuple(getattr(usage, name) for name in USAGE_FIELDS), cost


def record_of(wire: WireRecord) -> tuple[RequestRecord, float | None]:
    fields, usage, cost = wire
    record = RequestRecord(**dict(zip(RECORD_FIELDS, fields, strict=True)))
    if usage is not None:
        record.usage = Usage(**dict(zip(USAGE_FIELDS, usage, strict=True)))
    return record, cost


def frame(records: list[WireRecord]) -> bytes:
    data = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data
