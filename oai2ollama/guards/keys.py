"""Inbound API keys: which key a request carries, and whether it is one of ours.

Only SHA-256 digests are kept, looked up by digest and compared in constant time (the length of a
presented key does not show either). Keys come from flags and the config file (`InboundKey`) and
from the database (`RuntimeKey`, made with `oai2ollama keys add`, reloaded while the server runs).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config_file import InboundKey
from ..model_rules import Globs
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


_REVOKED_OR_EXPIRED = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
# A database holds keys this process has not read yet: refuse rather than run open.
_PENDING = Refusal(
    503, "the server has not read its API keys from the database yet; retry shortly", {"Retry-After": "1"}
)


@dataclass(frozen=True, slots=True)
class RuntimeKey:
    """A key from the database (`key_store`), as the guards need it: never the key itself.
    Times are Unix seconds; `models` None: every model."""

    name: str
    models: Globs | None = None
    expires_at: float | None = None
    revoked_at: float | None = None
    tokens_per_day: int | None = None
    requests_per_minute: int | None = None

    @property
    def limited(self) -> bool:
        return self.tokens_per_day is not None or self.requests_per_minute is not None

    def refusal(self, now: float) -> Refusal | None:
        """Why the key may no longer be used (401), if it may not."""
        if self.revoked_at is not None:
            return Refusal(401, f"API key '{self.name}' was revoked", _REVOKED_OR_EXPIRED)
        if self.expires_at is not None and now >= self.expires_at:
            when = datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            return Refusal(401, f"API key '{self.name}' expired on {when}", _REVOKED_OR_EXPIRED)
        return None


Key = InboundKey | RuntimeKey


class KeyRing:
    """The keys from flags and the config file, fixed at start-up, and the database's, replaced
    whole (`use_runtime`) whenever they change. Truthy while any key is known, revoked and expired
    ones included: revoking the last key must not open the server to everyone."""

    def __init__(self, keys: Sequence[InboundKey]):
        self._static: dict[bytes, tuple[bytes, Key]] = {}
        for key in keys:
            digest = _digest(key.key.encode())
            self._static.setdefault(digest, (digest, key))
        self._runtime: dict[bytes, tuple[bytes, Key]] = {}
        self.pending = False  # see _PENDING; set while a database's keys are being read

    def __len__(self) -> int:
        return len(self._static) + len(self._runtime)

    def __bool__(self) -> bool:
        return bool(self._static or self._runtime or self.pending)

    def use_runtime(self, keys: Iterable[tuple[bytes, RuntimeKey]]) -> None:
        """The database's keys (SHA-256 digest, key), replacing the ones before in one step."""
        self._runtime = {digest: (digest, key) for digest, key in keys}
        self.pending = False

    def find(self, presented: Iterable[bytes]) -> Key | None:
        # One probe per presented key, however many keys there are. The table is keyed by SHA-256
        # digests, so a probe's timing can at most tell how the digest of what was sent compares
        # with a stored digest, which says nothing about any key (finding a key from a digest is
        # SHA-256's preimage problem); a constant-time comparison then confirms the match.
        for candidate in presented:
            digest = _digest(candidate)
            entry = self._static.get(digest) or self._runtime.get(digest)
            if entry is not None and hmac.compare_digest(digest, entry[0]):
                return entry[1]
        return None

    def identify(self, headers: dict[bytes, bytes]) -> Key | Refusal:
        """The key a request's headers carry, or why it is refused (401; 503 while the database's
        keys are not read yet)."""
        key = self.find(presented_keys(headers.get(b"authorization"), headers.get(b"x-api-key")))
        if key is not None:
            return key
        if self.pending:
            return _PENDING
        return _MISSING if not any(name in headers for name in CREDENTIAL_HEADERS) else _INVALID
