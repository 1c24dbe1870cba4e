"""Each guard on its own: the Host check, the Origin check, the key ring and the body limit."""

from __future__ import annotations

import pytest

from oai2ollama.config_file import InboundKey
from oai2ollama.guards.body_limit import BodyLimit, BodyTooLarge
from oai2ollama.guards.hosts import HostCheck
from oai2ollama.guards.keys import KeyRing
from oai2ollama.guards.origins import OriginCheck, origin_pattern
from oai2ollama.guards.refusal import Refusal
from oai2ollama.model_rules import Globs

pytestmark = pytest.mark.anyio

NAMES = frozenset({"box", "box.local"})


@pytest.mark.parametrize(
    ("host", "refused"),
    [(b"localhost:11434", False), (b"box.local", False), (b"127.0.0.2", False), (b"evil.example:11434", True)],
)
def test_host_check(host: bytes, refused: bool) -> None:
    check = HostCheck(NAMES)
    assert (check(host) is not None) is refused
    assert (check(host) is not None) is refused  # the remembered decision is the same


def test_host_check_off_or_without_a_host() -> None:
    assert HostCheck(None)(b"evil.example") is None
    assert HostCheck(NAMES)(None) is None


def test_a_refused_host_is_named() -> None:
    refusal = HostCheck(NAMES)(b"Evil.Example:80")
    assert refusal == Refusal(403, refusal.message) and "'evil.example'" in refusal.message


@pytest.mark.parametrize(
    ("origin", "refused"),
    [
        (b"http://localhost:3000", False),
        (b"vscode-webview://abc", False),
        (b"https://chat.example.com", False),
        (b"https://evil.example", True),
    ],
)
def test_origin_check(origin: bytes, refused: bool) -> None:
    check = OriginCheck(origin_pattern(["https://*.example.com"]))
    refusal = check(origin)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.status == 403 and "--origins" in refusal.message


def test_key_ring_identifies_a_key_or_says_why_not() -> None:
    team = InboundKey("team-key", Globs(("gpt-*",)))
    ring = KeyRing([team, InboundKey("admin-key")])
    assert ring.identify({b"authorization": b"Bearer team-key"}) is team
    assert ring.identify({b"x-api-key": b"admin-key"}).models is None  # type: ignore[union-attr]
    missing, wrong = ring.identify({}), ring.identify({b"authorization": b"Bearer nope"})
    assert isinstance(missing, Refusal) and missing.status == 401 and "required" in missing.message
    assert isinstance(wrong, Refusal) and wrong.status == 401 and wrong.message == "invalid API key"


@pytest.mark.parametrize(
    ("length", "status"), [(None, None), (b"1024", None), (b"1025", 413), (b"12x", 400), (b"-1", 400)]
)
def test_declared_body_sizes(length: bytes | None, status: int | None) -> None:
    refusal = BodyLimit(1024).check(length)
    assert (refusal.status if refusal else None) == status


async def test_a_chunked_body_fails_as_it_crosses_the_limit() -> None:
    parts = iter([b"x" * 600, b"x" * 600])

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": next(parts), "more_body": True}

    limit = BodyLimit(1024)
    watched = limit.watch("POST", None, receive)  # type: ignore[arg-type]
    await watched()
    with pytest.raises(BodyTooLarge, match="the limit is 1 KiB"):
        await watched()
    assert limit.watch("POST", b"10", receive) is receive  # type: ignore[arg-type]
    assert limit.watch("GET", None, receive) is receive  # type: ignore[arg-type]
