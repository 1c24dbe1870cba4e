"""Who may open the admin page: the admin token, the session cookie it buys, CSRF tokens, failed logins.

The token is `--admin-token` (`OAI2OLLAMA_ADMIN_TOKEN`), else one generated at the first start and
kept in the database only as a scrypt hash (`secrets`, row `admin_token`; with several processes
the first to insert it generates it, the others read it), else, without a database, one generated
per start. It is never stored or logged in clear, except that a generated one is printed once.

Sessions are stateless signed cookies, valid on every process sharing the database: the signing
key is derived from the token's hash and a random salt kept in `secrets` (`admin_session_salt`),
so a new token ends every session, and so does signing out, which renews the salt: a copy of the
cookie must not outlive it. Without a database, signing out ends that session (each copy of its
cookie) in the process that answered. Each session has its own CSRF token, derived from it.
Every comparison is made in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..ledger import tables

log = logging.getLogger("oai2ollama.admin")

TOKEN_ROW = "admin_token"
SALT_ROW = "admin_session_salt"
TOPIC = "admin_token"  # shared-state topic: a token set by the CLI reaches every process
SESSION_SECONDS = 12 * 3600
# scrypt's cost: ~50 ms and 16 MiB per login attempt, which failed logins are also limited by.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Sessions of a server without a database, given a token: the same on every start and worker.
_NO_DATABASE_SALT = b"oai2ollama admin session without a database"


def new_token() -> str:
    """A fresh admin token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str, salt: bytes | None = None) -> str:
    """`scrypt$<salt hex>$<hash hex>`: what `secrets.digest` holds for the admin token."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, **_SCRYPT, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_hash(token: str, stored: str) -> bool:
    try:
        scheme, salt, _ = stored.split("$")
        expected = hash_token(token, bytes.fromhex(salt)) if scheme == "scrypt" else ""
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode(), stored.encode())


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    csrf: str


class Keyring:
    """How a presented token is checked, and the key sessions are signed with."""

    def __init__(self, *, plain: str | None = None, stored: str | None = None, salt: bytes = b""):
        if plain is not None:
            self._plain: bytes | None = hashlib.sha256(plain.encode()).digest()
            fingerprint = self._plain
        else:
            self._plain = None
            fingerprint = (stored or "").encode()
        self._stored = stored
        self._key = hmac.new(salt, b"admin session\0" + fingerprint, hashlib.sha256).digest()
        self._ended: dict[str, int] = {}  # nonce: expiry, of sessions signed out here

    def check(self, presented: str) -> bool:
        if self._plain is not None:
            return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._plain)
        return self._stored is not None and verify_hash(presented, self._stored)

    def _sign(self, text: str) -> str:
        mac = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, now: float | None = None) -> str:
        """A new session's cookie value: `expires.nonce.signature`."""
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        body = f"{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, if it is ours, whole and not expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        expires, nonce, signature = cookie.split(".")
        if not hmac.compare_digest(self._sign(f"{expires}.{nonce}").encode(), signature.encode()):
            return None
        if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
            return None
        if nonce in self._ended:
            return None
        return Session(nonce=nonce, expires=int(expires), csrf=self._sign(f"csrf.{nonce}"))

    def end(self, session: Session, now: float | None = None) -> None:
        """Refuse `session` from now on (its cookie may have been copied); forget the ones expired."""
        now = now if now is not None else time.time()
        self._ended = {nonce: expires for nonce, expires in self._ended.items() if expires >= now}
        self._ended[session.nonce] = session.expires

    def login_csrf(self, nonce: str) -> str:
        """The login form's CSRF token, bound to a random pre-login cookie."""
        return self._sign(f"login.{nonce}")


def keyring_without_database(configured: str | None) -> tuple[Keyring, str | None]:
    """The keyring of a server without a database, and the token generated for this start (if any)."""
    if configured is not None:
        return Keyring(plain=configured, salt=_NO_DATABASE_SALT), None
    token = new_token()
    return Keyring(plain=token, salt=secrets.token_bytes(32)), token


async def _insert_if_absent(connection: AsyncConnection, name: str, value: str) -> bool:
    table = tables.secrets
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(name=name, digest=value, created_at=datetime.now(UTC))
    result = await connection.execute(statement.on_conflict_do_nothing(index_elements=[table.c.name]))
    return bool(result.rowcount)


async def _read(connection: AsyncConnection, name: str) -> str | None:
    table = tables.secrets
    return (await connection.execute(sa.select(table.c.digest).where(table.c.name == name))).scalar_one_or_none()


async def keyring_from_database(connection: AsyncConnection, configured: str | None) -> tuple[Keyring, str | None]:
    """The keyring of a server with a database (every process the same), and the token this call
    generated: only the first process of the first start generates one; call inside a transaction."""
    await _insert_if_absent(connection, SALT_ROW, secrets.token_hex(32))
    salt = bytes.fromhex(await _read(connection, SALT_ROW) or "")
    if configured is not None:
        return Keyring(plain=configured, salt=salt), None
    token = new_token()
    generated = await _insert_if_absent(connection, TOKEN_ROW, hash_token(token))
    stored = await _read(connection, TOKEN_ROW)
    return Keyring(stored=stored, salt=salt), token if generated else None


async def renew_salt(connection: AsyncConnection) -> None:
    """A new salt for the sessions' signing key, which ends every session once each process has
    read it (the caller raises `TOPIC` in the same transaction)."""
    table = tables.secrets
    await connection.execute(table.delete().where(table.c.name == SALT_ROW))
    await _insert_if_absent(connection, SALT_ROW, secrets.token_hex(32))


async def replace_token(connection: AsyncConnection, token: str) -> None:
    """Store a new admin token's hash (the CLI's `admin-token`); every session ends."""
    table = tables.secrets
    await connection.execute(table.delete().where(table.c.name == TOKEN_ROW))
    await _insert_if_absent(connection, TOKEN_ROW, hash_token(token))


class FailedLogins:
    """Light limits on guessing: `per_client` failures per client within `window` seconds, and
    `overall` failures from everyone, after which logins wait until the window moves on."""

    def __init__(self, per_client: int = 5, overall: int = 50, window: float = 60.0):
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self._failures: deque[tuple[float, str]] = deque()

    def _trim(self, now: float) -> None:
        while self._failures and self._failures[0][0] <= now - self.window:
            self._failures.popleft()

    def wait(self, client: str, now: float | None = None) -> float:
        """Seconds `client` must wait before trying again (0: it may try now)."""
        now = time.monotonic() if now is None else now
        self._trim(now)
        mine = [at for at, who in self._failures if who == client]
        if len(mine) >= self.per_client:
            return mine[-self.per_client] + self.window - now
        if len(self._failures) >= self.overall:
            return self._failures[-self.overall][0] + self.window - now
        return 0.0

    def failed(self, client: str, now: float | None = None) -> None:
        self._failures.append((time.monotonic() if now is None else now, client))
