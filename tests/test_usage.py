"""Token usage: the upstream's own counts read into a `Usage`, estimates where it sent none, and the
relay's `UsageTap`, which must find the usage however the answer's bytes are cut into reads."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oai2ollama.records import Usage
from oai2ollama.translate.usage import UsageTap, request_tokens, text_chars, token_usage

from .fakes import completion, sse, text_stream, usage_chunk

USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 9,
    "prompt_tokens_details": {"cached_tokens": 16},
    "completion_tokens_details": {"reasoning_tokens": 4},
}
RESPONSES_EVENT = {
    "type": "response.completed",
    "response": {"id": "resp_1", "output": [{"type": "message", "content": [{"text": "{usage}"}]}], "usage": USAGE},
}
BODIES = {
    "chat stream": sse(*[{**c, "usage": None} for c in text_stream("Hi")[:-1]], {**usage_chunk(), "usage": USAGE}),
    "completion": json.dumps({**completion(), "usage": USAGE}, indent=2).encode(),
    "responses event": f"event: response.completed\ndata: {json.dumps(RESPONSES_EVENT)}\n\n".encode(),
}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (USAGE, Usage(input_tokens=20, output_tokens=9, reasoning_tokens=4, cached_tokens=16)),
        (
            {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}},
            Usage(input_tokens=5, output_tokens=2, cached_tokens=1),
        ),
        ({"prompt_tokens": 5, "completion_tokens": 2, "prompt_cache_hit_tokens": 3}, Usage(5, 2, cached_tokens=3)),
        ({"prompt_tokens": 5}, Usage(input_tokens=5, output_tokens=3, estimated=True)),
        (None, Usage(input_tokens=99, output_tokens=3, estimated=True)),
        ("garbage", Usage(input_tokens=99, output_tokens=3, estimated=True)),
    ],
)
def test_token_usage(usage: Any, expected: Usage) -> None:
    assert token_usage(usage, input_estimate=lambda: 99, output_chars=12) == expected


def test_nothing_to_estimate_from_stays_unknown() -> None:
    assert token_usage(None) == Usage()


def test_request_estimate_counts_text_not_pictures_or_framing() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}}
    body = {
        "model": "a-long-model-name-that-is-not-counted",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 38}, image]}],
        "tools": [{"type": "function", "function": {"name": "ab"}}],
    }
    assert request_tokens(body) == 10


def test_text_chars() -> None:
    assert text_chars(sse(*text_stream("Hello", " there!", reasoning=["Hmm"]))) == 15


@pytest.mark.parametrize("name", BODIES)
@given(cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12))
def test_the_tap_finds_usage_however_the_reads_fall(name: str, cuts: list[int]) -> None:
    body = BODIES[name]
    points = sorted({cut % len(body) for cut in cuts} - {0})
    reads = [body[start:end] for start, end in zip([0, *points], [*points, len(body)], strict=True)]
    tap = UsageTap()
    assert b"".join(tap.feed(read) for read in reads) == body
    assert tap.usage == USAGE


def test_usage_null_is_no_usage() -> None:
    tap = UsageTap(count_text=True)
    chunks = [{**c, "usage": None} for c in text_stream("Hello")[:-1]]
    tap.feed(sse(*chunks))
    assert (tap.usage, tap.output_estimate) == (None, len(chunks))  # a stream is measured by its deltas


def test_the_usage_at_the_end_of_a_long_stream_is_found_from_the_last_reads_only() -> None:
    body = sse(*text_stream(*(f"word{n} " for n in range(3000))))
    assert len(body) > 20 * 16 * 1024
    tap = UsageTap(count_text=True)
    for start in range(0, len(body), 300):
        tap.feed(body[start : start + 300])
    assert tap.usage == text_stream("x")[-1]["usage"]
    assert 2900 < (tap.output_estimate or 0) < 3100, "deltas, counted in the last reads, scaled to the whole"


def test_a_tap_is_freed_by_reference_counting_alone() -> None:
    """A tap holds the last ~16 KiB of its answer. Held in a reference cycle, each would wait for the
    garbage collector, which the server runs seldom (`cli.YOUNG_GENERATION_THRESHOLD`): 32 streams of
    2,000 chunks grew it to ~900 MiB when a tap kept its own bound method."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            tap = UsageTap(count_text=True)
            tap.feed(sse(*text_stream("some words")))
            assert tap.usage is not None
        del tap
        assert gc.collect() == 0, "a tap was left in a reference cycle"
    finally:
        gc.enable()
