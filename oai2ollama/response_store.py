"""Responses kept for `previous_response_id` and `GET /v1/responses/{id}`, on upstreams whose
Responses API oai2ollama translates (an upstream that has one keeps its own).

Each record holds one response and the input items of its request, not the whole conversation:
a conversation is rebuilt by following `previous_response_id` links, so a long one costs memory
in proportion to its length, not to its square. `ResponseStore` is the interface (async, so a
database can stand behind it); `MemoryResponseStore` keeps records in this process, least recently
used first out, bounded by count and by total size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from . import wire

Record = dict[str, Any]  # {"response": the response object, "input": its request's input items}

MAX_RESPONSES = 2000
MAX_BYTES = 128 * 1024 * 1024
# A chain longer than this is taken for a loop in a store gone wrong, not followed forever.
MAX_CHAIN = 10_000


class ResponseStore(Protocol):
    async def get(self, response_id: str) -> Record | None: ...

    async def put(self, response_id: str, record: Record) -> None: ...


class MemoryResponseStore:
    def __init__(self, max_responses: int = MAX_RESPONSES, max_bytes: int = MAX_BYTES):
        self.max_responses, self.max_bytes = max_responses, max_bytes
        self._records: OrderedDict[str, tuple[Record, int]] = OrderedDict()
        self.size = 0

    def __len__(self) -> int:
        return len(self._records)

    async def get(self, response_id: str) -> Record | None:
        found = self._records.get(response_id)
        if found is None:
            return None
        self._records.move_to_end(response_id)
        return found[0]

    async def put(self, response_id: str, record: Record) -> None:
        size = len(wire.dumps(record))
        old = self._records.pop(response_id, None)
        if old is not None:
            self.size -= old[1]
        if size > self.max_bytes:
            return  # kept, it would push out everything else and still not fit
        self._records[response_id] = (record, size)
        self.size += size
        while len(self._records) > self.max_responses or self.size > self.max_bytes:
            _, (_, evicted) = self._records.popitem(last=False)
            self.size -= evicted


async def conversation(store: ResponseStore, response_id: str) -> list[dict[str, Any]] | None:
    """Every item of the conversation up to and including the response `response_id`: each
    request's input followed by its output, oldest first. None when that response, or one it
    continues, is not (or no longer) stored."""
    turns: list[Record] = []
    current: str | None = response_id
    while current is not None and len(turns) < MAX_CHAIN:
        record = await store.get(current)
        if record is None:
            return None
        turns.append(record)
        current = record["response"].get("previous_response_id")
    items: list[dict[str, Any]] = []
    for record in reversed(turns):
        items += record["input"]
        items += record["response"]["output"]
    return items
