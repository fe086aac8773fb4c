"""Stateful receiver checks: device keys, sequence numbers (replayed, duplicate) and control marks."""

from __future__ import annotations

from collections.abc import Mapping

from gridpact.core.wire import (
    Control,
    ControlMarks,
    Reading,
    Rejected,
    TagChecker,
    control_marks,
    parse_body,
    parse_canonical,
    parse_control,
)


class ReadingVerifier:
    """Accepts a payload only if its device is known, its tag is right and its seq is new.

    `last_seq` starts from the store, so the check survives a gateway restart.
    """

    def __init__(self, keys: Mapping[str, bytes], last_seq: Mapping[str, int]) -> None:
        self._checkers = {dev: TagChecker(key) for dev, key in keys.items()}
        self.last_seq: dict[str, int] = dict(last_seq)

    def knows(self, dev: str) -> bool:
        return dev in self._checkers

    def checker(self, dev: str) -> TagChecker | None:
        """The device's tag checker (status and health are signed with the same key)."""
        return self._checkers.get(dev)

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


class ControlVerifier:
    """Status and health of the known nodes: tagged with the node's key, and never older than the
    newest accepted (`gridpact.core.wire.control_marks`). The marks start from the store, so a
    replay stays refused after a gateway restart."""

    def __init__(self, readings: ReadingVerifier, marks: Mapping[str, ControlMarks]) -> None:
        self._readings = readings
        self.marks: dict[str, ControlMarks] = dict(marks)

    def check(self, kind: str, topic_dev: str, payload: bytes) -> tuple[Control, ControlMarks]:
        """The verified message and the marks once it is accepted, or Rejected with the reason."""
        checker = self._readings.checker(topic_dev)
        if checker is None:
            raise Rejected("unknown_device", f"no key for device {topic_dev[:40]!r}")
        msg = parse_control(kind, checker, payload)
        if msg.dev != topic_dev:
            raise Rejected("malformed", f"{kind} of {msg.dev!r} on the topic of {topic_dev!r}")
        return msg, control_marks(self.marks.get(topic_dev, ControlMarks()), msg)

    def accept(self, dev: str, marks: ControlMarks) -> None:
        """Record the marks (after they were stored)."""
        self.marks[dev] = marks
