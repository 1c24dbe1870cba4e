"""The optional TOML configuration file (`--config PATH`): upstreams, per-model settings, inbound keys.

`load` reads the file once at start-up into frozen, validated structures. Anything wrong in it
(unreadable file, invalid TOML, unknown key, wrong type, duplicate name or alias, unset key
variable) raises `ConfigError` naming the file, the key and the problem, so the server refuses
to start rather than serve something the user did not ask for.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_reader import ConfigError, TableReader, join, kind_of
from .model_rules import Globs, ModelRule, is_glob
from .translate.dialects import KINDS
from .translate.models import ALL_CAPABILITIES, Price, ollama_name
from .translate.overrides import option_problem

DEFAULT_CAPABILITIES = ("tools", "insert", "vision", "thinking")
RESPONSES_MODES = ("auto", "relay", "translate")


@dataclass(frozen=True)
class UpstreamConfig:
    """One `[[upstreams]]` table."""

    name: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    include: Globs = field(default_factory=Globs)
    exclude: Globs = field(default_factory=Globs)
    prefix: str = ""
    responses: str = "auto"  # /v1/responses: "relay", "translate" to chat completions, or "auto"
    kind: str | None = None  # which kind of server it is (see translate/dialects.py); None: detected


@dataclass(frozen=True)
class Defaults:
    """`[defaults]`: what a model gets when neither its metadata nor a rule says otherwise."""

    context_length: int | None = None
    capabilities: tuple[str, ...] | None = None


@dataclass(frozen=True)
class InboundKey:
    """One `[[keys]]` table: a key clients may send, and the models it may use (None: every model).

    `name` stands for the key wherever requests are recorded (logs, usage, metrics never hold the key).
    """

    key: str = field(repr=False)
    models: Globs | None = None
    name: str | None = None


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    upstreams: tuple[UpstreamConfig, ...] = ()
    models: tuple[ModelRule, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    keys: tuple[InboundKey, ...] = ()


def load(path: Path | str, environ: Mapping[str, str] | None = None) -> ConfigFile:
    """Read and validate the file; `environ` (default: the process environment) serves `api_key_env`
    and `key_env`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse(data, path=path, environ=os.environ if environ is None else environ)


def parse(data: Mapping[str, Any], *, path: Path, environ: Mapping[str, str]) -> ConfigFile:
    reader = _Reader(path)
    reader.keys(data, "", ("upstreams", "models", "defaults", "keys"))
    upstreams = reader.upstreams(data.get("upstreams", []), environ)
    models = reader.models(data.get("models", {}))
    defaults = reader.defaults(data.get("defaults", {}))
    keys = reader.inbound_keys(data.get("keys", []), environ)
    return ConfigFile(path=path, upstreams=upstreams, models=models, defaults=defaults, keys=keys)


def read_model(pattern: str, table: Mapping[str, Any], where: str) -> ModelRule:
    """One `[models."…"]` table checked as the file's are (the admin page's edits); a ConfigError
    names `where` and the key."""
    return _Reader(Path(where)).model(pattern, table, "")


