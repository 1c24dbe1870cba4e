"""The secrets an upstream is sent, and their masking in whatever that upstream says.

Upstreams quote what they were sent: an error event that names the rejected key, a gateway that
echoes a header. Every byte of an upstream's answer passes one `Secrets` (owned by the upstream's
`Target`, plus the client's own credential where it was forwarded) before it can reach a client or
a log line: streamed bodies piece by piece through a `StreamMask`, error messages whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MASK = "***"
_MASK_BYTES = MASK.encode()
# Shorter values guard nothing worth the name, and masking them would garble answers: a header
# `X-Debug: 1` would take every "1" out of every stream.
MIN_SECRET = 8
# Configured headers that identify the caller to the public rather than authenticate it
# (OpenRouter's app attribution, content negotiation): not secrets.
PUBLIC_HEADERS = frozenset(
    {"http-referer", "referer", "x-title", "user-agent", "accept", "accept-language", "content-type"}
)


class Secrets:
    """The values to mask, longest first (so that a secret containing another is masked whole)."""

    __slots__ = ("_texts", "patterns")

    def __init__(self, values: Iterable[str] = ()):
        texts: set[str] = set()
        for value in values:
            value = value.strip()
            if len(value) >= MIN_SECRET:
                texts.add(value)
                if "/" in value:
                    texts.add(value.replace("/", "\\/"))  # as a JSON encoder may have escaped it
        self._texts = sorted(texts, key=len, reverse=True)
        self.patterns = [text.encode() for text in self._texts]

    @classmethod
    def of_upstream(cls, api_key: str | None, headers: Mapping[str, str]) -> Secrets:
        """The key and every configured header value that is not public by nature."""
        values = [value for name, value in headers.items() if name.lower() not in PUBLIC_HEADERS]
        return cls([api_key, *values] if api_key else values)

    def including(self, value: str) -> Secrets:
        """These secrets and one more (a client's credential forwarded for one request)."""
        return Secrets([*self._texts, value])

    def __bool__(self) -> bool:
        return bool(self._texts)

    def mask(self, text: str) -> str:
        for secret in self._texts:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        for secret in self.patterns:
            if secret in data:
                data = data.replace(secret, _MASK_BYTES)
        return data

    def stream(self) -> StreamMask:
        return StreamMask(self.patterns)


class StreamMask:
    """Masks a body that arrives in pieces, also where a secret is split between two pieces.

    A piece whose end could begin a secret keeps that end back until the next piece (or `close`).
    Only such an end is held, so SSE events, which end in a blank line, pass at once.
    """

    __slots__ = ("_held", "_patterns")

    def __init__(self, patterns: list[bytes]):
        self._patterns = patterns
        self._held = b""

    def feed(self, piece: bytes) -> bytes:
        if self._held:
            piece, self._held = self._held + piece, b""
        for secret in self._patterns:
            if secret in piece:
                piece = piece.replace(secret, _MASK_BYTES)
        hold = self._unfinished(piece)
        if hold:
            piece, self._held = piece[:-hold], piece[-hold:]
        return piece

    def close(self) -> bytes:
        """What was held back: the body ended before it could become a secret."""
        held, self._held = self._held, b""
        return held

    def _unfinished(self, piece: bytes) -> int:
        """The length of the longest end of `piece` that is the beginning of a secret."""
        longest = 0
        size = len(piece)
        for secret in self._patterns:
            first = secret[:1]
            # Searched from the left, the first match is the longest candidate.
            at = piece.find(first, max(size - len(secret) + 1, 0))
            while at != -1:
                if secret.startswith(piece[at:]):
                    longest = max(longest, size - at)
                    break
                at = piece.find(first, at + 1)
        return longest
