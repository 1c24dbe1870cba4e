"""The kept responses: least recently used out, bounded by count and by size; conversations
rebuilt by following `previous_response_id`."""

from __future__ import annotations

from typing import Any

import pytest

from oai2ollama import wire
from oai2ollama.response_store import MemoryResponseStore, conversation

pytestmark = pytest.mark.anyio


def record(response_id: str, previous: str | None = None, text: str = "x") -> dict[str, Any]:
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]
    response = {"id": response_id, "previous_response_id": previous, "output": output}
    return {"response": response, "input": [{"role": "user", "content": f"to {response_id}"}]}


async def test_least_recently_used_goes_first() -> None:
    store = MemoryResponseStore(max_responses=2)
    await store.put("a", record("a"))
    await store.put("b", record("b"))
    assert await store.get("a") is not None  # now b is the least recently used
    await store.put("c", record("c"))
    assert [await store.get(key) is not None for key in "abc"] == [True, False, True]
    assert len(store) == 2


async def test_bounded_by_size() -> None:
    one = len(wire.dumps(record("a")))
    store = MemoryResponseStore(max_bytes=2 * one + one // 2)
    for key in "abc":
        await store.put(key, record(key))
    assert (len(store), store.size) == (2, 2 * one)
    assert await store.get("a") is None
    await store.put("big", record("big", text="y" * 4 * one))  # larger than the whole store: not kept
    assert await store.get("big") is None and len(store) == 2


async def test_replacing_a_record_counts_its_size_once() -> None:
    store = MemoryResponseStore()
    await store.put("a", record("a"))
    await store.put("a", record("a", text="longer"))
    assert store.size == len(wire.dumps(record("a", text="longer")))


async def test_conversation_follows_the_links() -> None:
    store = MemoryResponseStore()
    await store.put("a", record("a", text="one"))
    await store.put("b", record("b", "a", text="two"))
    items = await conversation(store, "b")
    assert items == [
        {"role": "user", "content": "to a"},
        record("a", text="one")["response"]["output"][0],
        {"role": "user", "content": "to b"},
        record("b", "a", text="two")["response"]["output"][0],
    ]
    assert await conversation(store, "nope") is None


async def test_a_conversation_missing_its_start_is_not_found() -> None:
    store = MemoryResponseStore(max_responses=1)
    await store.put("a", record("a"))
    await store.put("b", record("b", "a"))
    assert await conversation(store, "b") is None
