"""Secrets in what upstreams say: masked whole, and masked when a stream splits them between reads."""

from __future__ import annotations

import pytest

from oai2ollama.masking import Secrets

KEY = "sk-mask-secret-0123456789"
HEADER = "azure-api-key-abcdef"


def masked_in_pieces(secrets: Secrets, body: bytes, cuts: list[int]) -> tuple[list[bytes], bytes]:
    mask = secrets.stream()
    pieces = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    out = [mask.feed(piece) for piece in pieces]
    return out, b"".join(out) + mask.close()


BODY = f'data: {{"error": {{"message": "Incorrect API key provided: {KEY} (header {HEADER})"}}}}\n\n'.encode()


def test_a_secret_split_at_any_point_between_two_reads_is_masked() -> None:
    secrets = Secrets([KEY, HEADER])
    expected = BODY.replace(KEY.encode(), b"***").replace(HEADER.encode(), b"***")
    for cut in range(1, len(BODY)):
        out, whole = masked_in_pieces(secrets, BODY, [cut])
        assert whole == expected, cut
        assert all(KEY.encode() not in piece for piece in out)


def test_a_secret_spread_over_many_reads_is_masked() -> None:
    secrets = Secrets([KEY])
    _, whole = masked_in_pieces(secrets, BODY, list(range(1, len(BODY))))
    assert KEY.encode() not in whole and b"***" in whole


def test_events_pass_at_once_and_only_a_possible_beginning_is_held() -> None:
    secrets = Secrets([KEY])
    mask = secrets.stream()
    event = b'data: {"choices": [{"delta": {"content": "sk"}}]}\n\n'
    assert mask.feed(event) == event  # an event ends in a blank line: nothing to wait for
    assert mask.feed(b'data: {"content": "sk-ma') == b'data: {"content": "'
    assert mask.feed(b'ny"}\n\n') == b'sk-many"}\n\n'
    assert mask.feed(b"the end: sk-mask") == b"the end: "
    assert mask.close() == b"sk-mask"


def test_text_is_masked_and_short_or_public_values_are_not_secrets() -> None:
    secrets = Secrets.of_upstream(KEY, {"api-key": HEADER, "X-Title": "oai2ollama", "X-Debug": "1"})
    assert secrets.mask(f"{KEY} {HEADER} oai2ollama 1") == "*** *** oai2ollama 1"
    assert not Secrets.of_upstream("EMPTY", {})  # vLLM's placeholder key guards nothing
    assert secrets.including("client-token-0123").mask("client-token-0123") == "***"


def test_a_json_escaped_slash_is_masked_too() -> None:
    secrets = Secrets(["abc/def/ghi-secret"])
    assert secrets.mask_bytes(b'{"m": "abc\\/def\\/ghi-secret"}') == b'{"m": "***"}'


@pytest.mark.parametrize("secrets", [Secrets(), Secrets(["short"])])
def test_nothing_to_mask_is_falsy(secrets: Secrets) -> None:
    assert not secrets
