"""Settings and the optional config file, assembled once at start-up into what the server runs on.

Flags, environment and `.env` (`config.Settings`) describe one upstream and a few defaults; the
TOML file (`config_file`) adds upstreams, model rules and keys. `assemble` reads the file once and
combines both: flags and environment variables win over the file's `[defaults]`. Every problem
raises a ValueError meant for the user as is (the CLI prints it and exits 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from . import config_file
from .config import Settings
from .config_file import ConfigFile, InboundKey
from .model_rules import Globs, ModelRule, passes
from .target import Target

# How long the catalog waits for one upstream's /models before serving without it.
LIST_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Source:
    """One upstream as the catalog sees it: where it is, and which of its models to list."""

    target: Target
    prefix: str = ""
    include: Globs = field(default_factory=Globs)
    exclude: Globs = field(default_factory=Globs)
    extra_models: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.target.name

    def lists(self, upstream_id: str) -> bool:
        return passes(upstream_id, self.include, self.exclude)


@dataclass
class CatalogConfig:
    sources: Sequence[Source]
    rules: Sequence[ModelRule] = ()
    capabilities: Sequence[str] = ()  # for chat models whose metadata is silent about them
    context_lengths: Mapping[str, int] = field(default_factory=dict)  # --context-lengths, by id
    default_context_length: int = 131072
    ttl: float = 60.0
    timeout: float = LIST_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Configuration:
    catalog: CatalogConfig
    keys: tuple[InboundKey, ...]  # from --server-api-key and the file's [[keys]]


def assemble(settings: Settings) -> Configuration:
    file = config_file.load(settings.config) if settings.config else None
    return Configuration(catalog=_catalog(settings, file), keys=_keys(settings, file))


def _catalog(settings: Settings, file: ConfigFile | None) -> CatalogConfig:
    """`--base-url`/`--api-key` define the upstream named `default`; each `[[upstreams]]` adds one."""
    sources: list[Source] = []
    if settings.base_url:
        key = settings.api_key.get_secret_value() if settings.api_key else None
        sources.append(Source(Target(base_url=settings.base_url, api_key=key), extra_models=(*settings.extra_models,)))
    for number, upstream in enumerate(file.upstreams if file else (), 1):
        if any(source.name == upstream.name for source in sources):
            raise config_file.ConfigError(
                f"{settings.config}: [[upstreams]] #{number} name: {upstream.name!r} is the name of the "
                "upstream given by --base-url; choose another name"
            )
        target = Target(
            upstream.base_url,
            upstream.api_key,
            upstream.name,
            dict(upstream.headers),
            responses=upstream.responses,
            kind=upstream.kind,
        )
        sources.append(Source(target, upstream.prefix, upstream.include, upstream.exclude))
    if not sources:
        raise ValueError("base-url is required (flag --base-url or env OPENAI_BASE_URL, or [[upstreams]] in --config)")
    if settings.extra_models and not settings.base_url:
        first = sources[0]
        sources[0] = Source(first.target, first.prefix, first.include, first.exclude, (*settings.extra_models,))
    explicit = settings.model_fields_set
    defaults = file.defaults if file else config_file.Defaults()
    capabilities = settings.all_capabilities()
    if not ({"capabilities", "capacities"} & explicit) and defaults.capabilities is not None:
        capabilities = list(defaults.capabilities)
    context_length = settings.context_length
    if "context_length" not in explicit and defaults.context_length:
        context_length = defaults.context_length
    return CatalogConfig(
        sources=sources,
        rules=file.models if file else (),
        capabilities=capabilities,
        context_lengths={name.lower(): size for name, size in settings.context_lengths.items()},
        default_context_length=context_length,
        ttl=settings.models_ttl,
    )


def _keys(settings: Settings, file: ConfigFile | None) -> tuple[InboundKey, ...]:
    """The inbound keys, each with a name: its own, else `key-1`, `key-2`… for flag keys and
    `file-key-N` for the file's Nth `[[keys]]` table. A problem is named without showing the key."""
    file_keys = [
        key if key.name else replace(key, name=f"file-key-{number}")
        for number, key in enumerate(file.keys if file else (), 1)
    ]
    flag_keys = [
        InboundKey(secret.get_secret_value().strip(), name=f"key-{number}")
        for number, secret in enumerate(settings.server_api_key, 1)
    ]
    if len({key.key for key in flag_keys}) < len(flag_keys):
        raise ValueError("server-api-key: the same key is given twice")
    for number, key in enumerate(file_keys, 1):
        if any(key.key == flag.key for flag in flag_keys):
            raise ValueError(
                f"{settings.config}: [[keys]] #{number}: the same key is given by --server-api-key; give it once"
            )
        if any(key.name == flag.name for flag in flag_keys):
            raise ValueError(
                f"{settings.config}: [[keys]] #{number} name: {key.name!r} is the name of a --server-api-key key; "
                "choose another name"
            )
    return (*flag_keys, *file_keys)
