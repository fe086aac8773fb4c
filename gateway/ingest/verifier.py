"""Stateful receiver checks: device keys and sequence numbers (replayed, duplicate)."""

from __future__ import annotations

from collections.abc import Mapping

from gridpact.core.wire import Reading, Rejected, TagChecker, parse_body, parse_canonical


class ReadingVerifier:
    """Accepts a payload only if its device is known, its tag is right and its seq is new.

    `last_seq` starts from the store, so the check survives a gateway restart.
    """

    def __init__(self, keys: Mapping[str, bytes], last_seq: Mapping[str, int]) -> None:
        self._checkers = {dev: TagChecker(key) for dev, key in keys.items()}
        self.last_seq: dict[str, int] = dict(last_seq)

    def knows(self, dev: str) -> bool:
        return dev in self._checkers

    def check(self, topic_dev: str, payload: bytes) -> Reading:
        """The verified reading, or Rejected with the reason to count."""
        checker = self._checkers.get(topic_dev)
        if checker is None:
            raise Rejected("unknown_device", f"no key for device {topic_dev[:40]!r}")
        body = checker.check(payload)
        reading = parse_canonical(body, payload) or parse_body(payload)
        if reading.dev != topic_dev:
            raise Rejected("malformed", f"device {reading.dev!r} published on the topic of {topic_dev!r}")
        last = self.last_seq.get(reading.dev)
        if last is not None and reading.seq <= last:
            reason = "duplicate" if reading.seq == last else "replayed"
            raise Rejected(reason, f"seq {reading.seq} not above {last}")
        return reading

    def accept(self, reading: Reading) -> None:
        """Record a reading as accepted (after it was stored)."""
        self.last_seq[reading.dev] = reading.seq
