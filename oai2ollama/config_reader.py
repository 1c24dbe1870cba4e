"""Reading TOML tables with messages that say where: `<file>: [models."x"] alias: <problem>`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A problem in the configuration file; the message is meant for the user as is."""


def parse_size(value: int | str) -> int:
    """A context length: 8192, "8192", "128k" (128000) or "1m"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    parsed = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", value) if isinstance(value, str) else None
    if not parsed:
        raise ValueError(f"invalid context length {value!r} (use e.g. 8192, 128k or 1m)")
    factor = {"": 1, "k": 1000, "m": 1000_000}[parsed.group(2).lower()]
    return int(parsed.group(1)) * factor


class TableReader:
    """Validation with messages that say where: `<file>: [models."x"] alias: <problem>`."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}")

    def keys(self, table: Mapping[str, Any], where: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of: {', '.join(allowed)})"
                raise self.fail(join(where, key), f"unknown key{hint}")

    def table(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, not {kind_of(value)}")
        return value

    def string(self, value: Any, where: str, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, not {kind_of(value)}")
        if not empty and not value.strip():
            raise self.fail(where, "must not be empty")
        return value

    def choice(self, value: Any, where: str, allowed: Sequence[str]) -> str:
        text = self.string(value, where)
        if text not in allowed:
            raise self.fail(where, f"must be one of {', '.join(allowed)}, not {text!r}")
        return text

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list of strings, not {kind_of(value)}")
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(value))

    def capabilities(self, value: Any, where: str, allowed: Sequence[str]) -> tuple[str, ...]:
        names = self.strings(value, where)
        for name in names:
            if name not in allowed:
                raise self.fail(where, f"unknown capability {name!r} (use: {', '.join(allowed)})")
        return names

    def size(self, value: Any, where: str) -> int:
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        if size <= 0:
            raise self.fail(where, "must be positive")
        return size


def join(where: str, key: str) -> str:
    return f"{where} {key}" if where else key


def kind_of(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
