"""One way to read a config file and a secret: typed reads that name the dotted key in every error.

The gateway's TOML (gateway.config), its trading half (gateway.trading.config), the rig's and the
study's TOML (hil) all read their tables with these helpers and fail with one `ConfigError` style:
`config error at 'section.key': message`. Secrets are never config values, only references (a
file path or a systemd credential name, `LoadCredential=`), read when needed by `read_secret`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Kind = type | tuple[type, ...]
_REQUIRED: Any = ...


class ConfigError(ValueError):
    """A configuration value is missing or invalid; `key` names it (dotted path, e.g. `chain.rpc_url`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error at {key!r}: {message}")
        self.key = key
        self.message = message


def kind_name(kind: Kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def typed(dotted: str, value: object, kind: Kind) -> Any:
    """`value` when it is of `kind` (a bool is never an int or a float unless bool is asked for)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ConfigError(dotted, f"must be a {kind_name(kind)}, got {type(value).__name__}")
    return value


def get(table: Mapping[str, Any], section: str, key: str, kind: Kind, default: Any = _REQUIRED) -> Any:
    """`table[key]` checked against `kind`; `default` when absent, or ConfigError when it is required."""
    dotted = f"{section}.{key}"
    if key not in table:
        if default is _REQUIRED:
            raise ConfigError(dotted, "is missing (required)")
        return default
    return typed(dotted, table[key], kind)


def reject_unknown(section: str, table: Mapping[str, Any], known: set[str]) -> None:
    """ConfigError at the first key (sorted) the section does not know: a typo is never ignored."""
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}", "unknown key")


class Table:
    """Typed reads from one table that remember which keys were used; `done()` refuses the rest."""

    def __init__(self, name: str, data: object) -> None:
        if not isinstance(data, dict):
            raise ConfigError(name, "must be a table")
        self.name = name
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def _get(self, key: str, kind: Kind, default: object, required: bool) -> Any:
        self.used.add(key)
        return get(self.data, self.name, key, kind, _REQUIRED if required else default)

    def get_str(self, key: str, default: str | None = None, required: bool = False) -> Any:
        return self._get(key, str, default, required)

    def get_int(self, key: str, default: int, low: int, high: int) -> int:
        value = self._get(key, int, default, False)
        if not low <= value <= high:
            raise ConfigError(f"{self.name}.{key}", f"must be between {low} and {high}, got {value}")
        return value

    def get_float(self, key: str, default: float, low: float, high: float) -> float:
        value = float(self._get(key, (int, float), default, False))
        if not low <= value <= high:
            raise ConfigError(f"{self.name}.{key}", f"must be between {low} and {high}, got {value}")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        return self._get(key, bool, default, False)

    def get_list(self, key: str) -> list[Any]:
        """An array, or [] when absent."""
        return self._get(key, list, [], False)

    def get_table(self, key: str, required: bool = False) -> dict[str, Any]:
        """A sub-table (`[section.key]`), or {} when absent and not required."""
        return self._get(key, dict, {}, required)

    def check(self, key: str, ok: Callable[[Any], object], message: str, value: Any) -> Any:
        if value is not None and not ok(value):
            raise ConfigError(f"{self.name}.{key}", message)
        return value

    def done(self) -> None:
        reject_unknown(self.name, self.data, self.used)


def load_toml(path: Path | str) -> dict[str, Any]:
    """A TOML file's document; ConfigError at '<file>' when it cannot be read, is not UTF-8 or not TOML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("<file>", f"{path} is not UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from None


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: a file path or a systemd credential name; never the secret itself."""

    key: str
    file: Path | None = None
    credential: str | None = None

    def describe(self) -> str:
        return f"credential:{self.credential}" if self.credential else f"file:{self.file}"


def read_secret_raw(ref: SecretRef, env: Mapping[str, str] | None = None) -> bytes:
    """The secret's bytes as stored: `$CREDENTIALS_DIRECTORY/<credential>` or the file; ConfigError naming the key."""
    env = os.environ if env is None else env
    if ref.credential:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                ref.key, f"credential {ref.credential!r} given but $CREDENTIALS_DIRECTORY is unset"
            )
        path = Path(directory) / ref.credential
    elif ref.file is not None:
        path = ref.file
    else:
        raise ConfigError(ref.key, "no secret given: a file or a systemd credential name")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(ref.key, f"cannot read {ref.describe()}: {exc.strerror}") from None


def read_secret(ref: SecretRef, env: Mapping[str, str] | None = None) -> bytes:
    """The secret's bytes, trailing whitespace (the file's newline) stripped."""
    return read_secret_raw(ref, env).rstrip()
