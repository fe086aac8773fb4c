"""Errors shared by the gateway's parts."""

from __future__ import annotations

from gridpact.core.config import ConfigError  # one config error style for every part

__all__ = ["ConfigError"]
