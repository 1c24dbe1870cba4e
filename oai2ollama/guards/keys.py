"""Inbound API keys: which key a request carries, and whether it is one of ours.

Only SHA-256 digests are kept, compared in constant time (the length of a presented key does not
show either), and every key is compared, whichever matches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from ..config_file import InboundKey
from .refusal import Refusal

CREDENTIAL_HEADERS = (b"authorization", b"x-api-key")
_MISSING = Refusal(
    401,
    "an API key is required: send Authorization: Bearer <key> or x-api-key: <key>",
    {"WWW-Authenticate": "Bearer"},
)
_INVALID = Refusal(401, "invalid API key", {"WWW-Authenticate": "Bearer"})


def unreadable_credentials(headers: dict[bytes, bytes]) -> Refusal | None:
    """A credential header that is not ASCII: no key is such, and none can be sent on upstream."""
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value is not None and not value.isascii():
            return Refusal(400, f"the {name.decode()} header must be ASCII (an API key is)")
    return None


def presented_keys(authorization: bytes | None, api_key: bytes | None) -> list[bytes]:
    """The credentials a request carries: `Authorization: Bearer <key>` (OpenAI, Ollama clients)
    and `x-api-key: <key>` (Anthropic clients). Copilot's empty `Bearer ` is no credential."""
    keys = []
    if authorization:
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and token.strip():
            keys.append(token.strip())
    if api_key and api_key.strip():
        keys.append(api_key.strip())
    return keys


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class KeyRing:
    def __init__(self, keys: Sequence[InboundKey]):
        self._keys = tuple((_digest(key.key.encode()), key) for key in keys)

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, presented: Iterable[bytes]) -> InboundKey | None:
        found = None
        for candidate in presented:
            digest = _digest(candidate)
            for known, key in self._keys:
                if hmac.compare_digest(digest, known) and found is None:
                    found = key
        return found

    def identify(self, headers: dict[bytes, bytes]) -> InboundKey | Refusal:
        """The key a request's headers carry, or why it is refused (401)."""
        key = self.find(presented_keys(headers.get(b"authorization"), headers.get(b"x-api-key")))
        if key is not None:
            return key
        return _MISSING if not any(name in headers for name in CREDENTIAL_HEADERS) else _INVALID
