# pyright: reportMissingImports=false, reportAttributeAccessIssue=false
# ruff: noqa: SIM105  (MicroPython has no contextlib.suppress)
# The whole firmware main loop inside MicroPython (wasm): app.py, mqtt.py, ringbuf.py, modbus.py
# on MicroPython's own asyncio, with machine/network/ntptime from hil/wasm_board/memory (with hil/wasm_board/shims) and
# the MQTT link bridged through transport.open to an in-memory broker. CONFIG is prepended.
import asyncio
import binascii
import json
import os

import machine
import transport
import wasm_net

CONFIG = globals()["CONFIG"]
for d in ("/tmp", "/tmp/node"):
    try:
        os.mkdir(d)
    except OSError:
        pass
with open("/tmp/node/config.json", "w") as f:
    f.write(CONFIG)
machine.REGISTERS.update(
    {0: 230.1, 6: 5.0, 12: 1127.5, 18: 1150.5, 30: 0.98, 70: 50.01, 72: 1234.5, 74: 56.25}
)
broker = wasm_net.Broker()
transport.open = broker.open

import app  # noqa: E402  (after the seam is in place)

node = app.make("/tmp/node/")
assert node is not None, "config rejected"


async def scenario():
    task = asyncio.create_task(node.main())
    await asyncio.sleep(3.2)
    broker.down()  # the broker goes away for 3 s
    await asyncio.sleep(3)
    buffered = node.ring.count
    broker.up()
    await asyncio.sleep(3)
    machine.FAULT[0] = "crc"
    await asyncio.sleep(1)
    machine.FAULT[0] = "exception"
    await asyncio.sleep(1)
    machine.FAULT[0] = "timeout"
    await asyncio.sleep(1)
    machine.FAULT[0] = None
    await asyncio.sleep(2)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return buffered


buffered = await scenario()  # noqa: F704  # pyright: ignore  (top-level await: the runner allows it)
for topic, payload, retain, dup in broker.published:
    print("PUB", topic, binascii.hexlify(payload).decode(), int(retain), int(dup))
print(
    "STATS",
    json.dumps(
        {
            "buffered_in_outage": buffered,
            "connects": broker.connects,
            "errors": node.errors,
            "polls": node.polls,
            "faults": node.faults,
            "requests": len(machine.REQUESTS),
        }
    ),
)
