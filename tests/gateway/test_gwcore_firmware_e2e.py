"""End to end: readings encoded by the firmware's own payload module, run in real MicroPython
(wasm), published through a real broker, verified and stored by the gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.mpy_wasm import run_micropython
from hil.services import MosquittoBroker

REPO = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))  # the key gw_config writes

ENCODE = """
import binascii, struct
import maps, payload
mac = payload.Hmac(binascii.unhexlify("%s"))
keys = maps.MAPS["sdm120"][3]
for seq in range(1, 11):
    r = {"u1_V": 230.0, "p1_W": 1000.0 + seq, "e_imp_kWh": 100.0 + seq / 100, "e_exp_kWh": 5.0}
    vals = bytearray(64)
    n = 0
    for i in range(len(keys)):
        if keys[i][0] in r:
            struct.pack_into(">f", vals, i * 4, r[keys[i][0]])
            n = i + 1
    out = payload.reading(mac, "node-01", seq, 1767225600 + 10 * seq, 0, "sdm120", keys, vals, n)
    print("R " + binascii.hexlify(out).decode())
online, will = payload.session(mac, "node-01", 1, 0)
print("S " + binascii.hexlify(online).decode())
print("W " + binascii.hexlify(will).decode())
print("H " + binascii.hexlify(payload.health(mac, "node-01", 1, 1, "power-on", 120, 0, 0, 0, 41000, "0.1.0")).decode())
"""


def test_micropython_encoded_readings_are_accepted(
    mosquitto: MosquittoBroker,
    gw_config: Callable[..., Path],
    gw_gateway: Callable,
    gw_topic: Callable[[str], str],
) -> None:
    result = run_micropython(ENCODE % KEY.hex(), libs=[REPO / "firmware" / "device"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    readings = [bytes.fromhex(h) for tag, h in zip(lines[::2], lines[1::2], strict=True) if tag == "R"]
    tagged = dict(zip(lines[::2], lines[1::2], strict=True))
    health, online, will = (bytes.fromhex(tagged[t]) for t in ("H", "S", "W"))
    assert len(readings) == 10

    gw = gw_gateway(gw_config(mosquitto.port, gateway_id=f"fw-e2e-{time.monotonic_ns() % 10**6}"))
    time.sleep(0.5)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-01-{time.monotonic_ns()}")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    infos = [client.publish(gw_topic("gridpact/meter/node-01/reading"), r, qos=1) for r in readings]
    infos.append(client.publish(gw_topic("gridpact/meter/node-01/health"), health, qos=1))
    infos.append(client.publish(gw_topic("gridpact/meter/node-01/status"), online, qos=1, retain=True))
    infos.append(client.publish(gw_topic("gridpact/meter/node-01/status"), will, qos=1))
    infos.append(client.publish(gw_topic("gridpact/meter/node-01/status"), b"online", qos=1))  # unsigned
    for info in infos:
        info.wait_for_publish(timeout=20)
    client.publish(gw_topic("gridpact/meter/node-01/status"), b"", qos=1, retain=True).wait_for_publish(
        timeout=20
    )
    client.disconnect()
    client.loop_stop()

    counts = gw.wait_total(15)
    assert counts[("reading",)] == 10, counts
    assert counts[("health",)] == 1 and counts[("status",)] == 2, counts
    assert counts[("status", "unsigned")] == 2, counts  # the plain online and the retained-clear
    assert gw.call(lambda: gw.runtime.store.status("node-01"))[0] == "offline"  # the will, not the fake
    store = gw.runtime.store
    batch = gw.call(lambda: store.hour_batch(1767225600))
    assert batch == readings
    first = json.loads(readings[0])
    assert first["r"]["e_imp_kWh"] == 100.01
    delta = gw.call(lambda: store.energy_between(1767225610, 1767225700))
    assert (delta.import_wh, delta.export_wh, delta.complete) == (90, 0, True)
