"""Structured logs for journald: one line per event, `event=... key=value`, secrets never passed.

`ErrorLatch` logs a failing condition once and stays quiet until it recovers, so a broker that is
down for an hour gives two lines, not thousands.
"""

from __future__ import annotations

import logging
import sys

LOGGER = logging.getLogger("gridpact.gateway")


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def logfmt(event: str, **fields: object) -> str:
    return " ".join([f"event={_value(event)}"] + [f"{k}={_value(v)}" for k, v in fields.items()])


def log_event(level: int, event: str, **fields: object) -> None:
    LOGGER.log(level, logfmt(event, **fields))


class _Formatter(logging.Formatter):
    """`level=info event=...`: journald adds the timestamp and unit, so the line stays short."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"level={record.levelname.lower()} {record.getMessage()}"
        if record.exc_info:
            line += " exc=" + _value(self.formatException(record.exc_info).splitlines()[-1])
        return line


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiomqtt", "mqtt", "web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ErrorLatch:
    """Log an error once per condition, then nothing until `recover` logs its end."""

    def __init__(self) -> None:
        self._failing: set[str] = set()

    def fail(self, condition: str, **fields: object) -> bool:
        """Log the first failure of `condition`; True if it was logged."""
        if condition in self._failing:
            return False
        self._failing.add(condition)
        log_event(logging.ERROR, condition, **fields)
        return True

    def recover(self, condition: str, **fields: object) -> bool:
        if condition not in self._failing:
            return False
        self._failing.discard(condition)
        log_event(logging.INFO, condition + ".recovered", **fields)
        return True

    def failing(self, condition: str) -> bool:
        return condition in self._failing