class _Reader(TableReader):
    """The file's sections, each checked where it stands."""

    def upstreams(self, value: Any, environ: Mapping[str, str]) -> tuple[UpstreamConfig, ...]:
        if not isinstance(value, list):
            raise self.fail("upstreams", "must be an array of tables: write [[upstreams]]")
        found: list[UpstreamConfig] = []
        for number, item in enumerate(value, 1):
            upstream = self.upstream(self.table(item, f"[[upstreams]] #{number}"), f"[[upstreams]] #{number}", environ)
            if any(other.name == upstream.name for other in found):
                raise self.fail(
                    f"[[upstreams]] #{number} name", f"{upstream.name!r} is already used by another upstream"
                )
            found.append(upstream)
        return tuple(found)

    def upstream(self, table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> UpstreamConfig:
        allowed = ("name", "base_url", "api_key", "api_key_env", "headers", "models", "prefix", "responses", "kind")
        self.keys(table, where, allowed)
        if "base_url" not in table:
            raise self.fail(join(where, "base_url"), "is required")
        base_url = self.string(table["base_url"], join(where, "base_url")).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise self.fail(join(where, "base_url"), f"must be an http:// or https:// URL, got {base_url!r}")
        default_name = re.sub(r"^https?://", "", base_url).split("/", 1)[0]
        name = self.string(table.get("name", default_name), join(where, "name"))
        if "api_key" in table and "api_key_env" in table:
            raise self.fail(join(where, "api_key_env"), "give api_key or api_key_env, not both")
        api_key = None
        if "api_key" in table:
            api_key = self.string(table["api_key"], join(where, "api_key"), empty=True) or None
        elif "api_key_env" in table:
            variable = self.string(table["api_key_env"], join(where, "api_key_env"))
            api_key = environ.get(variable) or None
            if api_key is None:
                raise self.fail(join(where, "api_key_env"), f"environment variable {variable} is not set")
        headers = self.table(table.get("headers", {}), join(where, "headers"))
        for header, text in headers.items():
            self.string(text, f"{join(where, 'headers')}.{header}", empty=True)
        include, exclude = self.model_filter(table.get("models", []), join(where, "models"))
        prefix = self.string(table.get("prefix", ""), join(where, "prefix"), empty=True)
        responses = self.choice(table.get("responses", "auto"), join(where, "responses"), RESPONSES_MODES)
        kind = self.choice(table["kind"], join(where, "kind"), KINDS) if "kind" in table else None
        return UpstreamConfig(
            name=name,
            base_url=base_url,
            api_key=api_key,
            headers=dict(headers),
            include=Globs(include),
            exclude=Globs(exclude),
            prefix=prefix,
            responses=responses,
            kind=kind,
        )

    def model_filter(self, value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        # `models = ["gpt-4o*"]` is the short form of `models = { include = ["gpt-4o*"] }`.
        if isinstance(value, list):
            return self.strings(value, where), ()
        table = self.table(value, where)
        self.keys(table, where, ("include", "exclude"))
        include = self.strings(table.get("include", []), f"{where}.include")
        return include, self.strings(table.get("exclude", []), f"{where}.exclude")

    def models(self, value: Any) -> tuple[ModelRule, ...]:
        rules: list[ModelRule] = []
        aliases: dict[str, str] = {}
        for pattern, item in self.table(value, "models").items():
            where = f'[models."{pattern}"]'
            if not pattern.strip():
                raise self.fail("models", 'a model table needs an id or glob: [models."gpt-4o"]')
            rule = self.model(pattern, self.table(item, where), where)
            if rule.alias is not None:
                key = ollama_name(rule.alias.lower())
                if key in aliases:
                    raise self.fail(f"{where} alias", f"{rule.alias!r} is already the alias of {aliases[key]!r}")
                aliases[key] = pattern
            rules.append(rule)
        return tuple(rules)

    def model(self, pattern: str, table: Mapping[str, Any], where: str) -> ModelRule:
        self.keys(table, where, ("alias", "capabilities", "context_length", "hidden", "options", "price"))
        alias = None
        if "alias" in table:
            alias = self.string(table["alias"], f"{where} alias")
            if re.search(r"\s", alias):
                raise self.fail(f"{where} alias", f"must not contain spaces, got {alias!r}")
            if is_glob(pattern):
                raise self.fail(f"{where} alias", "an alias names one model; use an exact id, not a glob")
        capabilities = None
        if "capabilities" in table:
            capabilities = self.capabilities(table["capabilities"], f"{where} capabilities", ALL_CAPABILITIES)
        context_length = None
        if "context_length" in table:
            context_length = self.size(table["context_length"], f"{where} context_length")
        hidden = None
        if "hidden" in table:
            if not isinstance(table["hidden"], bool):
                raise self.fail(f"{where} hidden", f"must be true or false, not {kind_of(table['hidden'])}")
            hidden = table["hidden"]
        options = dict(self.table(table.get("options", {}), f"{where} options"))
        if isinstance(options.get("stop"), str):
            options["stop"] = [options["stop"]]
        for name, option in options.items():
            problem = option_problem(name, option)
            if problem:
                raise self.fail(f"{where} options.{name}", problem)
        if "timeout_ms" in options:
            if "request_timeout" in options:
                raise self.fail(f"{where} options", "give request_timeout (seconds) or timeout_ms, not both")
            options["request_timeout"] = options.pop("timeout_ms") / 1000
        price = self.price(table["price"], f"{where} price") if "price" in table else None
        return ModelRule(pattern, alias, capabilities, context_length, hidden, options, price)

    def price(self, value: Any, where: str) -> Price:
        """`{ input = 2.5, output = 10 }`: USD per million tokens, both given."""
        table = self.table(value, where)
        self.keys(table, where, ("input", "output"))
        amounts: dict[str, float] = {}
        for name in ("input", "output"):
            if name not in table:
                raise self.fail(f"{where}.{name}", "is required (USD per million tokens)")
            amount = table[name]
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                raise self.fail(f"{where}.{name}", f"must be a number (USD per million tokens), not {kind_of(amount)}")
            if not 0 <= amount < float("inf"):
                raise self.fail(f"{where}.{name}", "must be zero or more")
            amounts[name] = float(amount)
        return Price(**amounts)

    def defaults(self, value: Any) -> Defaults:
        table = self.table(value, "[defaults]")
        self.keys(table, "[defaults]", ("context_length", "capabilities"))
        context_length = None
        if "context_length" in table:
            context_length = self.size(table["context_length"], "[defaults] context_length")
        capabilities = None
        if "capabilities" in table:
            capabilities = self.capabilities(table["capabilities"], "[defaults] capabilities", DEFAULT_CAPABILITIES)
        return Defaults(context_length=context_length, capabilities=capabilities)

    def inbound_keys(self, value: Any, environ: Mapping[str, str]) -> tuple[InboundKey, ...]:
        if not isinstance(value, list):
            raise self.fail("keys", "must be an array of tables: write [[keys]]")
        found: list[InboundKey] = []
        for number, item in enumerate(value, 1):
            where = f"[[keys]] #{number}"
            key = self.inbound_key(self.table(item, where), where, environ)
            same = next((n for n, other in enumerate(found, 1) if other.key == key.key), None)
            if same is not None:
                # Two tables with one key would leave its model list ambiguous; never echo the key.
                raise self.fail(where, f"the same key as [[keys]] #{same}; give each key once")
            named = next((n for n, other in enumerate(found, 1) if key.name and other.name == key.name), None)
            if named is not None:
                raise self.fail(join(where, "name"), f"{key.name!r} is the name of [[keys]] #{named} already")
            found.append(key)
        return tuple(found)

    def inbound_key(self, table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> InboundKey:
        self.keys(table, where, ("key", "key_env", "models", "name"))
        if "key" in table and "key_env" in table:
            raise self.fail(join(where, "key_env"), "give key or key_env, not both")
        if "key" in table:
            # Stripped as HTTP strips header values, or a stray space would make the key unusable.
            key = self.string(table["key"], join(where, "key")).strip()
        elif "key_env" in table:
            variable = self.string(table["key_env"], join(where, "key_env"))
            key = environ.get(variable, "").strip()
            if not key:
                raise self.fail(join(where, "key_env"), f"environment variable {variable} is not set or empty")
        else:
            raise self.fail(where, "needs key or key_env")
        models = None
        if "models" in table:
            patterns = self.strings(table["models"], join(where, "models"))
            if not patterns:
                raise self.fail(join(where, "models"), "lists no model; leave it out to allow every model")
            models = Globs(patterns)
        name = self.string(table["name"], join(where, "name")).strip() if "name" in table else None
        return InboundKey(key, models, name or None)
