"""/api/generate's `context`: the conversation, carried by the client between calls.

The pure encoding (round trips, the size cap, what is refused), then the official `ollama`
client keeping a conversation through `context` against the fake upstream."""

from __future__ import annotations

import zlib
from typing import Any

import httpx
import ollama
import pytest

from oai2ollama import wire
from oai2ollama.errors import BadRequest
from oai2ollama.translate.generate_context import (
    CONTEXT_LIMIT,
    MAGIC,
    Conversation,
    conversation,
    decode,
    encode,
)

from .fakes import completions_stream, sse, sse_response, text_stream

pytestmark = pytest.mark.anyio

MODEL = "gpt-test"


def ours(document: Any, *, raw: bytes | None = None) -> list[int]:
    """A context holding `document` (or exactly `raw` after the magic), as a crafted client would send it."""
    data = raw if raw is not None else zlib.compress(wire.dumps(document))
    return list(MAGIC + data)


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "kept",
    [
        pytest.param(Conversation(), id="nothing-yet"),
        pytest.param(Conversation("Be brief.", (("Hi", "Hello!"),)), id="system-and-a-turn"),
        pytest.param(Conversation("", (("Hi", "Hello!"), ("And you?", "Fine."))), id="turns"),
        pytest.param(Conversation("", (("ünïcödé ✓ \u2028 line", '答え\n"quoted"'),)), id="any-text"),
        pytest.param(Conversation("", (("", ""),)), id="empty-texts"),
    ],
)
def test_round_trip(kept: Conversation) -> None:
    context = encode(kept)
    assert all(type(value) is int and 0 <= value <= 255 for value in context)
    assert decode(context) == kept


def test_context_after_a_turn() -> None:
    first = Conversation("Be brief.").context_after("Hi", "Hello!")
    second = decode(first).context_after("And you?", "Fine.")
    assert decode(second) == Conversation("Be brief.", (("Hi", "Hello!"), ("And you?", "Fine.")))


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        pytest.param({}, Conversation(), id="none"),
        pytest.param({"context": []}, Conversation(), id="empty-list"),
        pytest.param({"context": None, "system": "S"}, Conversation("S"), id="system-only"),
        pytest.param(
            {"context": encode(Conversation("Old", (("a", "b"),))), "system": "New"},
            Conversation("New", (("a", "b"),)),
            id="a-new-system-wins",
        ),
        pytest.param(
            {"context": encode(Conversation("Old", (("a", "b"),))), "system": ""},
            Conversation("Old", (("a", "b"),)),
            id="the-kept-system-otherwise",
        ),
    ],
)
def test_conversation_of_a_request(req: dict[str, Any], expected: Conversation) -> None:
    assert conversation(req) == expected


def test_messages() -> None:
    assert Conversation("S", (("a", "b"), ("c", "d"))).messages() == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    assert Conversation("", (("a", "b"),)).messages()[0] == {"role": "user", "content": "a"}


def _kept_size(context: list[int]) -> int:
    return len(wire.dumps({"system": (kept := decode(context)).system, "turns": [list(t) for t in kept.turns]}))


@pytest.mark.parametrize(
    ("turns", "system", "kept_turns", "kept_system"),
    [
        pytest.param([("q" * 1000, "a" * 1000)] * 30, "S", 30, "S", id="under-the-cap-all-kept"),
        pytest.param([(f"q{n}" + "x" * 4000, "a" * 4000) for n in range(20)], "S", 8, "S", id="oldest-dropped"),
        pytest.param([("q", "a"), ("big", "a" * (CONTEXT_LIMIT + 10))], "S", 0, "S", id="a-turn-over-the-cap"),
        pytest.param([("q", "a")], "s" * (CONTEXT_LIMIT + 10), 0, "", id="a-system-over-the-cap"),
    ],
)
def test_the_size_cap_drops_the_oldest_turns_first(
    turns: list[tuple[str, str]], system: str, kept_turns: int, kept_system: str
) -> None:
    context = encode(Conversation(system, tuple(turns)))
    kept = decode(context)
    assert _kept_size(context) <= CONTEXT_LIMIT
    assert kept.turns == tuple(turns[len(turns) - kept_turns :])
    assert kept.system == kept_system


