"""Framed reads and corked writes on paho's TCP socket, for the ingest hot path.

paho reads a packet with one `recv` for the command byte, one per remaining-length byte and one
for the rest, decodes it into an `MQTTMessage`, and writes each PUBACK with its own `send`:
profiling the gateway bench put those ~10 us per reading above verification and SQLite together.
So the hot path (`gateway.ingest.fastpath`) reads the socket itself, in large chunks, splits the
stream into MQTT packets (`next_packet`), handles QoS 0/1 PUBLISH packets itself and hands every
other packet to paho whole, through this wrapper:

- `feed` puts one complete packet where paho's next `recv` calls find it; paho never reads the
  socket itself (an empty wrapper says "would block"), so it never holds half a packet;
- `fail` makes paho's next read see the end of the connection (or an error), so paho closes the
  socket and reports the disconnect as it does on its own path;
- while `corked` (during a burst) writes are collected, and `flush` sends them with one call; if
  the socket cannot take them all, the rest stays in `unsent` and later writes queue behind it.

Only for a plain `socket.socket`: TLS connections keep paho's own reader.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

READ_SIZE = 65536  # one recv serves a whole burst of readings (~300 bytes each)
PUBLISH = 0x30


class MalformedPacket(ValueError):
    """A remaining length longer than MQTT's four bytes."""


def next_packet(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """(start of the variable header, end) of the packet at `pos`, or None if it is incomplete."""
    length = 0
    shift = 0
    i = pos + 1
    size = len(buf)
    while True:
        if i >= size:
            return None
        byte = buf[i]
        i += 1
        length += (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift == 28:
            raise MalformedPacket(f"remaining length at offset {pos} exceeds 4 bytes")
    end = i + length
    return (i, end) if end <= size else None


class BufferedSocket:
    """Wraps paho's non-blocking TCP socket; everything but recv and send is delegated to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._rbuf = b""
        self._rpos = 0
        self._end: OSError | None = None  # what paho sees once the fed bytes are read
        self._ended = False
        self._wbuf = bytearray()
        self.corked = False

    def __getattr__(self, name: str) -> Any:
        """fileno, setblocking, setsockopt, getpeername...: the socket's own."""
        return getattr(self.sock, name)

    @property
    def buffered(self) -> int:
        """Fed bytes paho has not read yet."""
        return len(self._rbuf) - self._rpos

    @property
    def unsent(self) -> int:
        """Bytes written that are not on the wire yet."""
        return len(self._wbuf)

    def feed(self, packet: bytes | bytearray) -> None:
        """Make one whole packet the next thing paho reads (after what is still buffered)."""
        rest = self._rbuf[self._rpos :]
        self._rbuf, self._rpos = rest + packet if rest else bytes(packet), 0

    def fail(self, error: OSError | None) -> None:
        """After the fed bytes, paho's reads see an error, or (None) the end of the stream."""
        self._end, self._ended = error, True

    def recv(self, buffer_size: int) -> bytes:
        """Up to `buffer_size` fed bytes; BlockingIOError if none (paho retries when fed again)."""
        pos = self._rpos
        have = len(self._rbuf) - pos
        if have == 0:
            if not self._ended:
                raise BlockingIOError
            if self._end is not None:
                raise self._end
            return b""
        if buffer_size >= have:
            data = self._rbuf[pos:] if pos else self._rbuf
            self._rbuf, self._rpos = b"", 0
            return data
        self._rpos = pos + buffer_size
        return self._rbuf[pos : pos + buffer_size]

    def send(self, buffer: bytes | bytearray) -> int:
        """Corked or behind unsent bytes: queued and reported as written. Otherwise `socket.send`."""
        if self.corked or self._wbuf:
            self._wbuf += buffer
            return len(buffer)
        return self.sock.send(buffer)

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def cork(self) -> None:
        """Collect writes until `corked` is cleared; `flush` sends them (corked or not)."""
        self.corked = True

    def flush(self) -> bool:
        """Send queued bytes as far as the socket takes them; True when none are left.

        A broken connection raises OSError, as `send` would.
        """
        if not self._wbuf:
            return True
        try:
            sent = self.sock.send(self._wbuf)
        except BlockingIOError:
            return False
        del self._wbuf[:sent]
        return not self._wbuf

    def close(self) -> None:
        """Send what is still queued if the socket takes it at once (a DISCONNECT may be behind
        PUBACKs), then close: paho closes its socket this way on every disconnect."""
        with contextlib.suppress(OSError):  # the connection is already gone
            self.flush()
        self._rbuf, self._rpos = b"", 0
        self._wbuf.clear()
        self.sock.close()
