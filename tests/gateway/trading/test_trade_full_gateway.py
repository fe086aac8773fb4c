"""The whole gateway twice: `gridpact gateway run --config FILE` for a seller and a buyer.

Each gateway ingests its meter's signed readings from Mosquitto (core's ingest and ReadingStore),
negotiates with the other over the community topics, signs and submits on anvil, reports from
its own verified readings and settles; SIGTERM then stops both cleanly.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
from trade_helpers import community_on, households
from trade_node import counters_at

from gridpact.core.wire import encode_reading
from hil.services import AnvilNode, MosquittoBroker

ROOT = Path(__file__).resolve().parents[3]
HMAC_HEX = "6b" * 32


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def gateway_toml(name: str, spec: dict[str, Any], state_dir: Path, broker_port: int) -> str:
    lines = [
        "[gateway]", f'id = "{name}"', f"state_dir = {json.dumps(str(state_dir))}", 'log_level = "info"',
        "[meter]", f'device_id = "meter-{name}"', 'model = "sdm120"', 'topic_prefix = "gridpact"',
        f'hmac_key_file = "{name}.hmac"',
        "[meter_broker]", 'host = "127.0.0.1"', f"port = {broker_port}", "tls = false",
        "[storage]", "retention_days = 30", "max_gap_s = 120",
        "[metrics]", "enabled = false",
    ]  # fmt: skip
    for table, values in spec["tables"].items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


async def meters(port: int, specs: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Each household's meter node: one signed reading per second on its reading topic."""
    key = bytes.fromhex(HMAC_HEX)
    async with aiomqtt.Client("127.0.0.1", port) as client:
        while not stop.is_set():
            ts = int(time.time())
            for spec in specs:
                dev = f"meter-{spec['name']}"
                imp, exp = counters_at(spec["meter"]["profile"], spec["meter"]["t0"], ts)
                payload = encode_reading(key, dev, ts - int(spec["meter"]["t0"]) + 1, ts, 0, "sdm120",
                                         {"e_imp_kWh": round(imp, 4), "e_exp_kWh": round(exp, 4)})  # fmt: skip
                await client.publish(f"gridpact/meter/{dev}/reading", payload, qos=1)
            await asyncio.sleep(ts + 1 - time.time() + 0.01)


def test_two_full_gateways_trade_and_settle(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    com = community_on(mined_anvil)
    specs = households(tmp_path, com, mosquitto.port, 1_200_000, mined_anvil.info.url)
    configs = []
    for spec in specs:
        (tmp_path / f"{spec['name']}.hmac").write_text(HMAC_HEX + "\n")
        config = tmp_path / f"{spec['name']}.toml"
        config.write_text(gateway_toml(spec["name"], spec, tmp_path / spec["name"], mosquitto.port))
        configs.append(config)
    gridpact = str(ROOT / ".venv" / "bin" / "gridpact")
    logs = [open(tmp_path / f"{s['name']}.log", "wb") for s in specs]  # noqa: SIM115
    procs = [subprocess.Popen([gridpact, "gateway", "run", "--config", str(c)], stdout=log, stderr=log)
             for c, log in zip(configs, logs, strict=True)]  # fmt: skip

    async def main() -> None:
        stop = asyncio.Event()
        feeder = asyncio.create_task(meters(mosquitto.port, specs, stop))
        deadline = time.monotonic() + 50
        while time.monotonic() < deadline and not com.settled_events():
            await asyncio.sleep(0.5)
            assert all(p.poll() is None for p in procs), "a gateway exited"
        stop.set()
        await feeder

    try:
        asyncio.run(main())
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
        for log in logs:
            log.close()
    output = "".join((tmp_path / f"{s['name']}.log").read_text(errors="replace")[-3000:] for s in specs)
    settled = com.settled_events()
    assert settled, output
    assert settled[0]["args"]["deliveredWh"] == 1000
    assert codes == [0, 0], output  # SIGTERM: a clean stop
