"""Transports: Modbus TCP (asyncio streams) and Modbus RTU on a serial device or pty (pyserial).

A transport finds the meter by unit id at each request (a meter may change its id), asks
`reply_for` what to say and says it. Nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import serial

from meter_sim import codec
from meter_sim.inverter import Inverter
from meter_sim.meter import Meter
from meter_sim.requests import Reply, reply_for

log = logging.getLogger("meter_sim")


@dataclass
class EndpointStats:
    """Counted outcomes, so bad input is visible without a crash."""

    counts: Counter[str] = field(default_factory=Counter)

    def count(self, what: str) -> None:
        self.counts[what] += 1


def _find(meters: Sequence[Meter], unit: int) -> Meter | None:
    return next((m for m in meters if m.unit_id == unit), None)


class TcpEndpoint:
    """Modbus TCP server for one or more meters (unit ids), and the battery inverters of their
    households under their own unit ids; unknown unit: exception 0x0B."""

    def __init__(
        self, meters: Sequence[Meter], host: str, port: int, seed: int = 0, inverters: Sequence[Inverter] = ()
    ) -> None:
        self.meters, self.host, self.port = list(meters), host, port
        self.inverters = {inv.unit_id: inv for inv in inverters}
        self.stats = EndpointStats()
        self.rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def ready_line(self) -> str:
        return f"meter-sim ready tcp {self.host}:{self.port} units={len(self.meters)}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, protocol, length, unit = codec.parse_mbap(header)
                if protocol != 0 or not 2 <= length <= 254:
                    self.stats.count("rejected_mbap")  # framing lost: drop this connection only
                    break
                pdu = await reader.readexactly(length - 1)
                await self._answer(writer, tid, unit, pdu)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client gone, or the server stopping: end this handler quietly
        except Exception:  # a bug must not take the server down; it is logged and counted
            log.exception("tcp client handler failed")
            self.stats.count("internal_error")
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter, tid: int, unit: int, pdu: bytes) -> None:
        self.stats.count("requests")
        inverter = self.inverters.get(unit)
        if inverter is not None:
            answer = inverter.answer(pdu)
            self.stats.count("exceptions" if answer[0] & 0x80 else "answered")
            writer.write(codec.mbap(tid, unit, answer))
            await writer.drain()
            return
        meter = _find(self.meters, unit)
        if meter is None and unit in (0, 255) and len(self.meters) == 1:
            meter = self.meters[0]  # TCP: 0 and 255 address "the device behind this socket"
        if meter is None:
            self.stats.count("unknown_unit")
            writer.write(codec.mbap(tid, unit, codec.exception_pdu(pdu[0] if pdu else 0, 0x0B)))
            return
        reply = reply_for(meter, pdu, rng=self.rng)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.silent:
            self.stats.count("silent")
        elif reply.raw:
            self.stats.count("garbage")
            writer.write(reply.raw)
        else:
            self.stats.count("exceptions" if reply.is_exception else "answered")
            writer.write(codec.mbap(tid, unit, reply.pdu))
        await writer.drain()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=2.0)
            await self._server.wait_closed()
            self._server = None


PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


def frame_gap_s(baud: int) -> float:
    """Modbus RTU's 3.5 character silence that ends a frame (11 bits a character), at least 2 ms."""
    return max(3.5 * 11.0 / baud, 0.002)


def reopen_delay_s(attempt: int) -> float:
    """Backoff between attempts to reopen a lost serial device: 0.5 s doubling to 30 s."""
    return min(30.0, 0.5 * 2 ** min(attempt, 6))