NOT_OURS = "invalid context: it was not returned by this server's /api/generate"
DAMAGED = "invalid context: it is damaged"
NOT_INTS = "context must be a list of integers, as an earlier /api/generate returned it"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        pytest.param("abc", NOT_INTS, id="a-string"),
        pytest.param({"turns": []}, NOT_INTS, id="an-object"),
        pytest.param([1, "2"], NOT_INTS, id="not-all-ints"),
        pytest.param([1.0, 2.0], NOT_INTS, id="floats"),
        pytest.param([True, False], NOT_INTS, id="booleans"),
        pytest.param([128006, 9125, 128007, 271], NOT_OURS, id="token-ids-from-a-real-ollama"),
        pytest.param([1, 2, 3, 4, 5, 6], NOT_OURS, id="bytes-without-our-magic"),
        pytest.param(list(MAGIC), NOT_OURS, id="the-magic-alone"),
        pytest.param([-1, *MAGIC], NOT_OURS, id="negative"),
        pytest.param(ours(None, raw=b"not zlib at all"), DAMAGED, id="not-compressed"),
        pytest.param(ours({"system": "", "turns": []})[:-3], DAMAGED, id="cut-short"),
        pytest.param(ours(None, raw=zlib.compress(b"{nope")), DAMAGED, id="not-json"),
        pytest.param(ours({"turns": "x"}), DAMAGED, id="turns-not-a-list"),
        pytest.param(ours({"system": 1, "turns": []}), DAMAGED, id="system-not-a-string"),
        pytest.param(ours({"turns": [["a"]]}), DAMAGED, id="a-turn-of-one"),
        pytest.param(ours({"turns": [["a", 2]]}), DAMAGED, id="a-turn-not-text"),
        pytest.param(ours([1, 2]), DAMAGED, id="a-list"),
        pytest.param(
            ours(None, raw=zlib.compress(b" " * (CONTEXT_LIMIT * 50))),
            f"invalid context: it holds more than {CONTEXT_LIMIT} bytes of conversation",
            id="inflates-past-the-cap",
        ),
    ],
)
def test_malformed_contexts_are_refused_naming_context(context: Any, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode(context)
    assert caught.value.message.startswith(message)
    assert "context" in caught.value.message


# ---------------------------------------------------------------- through the official client


async def test_a_conversation_through_context(fake, ollama_client: ollama.AsyncClient) -> None:
    answers = [text_stream("Paris."), text_stream("About 2.1 million.")]
    fake.on("POST", "/chat/completions", lambda request: sse_response(sse(*answers.pop(0))))
    first = await ollama_client.generate(model=MODEL, prompt="Capital of France?", system="Be brief.")
    parts = [
        part
        async for part in await ollama_client.generate(
            model=MODEL, prompt="Its population?", context=first.context, stream=True
        )
    ]
    assert "".join(part.response for part in parts) == "About 2.1 million."
    assert fake.bodies("/chat/completions")[-1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"},
    ]
    # The second answer's context carries both turns on.
    assert decode(parts[-1].context) == Conversation(
        "Be brief.", (("Capital of France?", "Paris."), ("Its population?", "About 2.1 million."))
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"context": [128006, 9125]}, NOT_OURS, id="foreign-token-ids"),
        pytest.param({"context": "abc"}, NOT_INTS, id="not-a-list"),
        pytest.param({"context": [1, 2], "raw": True}, "context is not supported in raw mode", id="raw"),
        pytest.param({"context": [1, 2], "suffix": "}"}, "context is not supported with suffix", id="suffix"),
    ],
)
async def test_a_bad_context_is_a_400_naming_it(fake, client: httpx.AsyncClient, extra: dict[str, Any], message: str):
    fake.on("POST", "/chat/completions", text_stream("never"))
    fake.on("POST", "/completions", completions_stream("never"))
    response = await client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", **extra})
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert [r.url.path for r in fake.requests if r.method == "POST"] == []


async def test_raw_and_suffix_answers_carry_an_empty_context(fake, ollama_client: ollama.AsyncClient) -> None:
    fake.on("POST", "/completions", completions_stream("x"))
    assert (await ollama_client.generate(model=MODEL, prompt="a", raw=True)).context == []
    assert (await ollama_client.generate(model=MODEL, prompt="a", suffix="b")).context == []


async def test_the_context_keeps_the_answer_not_its_thinking(fake, client: httpx.AsyncClient) -> None:
    fake.on("POST", "/chat/completions", text_stream("Four.", reasoning=["2+2 is 4"]))
    for stream in (True, False):
        response = await client.post("/api/generate", json={"model": MODEL, "prompt": "2+2?", "stream": stream})
        final = response.json() if not stream else [line for line in response.iter_lines() if line][-1]
        context = (final if isinstance(final, dict) else wire.loads(final))["context"]
        assert decode(context) == Conversation("", (("2+2?", "Four."),))
