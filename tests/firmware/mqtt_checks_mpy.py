# pyright: reportMissingImports=false, reportAttributeAccessIssue=false
# ruff: noqa: UP031  (MicroPython code: %-formatting is the idiom there)
# The MQTT client on MicroPython's asyncio, against the in-memory broker of
# hil/wasm_board/memory (with hil/wasm_board/shims): PUBACK timeout and DUP resend, giving up, keepalive, refusals.
import asyncio

import mqtt
import transport
import wasm_net

count = 0


def check(cond, what):
    global count
    if not cond:
        raise AssertionError(what)
    count += 1


async def main():
    b = wasm_net.Broker()
    transport.open = b.open
    c = mqtt.Client("node-x", "h", 1883, None, "u", "pw", 2, "gp/meter/x/status", 200, 2)
    await c.connect(1000)
    check(c.up and b.connects == 1, "connected")
    flags = b.connect_packets[0][8]  # packet type byte, then "\x00\x04MQTT", level 4, flags
    check(
        flags == 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80,
        "clean, will QoS1 retained, user, password: %x" % flags,
    )
    check(await c.publish("a/b", b"x1"), "publish acked")
    check(b.published[-1] == ("a/b", b"x1", False, False), "first send has no DUP")

    b.withhold_acks = 1
    check(await c.publish("a/b", b"x2", True), "acked after one resend")
    x2 = [p for p in b.published if p[1] == b"x2"]
    check([p[3] for p in x2] == [False, True] and x2[1][2], "second send is DUP, retained kept")
    check(c.resent == 1, "resent counted")

    b.withhold_acks = 10
    check(not await c.publish("a/b", b"x3"), "gives up after retries")
    check(not c.up, "and drops the link")
    check(len([p for p in b.published if p[1] == b"x3"]) == 3, "1 + 2 retries")
    check(not await c.publish("a/b", b"x4"), "no publish while down")

    b.withhold_acks = 0
    await c.connect(1000)
    check(await c.publish("a/b", b"x5"), "works after reconnect")

    b.silent = True  # no PINGRESP, nothing: keepalive 2 s, dropped after 3 s of silence
    await asyncio.sleep(4)
    check(not c.up, "dead link noticed by keepalive")
    b.silent = False

    b.refuse = 5
    try:
        await c.connect(1000)
        check(False, "refused CONNACK accepted")
    except OSError:
        check(not c.up, "CONNACK refusal raises")
    b.refuse = 0
    b.down()
    try:
        await c.connect(1000)
        check(False, "connected to a broker that is down")
    except OSError:
        check(not c.up, "connection refused raises")
    b.up()
    await c.connect(1000)
    await c.disconnect()
    check(not c.up, "disconnect")


# a task of its own: the wasm top-level coroutine cannot take a thrown timeout
await asyncio.create_task(main())  # noqa: F704  # pyright: ignore  (top-level await: the runner allows it)
print("MQTT OK", count)
