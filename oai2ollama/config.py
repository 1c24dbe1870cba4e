"""Settings: what the server is told by CLI flags, environment variables and `.env`.

Nothing here reads argv or the environment at import time; `cli.main()` builds `Settings`
and tests construct it directly with keyword arguments.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, CliSuppress, NoDecode, SettingsConfigDict

from .config_reader import parse_size as _parse_size

Capability = Literal["tools", "insert", "vision", "embedding", "thinking"]

# The most recent stable Ollama release this server imitates; clients gate features on it
# (Copilot needs >= 0.6.4; tool-call ids arrived in 0.12.10; Anthropic routes in 0.14.0).
DEFAULT_OLLAMA_VERSION = "0.32.15"
# Several full-size base64 images fit; a runaway or hostile client is cut off long before memory is.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bytes(value: str) -> int:
    """A size in bytes: 1048576, "512k", "64m", "1g" (binary: k is 1024; "64MiB" and "64mb" too)."""
    parsed = re.fullmatch(r"\s*(\d+)\s*(?:([kmg])i?b?|b)?\s*", value, re.IGNORECASE)
    if not parsed:
        raise ValueError(f"invalid size {value!r} (use e.g. 67108864, 512k or 64m)")
    return int(parsed.group(1)) * _BYTE_UNITS[(parsed.group(2) or "").lower()]


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str) -> float:
    """Seconds in "30d", "12h", "90m", "45s", "2w"; a bare number counts days, the unit retention is thought in."""
    parsed = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value, re.IGNORECASE)
    if not parsed:
        raise ValueError(f"invalid duration {value!r} (use e.g. 30d, 12h, 90m or 2w)")
    return float(parsed.group(1)) * _DURATION_UNITS[(parsed.group(2) or "d").lower()]


def describe_bytes(size: int) -> str:
    """64 MiB, 1.5 KiB or 1000 bytes: the way sizes are worded in messages."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size // factor} {unit}" if size % factor == 0 else f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def cores() -> int:
    """The cores this process may use: its CPU affinity, and a container's CPU limit, rounded up."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    # A container's CPU limit (cgroup v2 `cpu.max`: "quota period", or "max" for none).
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, -(-int(quota) // int(period)))
    return max(1, count)


DEFAULT_PORT = 11434
_SCHEME_PORTS = {"http": 80, "https": 443}


def listen_address(value: str) -> tuple[str, int]:
    """Where `ollama serve` listens for an `OLLAMA_HOST` value: `host`, `host:port`, `:port`,
    `http://host:port`, `[::1]:port` (Ollama's `envconfig.Host`).

    No host means every interface (`:8080`, as Go listens); no port means 11434, or 80 and 443
    after `http://` and `https://`; a path is ignored. An empty value is `127.0.0.1:11434`.
    """
    text = value.strip()
    scheme, found, rest = text.partition("://")
    default_port = _SCHEME_PORTS.get(scheme.lower(), DEFAULT_PORT) if found else DEFAULT_PORT
    hostport = (rest if found else text).split("/", 1)[0]
    host, port = _split_host_port(hostport)
    if port is None:
        bare = hostport.strip("[]")
        return _ip_text(bare) or bare or "127.0.0.1", default_port
    if not port:
        port = str(default_port)  # `host:`, which Ollama takes for its default port too
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r} in OLLAMA_HOST {value!r}")
    return host or "0.0.0.0", int(port)


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    """Go's `net.SplitHostPort`, lenient: `(host, None)` where it would fail."""
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        return (host, port[1:]) if bracket and port.startswith(":") else (hostport, None)
    if hostport.count(":") != 1:  # none, or a bare IPv6 address
        return hostport, None
    host, _, port = hostport.partition(":")
    return host, port


def _ip_text(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _split_list(value: object) -> object:
    """Accept `a,b` and repeated flags alike: CLI lists, env comma lists and JSON lists."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """oai2ollama: Ollama's API on top of any OpenAI-compatible upstream.

    Every flag is also an environment variable (or a line in .env). `--version` prints the version.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_shortcuts={"capabilities": "c", "models": "m", "context-lengths": "l"},
        cli_prog_name="oai2ollama",
        cli_hide_none_type=True,
    )

    base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("base_url", "OPENAI_BASE_URL"),
        description="The upstream's OpenAI-compatible base URL, e.g. https://api.openai.com/v1 (env OPENAI_BASE_URL)",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("api_key", "OPENAI_API_KEY"),
        description="Upstream API key (env OPENAI_API_KEY); when unset the client's own Authorization is forwarded",
    )
    host: str = Field(
        "localhost",
        description="Address to listen on (0.0.0.0 for all interfaces); where neither --host nor --port is given, "
        "env OLLAMA_HOST (host:port, as for ollama serve) is read too",
    )
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="Port to listen on")
    # Ollama's way of saying where to listen; HOST/PORT (or --host/--port) say it for this server and win.
    ollama_host: CliSuppress[str | None] = Field(None, validation_alias=AliasChoices("ollama_host", "OLLAMA_HOST"))
    capabilities: Annotated[list[Capability], NoDecode] = Field(
        [], description="Capabilities every model advertises besides completion: tools,insert,vision,embedding,thinking"
    )
    capacities: CliSuppress[Annotated[list[Capability], NoDecode]] = Field([], repr=False, exclude=True)
    extra_models: Annotated[list[str], NoDecode] = Field(
        [],
        validation_alias=AliasChoices("models", "extra_models"),
        description="Extra model ids to list even when the upstream's /models lacks them",
    )
    context_lengths: dict[str, int] = Field(
        {}, description='Context length per model, e.g. {"gpt-4o": "128k"}; others use --context-length'
    )
    context_length: int = Field(
        131072, gt=0, description="Context length reported for models whose length is not known"
    )
    ollama_version: str = Field(DEFAULT_OLLAMA_VERSION, description="Version reported by /api/version")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a connection to the upstream")
    read_timeout: float = Field(
        600.0, gt=0, description="Seconds the upstream may stay silent before the request fails (slow reasoning)"
    )
    request_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds a whole request to the upstream may take, streaming included (default: no limit; "
        "per model: options.request_timeout in --config)",
    )
    shutdown_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds open answers may take to finish when the server is stopped (SIGTERM, Ctrl-C); "
        "keep it below Docker's --stop-timeout or Kubernetes' terminationGracePeriodSeconds",
    )
    workers: int = Field(
        1,
        ge=1,
        description="Server processes sharing the port; auto: one per core. With several, state is shared through "
        "the database (--database-url): keep it on",
    )
    models_ttl: float = Field(60.0, ge=0, description="Seconds the upstream's model list is cached")
    http2: bool = Field(
        False,
        description="Speak HTTP/2 to https upstreams that offer it (httpx's transport; HTTP/1.1 uses a faster one)",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Log level")
    config: Path | None = Field(
        None,
        validation_alias=AliasChoices("config", "OAI2OLLAMA_CONFIG"),
        description="Optional TOML file with upstreams and per-model settings (env OAI2OLLAMA_CONFIG)",
    )
    origins: Annotated[list[str], NoDecode] = Field(
        [],
        validation_alias=AliasChoices("origins", "OLLAMA_ORIGINS"),
        description="Browser origins allowed besides localhost and apps, * as wildcard: https://*.example.com "
        "(env OLLAMA_ORIGINS, comma list)",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        [],
        description="Host names clients may use besides local ones; turns the DNS-rebinding check on also when "
        "listening on 0.0.0.0 (in Docker: localhost). *.example.com as wildcard (env ALLOWED_HOSTS, comma list)",
    )
    server_api_key: Annotated[list[SecretStr], NoDecode] = Field(
        [],
        validation_alias=AliasChoices("server_api_key", "OAI2OLLAMA_SERVER_API_KEYS"),
        description="Key clients must send (Authorization: Bearer or x-api-key); repeat for several "
        "(env OAI2OLLAMA_SERVER_API_KEYS, comma list)",
    )
    metrics_public: bool = Field(
        False, description="Serve GET /metrics without a key even when --server-api-key or [[keys]] are set"
    )
    max_body_size: int = Field(
        DEFAULT_MAX_BODY_SIZE,
        gt=0,
        description="Largest request body accepted, in bytes or with a binary unit: 64m, 512k, 1g",
    )

    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("database_url", "OAI2OLLAMA_DATABASE_URL"),
        description="Where the usage ledger is kept: sqlite:///PATH, postgresql://USER:PASSWORD@HOST/DB, or none "
        "for no ledger (default: SQLite in $XDG_DATA_HOME/oai2ollama/oai2ollama.db; env OAI2OLLAMA_DATABASE_URL)",
    )
    admin_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("admin_token", "OAI2OLLAMA_ADMIN_TOKEN"),
        description="The token that opens the admin page at /admin (at least 16 characters); unset: one is "
        "generated at the first start, stored hashed and printed once (env OAI2OLLAMA_ADMIN_TOKEN)",
    )
    admin_secure_cookie: bool = Field(
        False,
        description="Mark the admin session cookie Secure also when requests arrive over plain HTTP (behind an "
        "HTTPS proxy); over HTTPS it always is",
    )
    usage_retention: float = Field(
        30 * 86400.0,
        gt=0,
        description="How long each request's record is kept, e.g. 30d, 12h, 2w (daily totals are kept a year); "
        "default 30d",
    )

    @field_validator("request_timeout", mode="before")
    @classmethod
    def _unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value  # REQUEST_TIMEOUT= means none

    @field_validator("ollama_host")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        listen_address(value)  # only to refuse a bad value now, naming the setting
        return value

    @model_validator(mode="after")
    def _ollama_host(self) -> Settings:
        if self.ollama_host is not None:
            host, port = listen_address(self.ollama_host)
            if "host" not in self.model_fields_set:
                self.host = host
            if "port" not in self.model_fields_set:
                self.port = port
        return self

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return cores()
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("capabilities", "capacities", "extra_models", "origins", "allowed_hosts", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("server_api_key", mode="before")
    @classmethod
    def _key_list(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            value = [item.get_secret_value() if isinstance(item, SecretStr) else item for item in value]
        keys = _split_list(value)
        # `--server-api-key "$UNSET"` must not quietly start a server without keys.
        if keys == [] and value not in ([], ()):
            raise ValueError("an API key must not be empty")
        return keys

    @field_validator("context_lengths", mode="before")
    @classmethod
    def _sizes(cls, value: object) -> object:
        if isinstance(value, dict):
            return {name: _parse_size(size) for name, size in value.items()}
        return value

    @field_validator("context_length", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return _parse_size(value) if isinstance(value, str) else value

    @field_validator("max_body_size", mode="before")
    @classmethod
    def _bytes(cls, value: object) -> object:
        return parse_bytes(value) if isinstance(value, str) else value

    @field_validator("usage_retention", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _database(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            from .ledger.database import resolve_url  # SQLAlchemy is imported only when a URL is given

            resolve_url(value)  # its ValueError never repeats the URL, which may hold a password
            return value.strip()
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _admin_token(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None  # OAI2OLLAMA_ADMIN_TOKEN= means "generate one"
            if len(value) < 16:
                raise ValueError("must be at least 16 characters (or unset, to have one generated)")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    def all_capabilities(self) -> list[str]:
        """The configured capabilities, the legacy misspelt `capacities` merged in."""
        merged = [*self.capabilities, *self.capacities]
        return list(dict.fromkeys(merged))
