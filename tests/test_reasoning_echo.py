"""Upstream reasoning where Copilot reads it: `reasoning_text` beside `reasoning_content`/`reasoning`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from oai2ollama.translate.reasoning_echo import ReasoningEcho

from .fakes import FakeUpstream, chunk, sse, sse_response, usage_chunk

pytestmark = pytest.mark.anyio


def delta_event(**delta: Any) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"


def deltas(stream: bytes) -> list[dict[str, Any]]:
    events = [line[6:] for line in stream.split(b"\n") if line.startswith(b"data: ") and line != b"data: [DONE]"]
    return [json.loads(event)["choices"][0]["delta"] for event in events]


REASONED = (
    delta_event(role="assistant", reasoning_content="Let me think")
    + delta_event(reasoning=" again")
    + delta_event(content="Hi", reasoning_text="kept as sent", reasoning_content="r")
    + b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("cut", [None, 1, 7, 13, 50])
def test_reasoning_gets_reasoning_text_however_the_reads_are_cut(cut: int | None) -> None:
    echo = ReasoningEcho()
    parts = [REASONED] if cut is None else [REASONED[i : i + cut] for i in range(0, len(REASONED), cut)]
    out = b"".join(echo.feed(part) for part in parts) + echo.close()
    assert [d.get("reasoning_text") for d in deltas(out)] == ["Let me think", " again", "kept as sent"]
    assert out.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    "stream",
    [
        delta_event(content="no reasoning here") + b"data: [DONE]\n\n",
        b': keep-alive\r\n\r\ndata: {"choices":[{"delta":{"content":"crlf"}}]}\r\n\r\n',
        b"data: not json\n\n",
        b'data: {"reasoning": 1}\n\n',  # mentions it, has no delta: as sent
        b"no trailing line break",
    ],
)
def test_streams_without_reasoning_pass_byte_for_byte(stream: bytes) -> None:
    echo = ReasoningEcho()
    assert b"".join(echo.feed(stream[i : i + 5]) for i in range(0, len(stream), 5)) + echo.close() == stream


def test_a_crlf_event_keeps_its_line_ends() -> None:
    echo = ReasoningEcho()
    out = echo.feed(b'data: {"choices":[{"delta":{"reasoning":"r"}}]}\r\n\r\n')
    assert out.endswith(b"\r\n\r\n") and b'"reasoning_text":"r"' in out


async def test_the_relay_adds_reasoning_text_and_keeps_plain_streams_as_sent(
    fake: FakeUpstream, client: httpx.AsyncClient
) -> None:
    plain = sse(chunk({"role": "assistant", "content": "Hello"}), chunk({}, "stop"), usage_chunk())
    fake.on("POST", "/chat/completions", lambda request: sse_response(plain))
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    assert (await client.post("/v1/chat/completions", json=request)).content == plain
    fake.on("POST", "/chat/completions", lambda request: sse_response(REASONED))
    answer = await client.post("/v1/chat/completions", json=request)
    assert [d.get("reasoning_text") for d in deltas(answer.content)] == ["Let me think", " again", "kept as sent"]


def test_a_long_answer_without_reasoning_up_front_is_no_longer_searched() -> None:
    from oai2ollama.translate.reasoning_echo import _WATCH

    plain = delta_event(content="x" * 100) * (2 * _WATCH // 100)
    late = delta_event(reasoning_content="late")
    echo = ReasoningEcho()
    assert echo.feed(plain) + echo.feed(late) + echo.close() == plain + late


def test_reasoning_up_front_is_echoed_to_the_end() -> None:
    from oai2ollama.translate.reasoning_echo import _WATCH

    echo = ReasoningEcho()
    first = echo.feed(delta_event(reasoning_content="r") + delta_event(content="x" * 100) * (2 * _WATCH // 100))
    later = echo.feed(delta_event(reasoning_content="more"))
    assert [d.get("reasoning_text") for d in deltas(first + later) if "reasoning_content" in d] == ["r", "more"]
