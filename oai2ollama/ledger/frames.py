"""The records' form on the way to the ledger's writer process (`child`): plain values, pickled.

A frame is a 4-byte big-endian length and a pickled list of `wire_record` tuples. Pickling the
records as dataclasses costs ten times as much (~6 µs a record), on the serving thread.
"""

from __future__ import annotations

import dataclasses
import operator
import pickle
import struct
from typing import Any

from ..records import RequestRecord, Usage

HEADER = struct.Struct("!I")
_FIELDS = tuple(field.name for field in dataclasses.fields(RequestRecord))  # the order __init__ takes them in
_USAGE_AT = _FIELDS.index("usage")
_RECORD_FIELDS = _FIELDS[:_USAGE_AT] + _FIELDS[_USAGE_AT + 1 :]
_USAGE_FIELDS = tuple(field.name for field in dataclasses.fields(Usage))
# One C call each, where a loop of getattr costs ~2 µs a record on the serving thread.
_record_values = operator.attrgetter(*_RECORD_FIELDS)
_usage_values = operator.attrgetter(*_USAGE_FIELDS)

WireRecord = tuple[tuple[Any, ...], tuple[Any, ...] | None, float | None]


def wire_record(record: RequestRecord, cost: float | None) -> WireRecord:
    usage = record.usage
    return _record_values(record), None if usage is None else _usage_values(usage), cost


def record_of(wire: WireRecord) -> tuple[RequestRecord, float | None]:
    fields, usage, cost = wire
    record = RequestRecord(*fields[:_USAGE_AT], None if usage is None else Usage(*usage), *fields[_USAGE_AT:])
    return record, cost


def frame(records: list[WireRecord]) -> bytes:
    data = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data
