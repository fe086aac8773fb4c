"""Errors shared by the gateway's parts."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing or invalid; `key` names it (dotted path, e.g. `chain.rpc_url`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config error at {key!r}: {message}")
        self.key = key
        self.message = message