class RtuEndpoint:
    """Modbus RTU on a serial device: several meters share the bus, each answers only its unit id."""

    def __init__(
        self,
        meters: Sequence[Meter],
        device: str,
        baud: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        seed: int = 0,
    ) -> None:
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of N, E, O, not {parity!r}")
        self.meters, self.device, self.baud, self.parity, self.stopbits = (
            list(meters),
            device,
            baud,
            parity,
            stopbits,
        )
        self.stats = EndpointStats()
        self.rng = random.Random(seed)
        self._port: serial.Serial | None = None
        self._buf = bytearray()
        self._gap: asyncio.TimerHandle | None = None
        self._frames: asyncio.Queue[bytes] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._reopen: asyncio.Task[None] | None = None

    @property
    def ready_line(self) -> str:
        return f"meter-sim ready rtu {self.device} units={len(self.meters)}"

    async def start(self) -> None:
        """Open the device (failing here is the caller's error) and serve it."""
        self._open()
        self._worker = asyncio.create_task(self._serve(), name=f"rtu-serve {self.device}")

    def _open(self) -> None:
        self._port = serial.Serial(
            self.device,
            baudrate=self.baud,
            parity=PARITIES[self.parity],
            stopbits=serial.STOPBITS_TWO if self.stopbits == 2 else serial.STOPBITS_ONE,
            timeout=0,
            write_timeout=2,
        )
        asyncio.get_running_loop().add_reader(self._port.fileno(), self._readable)

    def _close_port(self) -> None:
        if self._port is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._port.fileno())
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None

    def _lost(self, why: str) -> None:
        """The device went away (a pty whose other end closed, a USB adapter pulled out): a ready
        but empty or failing read would otherwise wake the loop forever. Report once, stop
        watching it and reopen it with backoff until it is back."""
        self._close_port()
        self.stats.count("device_lost")
        self._buf.clear()
        log.warning("meter-sim: serial device %s lost (%s); retrying with backoff", self.device, why)
        if self._reopen is None or self._reopen.done():
            self._reopen = asyncio.get_running_loop().create_task(self._reopen_loop(), name="rtu-reopen")

    async def _reopen_loop(self) -> None:
        attempt = 0
        while True:
            await asyncio.sleep(reopen_delay_s(attempt))
            attempt += 1
            try:
                self._open()
            except (serial.SerialException, OSError, ValueError):
                continue  # still gone: quiet until it is back
            log.warning("meter-sim: serial device %s is back after %d attempts", self.device, attempt)
            self.stats.count("device_back")
            return

    def _readable(self) -> None:
        assert self._port is not None
        try:
            data = self._port.read(4096)
        except (serial.SerialException, OSError) as exc:
            self.stats.count("read_error")
            self._lost(str(exc) or type(exc).__name__)
            return
        if not data:
            self._lost("end of file")
            return
        self._buf += data
        self._cut_frames()
        if self._gap is not None:
            self._gap.cancel()
        if self._buf:
            self._gap = asyncio.get_running_loop().call_later(frame_gap_s(self.baud), self._silence)

    def _cut_frames(self) -> None:
        """Take complete, CRC-valid requests of known length off the buffer as they arrive."""
        while True:
            need = codec.rtu_request_length(self._buf)
            if need is None or len(self._buf) < need:
                return
            if codec.rtu_split(bytes(self._buf[:need])) is None:
                return  # not a valid frame here: the silence after it decides
            self._frames.put_nowait(bytes(self._buf[:need]))
            del self._buf[:need]

    def _silence(self) -> None:
        """A 3.5 character gap ends the frame: whatever is buffered is one frame, valid or not."""
        self._gap = None
        frame, self._buf = bytes(self._buf), bytearray()
        if frame:
            self._frames.put_nowait(frame)

    async def _serve(self) -> None:
        while True:
            frame = await self._frames.get()
            try:
                await self._answer(frame)
            except Exception:  # never let one frame stop the bus
                log.exception("rtu frame handler failed")
                self.stats.count("internal_error")

    async def _answer(self, frame: bytes) -> None:
        split = codec.rtu_split(frame)
        if split is None:
            self.stats.count("bad_crc_or_short")  # a real meter stays silent
            return
        unit, pdu = split
        self.stats.count("requests")
        if unit == 0:
            for meter in self.meters:
                reply_for(meter, pdu, broadcast=True, rng=self.rng)
            self.stats.count("broadcast")
            return
        meter = _find(self.meters, unit)
        if meter is None:
            self.stats.count("other_unit")
            return
        reply = reply_for(meter, pdu, rng=self.rng)
        await self._send(unit, reply)

    async def _send(self, unit: int, reply: Reply) -> None:
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.silent or self._port is None:
            self.stats.count("silent")
            return
        if reply.raw:
            self.stats.count("garbage")
            out = reply.raw
        else:
            out = codec.rtu_frame(unit, reply.pdu)
            if reply.bad_crc:
                out = out[:-2] + struct.pack("<H", struct.unpack("<H", out[-2:])[0] ^ 0xFFFF)
                self.stats.count("bad_crc_sent")
            else:
                self.stats.count("exceptions" if reply.is_exception else "answered")
        try:
            self._port.write(out)
        except (serial.SerialException, OSError) as exc:
            self._lost(str(exc) or type(exc).__name__)

    async def stop(self) -> None:
        if self._gap is not None:
            self._gap.cancel()
        for task in (self._worker, self._reopen):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._close_port()
