"""Answers as real upstreams send them, through every translated route: content as a list of
parts (Mistral's Magistral), choices out of order, a stream cut off without a word, and a 200
whose body is no chat answer. The pieces are tested in test_answer.py and test_streams.py; here
each dialect (native, Anthropic, Responses) shows what its clients get."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from .fakes import chunk, openai_error, sse, usage_chunk

pytestmark = pytest.mark.anyio

MODEL = "gpt-test"
ASK = [{"role": "user", "content": "Hi"}]
CUT = "upstream upstream.test ended the answer early: its stream stopped without a finish_reason or [DONE]"


def magistral(*parts: dict[str, Any] | str, finish: str | None = None) -> dict[str, Any]:
    """A Magistral chunk: `delta.content` a list of parts (or a plain string, as it sends later text)."""
    content: Any = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else list(parts)
    return {
        "id": "c3c77283055240cbbaf6f01d384cfccb",
        "object": "chat.completion.chunk",
        "created": 1762355135,
        "model": "magistral-medium-2509",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


def thinking(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


MAGISTRAL = [
    {**magistral(), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    magistral(thinking("A greeting")),
    magistral(thinking(", so I greet back.")),
    magistral(text("Hello")),
    magistral(" there!"),
    magistral(finish="stop"),
    usage_chunk(),
]
# n > 1 style: every chunk carries two choices, the other one first.
TWO_CHOICES = [
    {"choices": [{"index": 1, "delta": {"content": "Wrong"}}, {"index": 0, "delta": {"content": "Right"}}]},
    {"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [{"index": 0, "delta": {"content": " one"}, "finish_reason": "length"}]},
    usage_chunk(),
]
CUT_OFF = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Half an ans"}), done=False)
NOT_ANSWERS = [
    pytest.param(b'{"object":"list","data":[]}', "application/json", id="model-list"),
    pytest.param(b'{"foo":1}', "application/json", id="some-object"),
    pytest.param(b"<html><body>Welcome to nginx!</body></html>", "text/html", id="html-page"),
    pytest.param(b"<html><body>Welcome to nginx!</body></html>", "application/json", id="html-labelled-json"),
]


def upstream_sends(fake, body: bytes, content_type: str = "text/event-stream") -> None:  # type: ignore[no-untyped-def]
    fake.on("POST", "/responses", openai_error(404, "no route"))  # Responses requests are then translated
    fake.on(
        "POST",
        "/chat/completions",
        lambda request: httpx.Response(200, content=body, headers={"content-type": content_type}),
    )


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.content.split(b"\n")[:-1]]


def sse_frames(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    frames = []
    for frame in response.text.split("\n\n"):
        if frame.strip():
            fields = dict(line.split(": ", 1) for line in frame.split("\n"))
            frames.append((fields["event"], json.loads(fields["data"])))
    return frames


# ---------------------------------------------------------------- content as a list of parts


async def test_magistral_native(fake, ollama_client: ollama.AsyncClient) -> None:
    upstream_sends(fake, sse(*MAGISTRAL))
    parts = [part async for part in await ollama_client.chat(model=MODEL, messages=ASK, stream=True)]
    assert "".join(p.message.thinking or "" for p in parts) == "A greeting, so I greet back."
    assert "".join(p.message.content or "" for p in parts) == "Hello there!"
    assert parts[-1].done and parts[-1].done_reason == "stop"
    whole = await ollama_client.chat(model=MODEL, messages=ASK, stream=False)
    assert (whole.message.thinking, whole.message.content) == ("A greeting, so I greet back.", "Hello there!")


async def test_magistral_non_streamed_document_native(fake, client: httpx.AsyncClient) -> None:
    document = {
        "id": "x",
        "object": "chat.completion",
        "model": "magistral-medium-2509",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": [thinking("Hmm."), text("Hi!")]},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }
    upstream_sends(fake, json.dumps(document).encode(), "application/json")  # it ignored stream: true
    answer = (await client.post("/api/chat", json={"model": MODEL, "messages": ASK, "stream": False})).json()
    assert answer["message"] == {"role": "assistant", "content": "Hi!", "thinking": "Hmm."}


async def test_magistral_anthropic(fake, anthropic_client: anthropic.AsyncAnthropic) -> None:
    upstream_sends(fake, sse(*MAGISTRAL))
    message = await anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=ASK)
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in message.content] == [
        ("thinking", "A greeting, so I greet back."),
        ("text", "Hello there!"),
    ]


async def test_magistral_responses(fake, openai_client: openai.AsyncOpenAI) -> None:
    upstream_sends(fake, sse(*MAGISTRAL))
    response = await openai_client.responses.create(model=MODEL, input="Hi")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text == "A greeting, so I greet back."  # type: ignore[union-attr]
    assert response.output_text == "Hello there!"


# ---------------------------------------------------------------- the choice with index 0


async def test_the_choice_with_index_0_native(fake, client: httpx.AsyncClient) -> None:
    upstream_sends(fake, sse(*TWO_CHOICES))
    lines = ndjson(await client.post("/api/chat", json={"model": MODEL, "messages": ASK}))
    assert "".join(line["message"]["content"] for line in lines) == "Right one"
    assert lines[-1]["done_reason"] == "length"  # index 1's "stop" is not ours


async def test_the_choice_with_index_0_anthropic(fake, anthropic_client: anthropic.AsyncAnthropic) -> None:
    upstream_sends(fake, sse(*TWO_CHOICES))
    message = await anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=ASK)
    assert message.content[0].text == "Right one"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"


async def test_the_choice_with_index_0_responses(fake, openai_client: openai.AsyncOpenAI) -> None:
    upstream_sends(fake, sse(*TWO_CHOICES))
    response = await openai_client.responses.create(model=MODEL, input="Hi")
    assert response.output_text == "Right one" and response.status == "incomplete"


# ---------------------------------------------------------------- a stream cut off cleanly


async def test_a_cut_stream_native(fake, client: httpx.AsyncClient, ollama_client: ollama.AsyncClient) -> None:
    upstream_sends(fake, CUT_OFF)
    response = await client.post("/api/chat", json={"model": MODEL, "messages": ASK})
    assert response.status_code == 200
    lines = ndjson(response)
    assert [line.get("message", {}).get("content") for line in lines[:-1]] == ["Half an ans"]
    assert lines[-1] == {"error": CUT}  # never done: true with done_reason "stop"
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_client.generate(model=MODEL, prompt="Hi", stream=False)
    assert (caught.value.status_code, caught.value.error) == (502, CUT)


async def test_a_cut_stream_anthropic(fake, client: httpx.AsyncClient, anthropic_client: anthropic.AsyncAnthropic):
    upstream_sends(fake, CUT_OFF)
    body = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": ASK}
    frames = sse_frames(await client.post("/v1/messages", json=body))
    assert "message_stop" not in [event for event, _ in frames]
    assert frames[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": CUT}})
    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=ASK)
    assert caught.value.status_code == 502 and CUT in str(caught.value)


async def test_a_cut_stream_responses(fake, client: httpx.AsyncClient) -> None:
    upstream_sends(fake, CUT_OFF)
    frames = sse_frames(await client.post("/v1/responses", json={"model": MODEL, "input": "Hi", "stream": True}))
    assert [event for event, _ in frames][-2:] == ["response.output_text.delta", "response.failed"]
    assert frames[-1][1]["response"]["error"] == {"code": "server_error", "message": CUT}
    response = await client.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
    assert response.status_code == 502 and response.json()["error"]["message"] == CUT


async def test_done_alone_completes_the_answer(fake, client: httpx.AsyncClient) -> None:
    upstream_sends(fake, sse(chunk({"content": "All"}), chunk({"content": " here"})))
    lines = ndjson(await client.post("/api/chat", json={"model": MODEL, "messages": ASK}))
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"


# ---------------------------------------------------------------- a 200 that is no chat answer


@pytest.mark.parametrize(("body", "content_type"), NOT_ANSWERS)
async def test_not_an_answer_is_a_502_on_every_route(fake, client: httpx.AsyncClient, body: bytes, content_type: str):
    upstream_sends(fake, body, content_type)
    requests = [
        ("/api/chat", {"model": MODEL, "messages": ASK}),
        ("/api/generate", {"model": MODEL, "prompt": "Hi"}),
        ("/v1/messages", {"model": MODEL, "max_tokens": 8, "messages": ASK}),
        ("/v1/responses", {"model": MODEL, "input": "Hi"}),
    ]
    for path, request in requests:
        for stream in (True, False):
            response = await client.post(path, json={**request, "stream": stream})
            assert response.status_code == 502, (path, stream, response.text)
            said = response.json()["error"]
            message = said if isinstance(said, str) else said["message"]
            assert message.startswith("upstream upstream.test sent a body that is not a"), (path, message)
