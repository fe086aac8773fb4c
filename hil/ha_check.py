"""A real Home Assistant against gridpact's MQTT discovery: `./tasks ha-check` (docs/home-assistant.md).

Home Assistant Core runs from its own environment (`.venv-ha`: it needs a newer Python than a Pi
may have), with a throwaway configuration. Mosquitto, two virtual meter nodes (the unmodified
firmware on `VirtualBoard`, an SDM120 and an SDM630, fed by meter_sim meters) and a gateway process
with `[homeassistant]` on publish to it; the MQTT integration is added through its config flow as a
user would. Everything is then asked of Home Assistant through its own REST and websocket APIs:
which entities exist, their classes, units, state classes, categories and values, the device
links, the Energy dashboard's validation, and availability on the gateway's and a node's last will.

Not part of `./tasks test`: the install is large and the first statistics compile of Home Assistant
(every 5 minutes on the clock) bounds how soon the Energy validation can pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridpact.core.signals import sigterm_interrupts
from hil.services import REPO_ROOT, MosquittoBroker, free_port, spawn

GATEWAY_ID = "home-1"
CURRENCY = "kWt"
NODES = (
    ("ha-120", "sdm120", "constant:load_w=2300,pv_w=0"),
    ("ha-630", "sdm630", "constant:load_w=900,pv_w=3000"),
)
HMAC_KEY = bytes(range(32))


def stats_wait(now: float) -> float:
    """Seconds to wait at most for Home Assistant's statistics compile, which runs every 5 minutes
    of the clock (:00:10, :05:10, ...) over the 5 minutes before: the first one after the entities
    had 30 s to be recorded, plus a margin for the compile itself."""
    to_next = 300.0 - (now - 10.0) % 300.0
    return to_next + (300.0 if to_next < 30.0 else 0.0) + 30.0


class CheckFailed(AssertionError):
    """One thing Home Assistant did not do as expected: the message says what."""


def _wait(pred: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# ---------------------------------------------------------------- Home Assistant as a child process


# frontend: 2025.4 loads it by default, 2024.1 only when asked; it brings onboarding and the config API
CONFIGURATION = """\
homeassistant:
  name: gridpact check
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
http:
  server_host: 127.0.0.1
  server_port: {port}
recorder:
  commit_interval: 1
energy:
frontend:
logger:
  default: warning
"""


class HomeAssistant:
    """`python -m homeassistant -c DIR` from the given environment; REST helpers once onboarded."""

    def __init__(self, python: Path, workdir: Path) -> None:
        self.python = python
        self.config_dir = workdir / "ha-config"
        self.config_dir.mkdir()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.log_path = workdir / "ha.log"
        self.proc: subprocess.Popen[bytes] | None = None
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))

    def start(self, timeout: float) -> float:
        """Start it and wait until onboarding answers; returns the seconds that took."""
        t0 = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        # --skip-pip: everything it needs is installed by ./tasks ha-check; a check never downloads
        args = [str(self.python), "-m", "homeassistant", "-c", str(self.config_dir), "--skip-pip"]
        self.proc = spawn(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise CheckFailed(f"Home Assistant exited with {self.proc.returncode}:\n{self.log_tail()}")
            # refused, or 404 while the HTTP server is up before onboarding is (seen in 2024.1)
            with contextlib.suppress(OSError, ValueError, CheckFailed):
                return isinstance(self.request("GET", "/api/onboarding", auth=False), list)
            return False

        try:
            _wait(ready, timeout, "Home Assistant's HTTP API", 0.25)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}\n{self.log_tail()}") from None
        return time.monotonic() - t0

    def log_tail(self, n: int = 30) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(lines[-n:])

    def complaints(self) -> list[str]:
        """Log lines where Home Assistant turned down or warned about something of ours: errors of
        MQTT or the sensors (a rejected discovery payload), any warning or error naming gridpact."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        out = []
        for ln in text.splitlines():
            bad = " ERROR " in ln or " WARNING " in ln
            if bad and ("gridpact" in ln or (" ERROR " in ln and ("mqtt" in ln or "sensor" in ln))):
                out.append(ln)
        return out

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` s; returns the exit code once the process is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace or 0.001)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, 0)
            raise CheckFailed(f"Home Assistant (pid {proc.pid}) is still there after its stop")
        return proc.returncode

    def request(self, method: str, path: str, body: Any = None, auth: bool = True, form: bool = False) -> Any:
        data, headers = None, {}
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise CheckFailed(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None

    def onboard(self) -> None:
        """Create the owner as the onboarding page does and log in with the code it returns."""
        client_id = self.base + "/"
        user = {"client_id": client_id, "name": "gridpact", "username": "gridpact",
                "password": "gridpact-ha-check", "language": "en"}  # fmt: skip
        code = self.request("POST", "/api/onboarding/users", user, auth=False)["auth_code"]
        grant = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
        self.token = self.request("POST", "/auth/token", grant, auth=False, form=True)["access_token"]

    def add_mqtt(self, host: str, port: int) -> dict[str, Any]:
        """The MQTT integration through its config flow (the broker step), as in the UI."""
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("type") != "form" or flow.get("step_id") != "broker":
            raise CheckFailed(f"MQTT config flow did not ask for the broker: {flow}")
        done = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                            {"broker": host, "port": port})  # fmt: skip
        if done.get("type") != "create_entry":
            raise CheckFailed(f"MQTT config flow did not create the entry: {done}")
        return done


class Websocket:
    """Home Assistant's websocket API, one command at a time."""

    def __init__(self, ha: HomeAssistant) -> None:
        from websockets.sync.client import connect

        self.conn = connect(
            f"ws://127.0.0.1:{ha.port}/api/websocket", max_size=None, open_timeout=30, close_timeout=1
        )
        self.next_id = 1
        hello = json.loads(self.conn.recv(30))
        self.version = str(hello.get("ha_version"))
        self.conn.send(json.dumps({"type": "auth", "access_token": ha.token}))
        if json.loads(self.conn.recv(30)).get("type") != "auth_ok":
            raise CheckFailed("websocket authentication failed")

    def call(self, kind: str, **fields: Any) -> Any:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        self.conn.send(json.dumps({"id": msg_id, "type": kind, **fields}))
        while True:
            reply = json.loads(self.conn.recv(60))
            if reply.get("id") == msg_id and reply.get("type") == "result":
                break
        if not reply.get("success"):
            raise CheckFailed(f"{kind} failed: {reply.get('error')}")
        return reply.get("result")

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------- what publishes to it


@dataclass
class Node:
    dev: str
    model: str
    board: Any  # hil.virtual_board.VirtualBoard


def start_nodes(host: str, port: int, workdir: Path) -> list[Node]:
    """The unmodified firmware on virtual boards, each reading a meter_sim meter over Modbus RTU."""
    from gridpact.core.clock import SystemClock
    from hil.community.nodes import firmware_config
    from hil.virtual_board import VirtualBoard
    from hil.wiring import RegisterUart
    from meter_sim.maps import load_map
    from meter_sim.meter import Meter

    nodes = []
    for dev, model, profile in NODES:
        meter = Meter(load_map(model), 1, profile, SystemClock(), name=dev)
        cfg = firmware_config(dev, HMAC_KEY, host, port, poll_s=5)
        cfg.update(health_s=5, ntp_hold_s=0)
        cfg["meter"]["model"] = model
        board = VirtualBoard(
            cfg, RegisterUart(meter.registers, model), workdir / dev, clock=SystemClock(), name=dev
        )
        board.start()
        nodes.append(Node(dev, model, board))
    return nodes


def gateway_config(workdir: Path, port: int, node: str) -> Path:
    (workdir / "meter.key").write_text(HMAC_KEY.hex() + "\n")
    path = workdir / "gateway.toml"
    path.write_text(f"""
[gateway]
id = "{GATEWAY_ID}"
state_dir = "gw-state"

[meter]
device_id = "{node}"
hmac_key_file = "meter.key"

[meter_broker]
host = "127.0.0.1"
port = {port}

[metrics]
enabled = false

[homeassistant]
enabled = true
currency = "{CURRENCY}"
interval_s = 1.0
""")
    return path


def start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with open(log, "ab") as out:
        return spawn([sys.executable, "-m", "gridpact.cli", "gateway", "run", "--config", str(config)],
                     stdout=out, stderr=out, env=env, stdin=subprocess.DEVNULL)  # fmt: skip


# ---------------------------------------------------------------- the assertions


@dataclass(frozen=True)
class Seen:
    """One entity as Home Assistant holds it, beside the discovery config that created it."""

    uid: str
    entity_id: str
    device: str
    state: str
    device_class: str | None
    unit: str | None
    state_class: str | None
    category: str | None
    config: dict[str, Any]


# Independent of the payload builders: what a household must get (unique id suffix -> class, unit, state class)
MUST = {
    "gridpact_ha-120_e_imp_kWh": ("energy", "kWh", "total_increasing", None),
    "gridpact_ha-120_e_exp_kWh": ("energy", "kWh", "total_increasing", None),
    "gridpact_ha-630_e_imp_kWh": ("energy", "kWh", "total_increasing", None),
    "gridpact_ha-630_u3_V": ("voltage", "V", "measurement", None),
    "gridpact_ha-630_p_W": ("power", "W", "measurement", None),
    "gridpact_ha-120_pf1": ("power_factor", None, "measurement", None),
    "gridpact_ha-120_f_Hz": ("frequency", "Hz", "measurement", None),
    "gridpact_ha-120_health_up_s": ("duration", "s", "measurement", "diagnostic"),
    "gridpact_ha-120_health_mem": ("data_size", "B", "measurement", "diagnostic"),
    "gridpact_ha-630_health_drop": (None, None, "total_increasing", "diagnostic"),
    "gridpact_ha-630_health_reset": (None, None, None, "diagnostic"),
    f"gridpact_gw_{GATEWAY_ID}_p2p_bought": ("energy", "kWh", "total_increasing", None),
    f"gridpact_gw_{GATEWAY_ID}_p2p_sold": ("energy", "kWh", "total_increasing", None),
    f"gridpact_gw_{GATEWAY_ID}_token_balance": ("monetary", CURRENCY, "total", None),
    f"gridpact_gw_{GATEWAY_ID}_tokens_refunded": ("monetary", CURRENCY, "total", None),
    f"gridpact_gw_{GATEWAY_ID}_agent_state": ("enum", None, None, None),
    f"gridpact_gw_{GATEWAY_ID}_next_start": ("timestamp", None, None, None),
}
COUNTS = {"gridpact_ha-120": 8 + 7, "gridpact_ha-630": 16 + 7, f"gridpact_gw_{GATEWAY_ID}": 15}
# An ingest-only gateway: nothing traded, balance unknown (never 0), agent off, and no next
# agreement, so those entities are unavailable (never a `None` state: HA 2024 shows it as a word)
GATEWAY_STATES = {
    "p2p_bought": "0.0", "p2p_sold": "0.0", "token_balance": "unknown", "tokens_earned": "0.0",
    "tokens_paid": "0.0", "tokens_refunded": "0.0", "agent_state": "off", "next_start": "unavailable",
    "next_end": "unavailable", "next_peer": "unavailable", "next_role": "unavailable",
    "next_quantity": "unavailable", "next_price": "unavailable", "open_agreements": "0", "open_disputes": "0",
}  # fmt: skip


def entities(ws: Websocket) -> tuple[dict[str, Seen], dict[str, dict[str, Any]]]:
    """Our entities by unique id, and the devices by their gridpact identifier."""
    registry = [e for e in ws.call("config/entity_registry/list") if e.get("platform") == "mqtt"]
    states = {s["entity_id"]: s for s in ws.call("get_states")}
    devices: dict[str, dict[str, Any]] = {}
    by_id: dict[str, str] = {}
    for d in ws.call("config/device_registry/list"):
        for domain, ident in d.get("identifiers", []):
            if domain == "mqtt" and ident.startswith("gridpact_"):
                devices[ident] = d
                by_id[d["id"]] = ident
    out = {}
    for e in registry:
        st = states.get(e["entity_id"])
        if st is None or not str(e.get("unique_id", "")).startswith("gridpact_"):
            continue
        a = st["attributes"]
        out[e["unique_id"]] = Seen(
            e["unique_id"], e["entity_id"], by_id.get(e.get("device_id") or "", "?"), st["state"],
            a.get("device_class"), a.get("unit_of_measurement"), a.get("state_class"), e.get("entity_category"), {},
        )  # fmt: skip
    return out, devices


def check_entities(seen: dict[str, Seen], configs: dict[str, dict[str, Any]]) -> list[str]:
    """Every published config became an entity with its class, unit, state class and category."""
    problems = []
    for uid, cfg in sorted(configs.items()):
        s = seen.get(uid)
        if s is None:
            problems.append(f"{uid}: no entity (Home Assistant rejected or ignored its config)")
            continue
        want = (cfg.get("device_class"), cfg.get("unit_of_measurement"), cfg.get("state_class"),
                cfg.get("entity_category"))  # fmt: skip
        got = (s.device_class, s.unit, s.state_class, s.category)
        if want != got:
            problems.append(f"{uid}: published {want}, Home Assistant has {got}")
    for uid, want in MUST.items():
        s = seen.get(uid)
        if s is not None and (s.device_class, s.unit, s.state_class, s.category) != want:
            problems.append(
                f"{uid}: expected {want}, got {(s.device_class, s.unit, s.state_class, s.category)}"
            )
        elif s is None:
            problems.append(f"{uid}: missing")
    for device, n in COUNTS.items():
        got = sum(1 for s in seen.values() if s.device == device)
        if got != n:
            problems.append(f"device {device}: {got} entities, expected {n}")
    return problems


def check_values(seen: dict[str, Seen], readings: dict[str, list[dict[str, Any]]],
                 health: dict[str, list[dict[str, Any]]]) -> list[str]:  # fmt: skip
    """Node values equal what the node published (one of its recent messages); gateway values as
    an ingest-only gateway publishes them."""
    problems = []
    for uid, s in seen.items():
        if uid.startswith(f"gridpact_gw_{GATEWAY_ID}_"):
            want = GATEWAY_STATES[uid.removeprefix(f"gridpact_gw_{GATEWAY_ID}_")]
            if s.state != want:
                problems.append(f"{uid}: state {s.state!r}, expected {want!r}")
            continue
        dev, _, key = uid.removeprefix("gridpact_").partition("_")
        if key.startswith("health_"):
            key, pool = key.removeprefix("health_"), health.get(dev, [])
        else:
            pool = [r["r"] for r in readings.get(dev, [])]
        values = [m[key] for m in pool if key in m]
        if not values:
            problems.append(f"{uid}: the node never published {key}")
        elif isinstance(values[0], str):
            if s.state not in values:
                problems.append(f"{uid}: state {s.state!r} not among the published {values[-3:]}")
        else:
            try:
                v = float(s.state)
            except ValueError:
                problems.append(f"{uid}: state {s.state!r} is not a number")
                continue
            if not any(abs(v - float(x)) <= 1e-6 * max(1.0, abs(float(x))) for x in values):
                problems.append(f"{uid}: state {v} not among the published {values[-3:]}")
    return problems


def energy_prefs(seen: dict[str, Seen]) -> dict[str, Any]:
    """The household's grid flows: the SDM120's import/export plus what peers supplied and took;
    the SDM630 as an individual device's consumption."""

    def eid(uid: str) -> str:
        return seen[uid].entity_id

    gw = f"gridpact_gw_{GATEWAY_ID}"
    flow_from = [{"stat_energy_from": eid(u), "stat_cost": None, "entity_energy_price": None,
                  "number_energy_price": None} for u in ("gridpact_ha-120_e_imp_kWh", f"{gw}_p2p_bought")]  # fmt: skip
    flow_to = [{"stat_energy_to": eid(u), "stat_compensation": None, "entity_energy_price": None,
                "number_energy_price": None} for u in ("gridpact_ha-120_e_exp_kWh", f"{gw}_p2p_sold")]  # fmt: skip
    return {
        "energy_sources": [
            {"type": "grid", "flow_from": flow_from, "flow_to": flow_to, "cost_adjustment_day": 0}
        ],
        "device_consumption": [{"stat_consumption": eid("gridpact_ha-630_e_imp_kWh")}],
    }


def issues_of(result: dict[str, Any]) -> list[str]:
    """energy/validate's answer as "type: entity, entity" lines (affected entities come as
    [entity id, value] pairs)."""
    out = []
    for part in ("energy_sources", "device_consumption"):
        for group in result.get(part, []):
            for issue in group:
                names = [
                    str(a[0]) if isinstance(a, list) and a else str(a)
                    for a in issue.get("affected_entities", [])
                ]
                out.append(f"{issue['type']}: {', '.join(sorted(names))}")
    return out


# ---------------------------------------------------------------- the run


class Report:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {text}", flush=True)


def _table(seen: dict[str, Seen], devices: dict[str, dict[str, Any]]) -> str:
    rows = [("entity", "device class", "unit", "state class", "category", "state")]
    for s in sorted(seen.values(), key=lambda s: (s.device, s.category or "", s.uid)):
        rows.append((s.entity_id, s.device_class or "-", s.unit or "-", s.state_class or "-",
                     s.category or "-", s.state[:24]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def run(ha_python: Path, keep: Path | None) -> int:
    rep = Report()
    workdir = Path(tempfile.mkdtemp(prefix="gridpact-ha-check-"))
    ha = HomeAssistant(ha_python, workdir)
    broker = MosquittoBroker()
    nodes: list[Node] = []
    gateway: subprocess.Popen[bytes] | None = None
    tap: Any = None
    ws: Websocket | None = None
    try:
        broker.start()
        rep.say(f"Mosquitto on 127.0.0.1:{broker.port}")
        took = ha.start(180)
        rep.say(f"Home Assistant answers on {ha.base} after {took:.1f} s")
        ha.onboard()
        sock = ws = Websocket(ha)
        rep.say(f"onboarded; Home Assistant {sock.version} on Python {_python_version(ha_python)}")
        ha.add_mqtt("127.0.0.1", broker.port)
        rep.say("MQTT integration added through its config flow")

        from hil.subscriber import MqttTap

        tap = MqttTap("127.0.0.1", broker.port, ["gridpact/#", "homeassistant/sensor/#"], "ha-check-tap")
        nodes = start_nodes("127.0.0.1", broker.port, workdir)
        rep.say(f"nodes {', '.join(f'{n.dev} ({n.model})' for n in nodes)} started")
        # As in a household, the node is there before its gateway: Home Assistant links a device to
        # its via_device only if that device exists when it first sees it (2024.1 does not catch up
        # later, until its next restart)
        _wait(lambda: all(f"gridpact_{d}" in entities(sock)[1] for d, _, _ in NODES), 60,
              "Home Assistant to know the node devices", 0.5)  # fmt: skip
        gateway = start_gateway(gateway_config(workdir, broker.port, NODES[0][0]), workdir / "gateway.log")
        rep.say(f"node devices in Home Assistant; gateway {GATEWAY_ID} started")

        def configs() -> dict[str, dict[str, Any]]:
            out = {}
            for t, p, _ in list(tap.messages):
                if t.startswith("homeassistant/sensor/") and t.endswith("/config") and p:
                    out[json.loads(p)["unique_id"]] = json.loads(p)
            return out

        want_total = sum(COUNTS.values())
        _wait(lambda: len(configs()) >= want_total, 60, f"{want_total} discovery configs")

        def readings() -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
            r: dict[str, list[dict[str, Any]]] = {}
            h: dict[str, list[dict[str, Any]]] = {}
            for t, p, _ in list(tap.messages):
                parts = t.split("/")
                if len(parts) == 4 and parts[1] == "meter" and p:
                    if parts[3] == "reading":
                        r.setdefault(parts[2], []).append(json.loads(p))
                    elif parts[3] == "health":
                        h.setdefault(parts[2], []).append(json.loads(p))
            return r, h

        def settled() -> bool:
            seen, _ = entities(sock)
            r, h = readings()
            return len(seen) >= want_total and not check_values(seen, r, h)

        # what is wrong with the entities is collected, and the run goes on to the Energy dashboard and
        # the last wills, so one run shows everything a Home Assistant release does differently
        with contextlib.suppress(CheckFailed):
            _wait(settled, 60, "every entity with its published value", 1.0)
        seen, devices = entities(sock)
        problems = check_entities(seen, configs()) + check_values(seen, *readings())
        gw_dev, node_dev = devices.get(f"gridpact_gw_{GATEWAY_ID}"), devices.get(f"gridpact_{NODES[0][0]}")
        if gw_dev is None or node_dev is None or gw_dev.get("via_device_id") != node_dev["id"]:
            problems.append("the gateway device is not linked to its meter node's device (via_device)")
        rep.say(f"{len(seen)} entities on {len(devices)} devices (classes, units, values):")
        print(_table(seen, devices))
        for ident, d in sorted(devices.items()):
            via = next((k for k, v in devices.items() if v["id"] == d.get("via_device_id")), "-")
            print(f"  device {ident}: {d['name']!r} model {d.get('model')!r}, via_device {via}")
        problems += sorted({"Home Assistant logged: " + ln[24:300] for ln in ha.complaints()})
        if problems:
            rep.say(f"{len(problems)} problems so far (listed at the end); going on")

        prefs = energy_prefs(seen)
        sock.call("energy/save_prefs", **prefs)
        rep.say("Energy dashboard: grid flows from the SDM120 + peer-to-peer bought/sold, SDM630 as a device")
        first: list[str] = []
        deadline = time.monotonic() + stats_wait(time.time())
        while True:
            issues = issues_of(sock.call("energy/validate"))
            if not issues:
                break
            first = first or issues
            if time.monotonic() > deadline or any(not i.startswith("statistics_not_defined") for i in issues):
                raise CheckFailed("Energy validation:\n  " + "\n  ".join(issues))
            time.sleep(5)
        if first:
            rep.say("until Home Assistant's first 5-minute statistics compile: " + "; ".join(first))
        rep.say("Energy validation: no issues")

        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        gw_uids = [u for u, s in seen.items() if s.device == f"gridpact_gw_{GATEWAY_ID}"]
        _wait(lambda: all(entities(sock)[0][u].state == "unavailable" for u in gw_uids), 20,
              "the gateway's entities to go unavailable on its last will", 0.5)  # fmt: skip
        rep.say(f"gateway killed (SIGKILL): its {len(gw_uids)} entities unavailable (last will)")
        nodes[1].board.stop()  # power cut: no DISCONNECT, the broker sends the node's will
        node_uids = [u for u, s in seen.items() if s.device == f"gridpact_{NODES[1][0]}"]
        _wait(lambda: all(entities(sock)[0][u].state == "unavailable" for u in node_uids), 60,
              f"{NODES[1][0]}'s entities to go unavailable on its last will", 0.5)  # fmt: skip
        still = sum(
            entities(sock)[0][u].state != "unavailable" for u in seen if u.startswith("gridpact_ha-120_")
        )
        rep.say(f"node {NODES[1][0]} powered off: its {len(node_uids)} entities unavailable; {NODES[0][0]} "
                f"still available ({still} entities)")  # fmt: skip
        ws.close()
        ws = None
        code = ha.stop()
        rep.say(f"Home Assistant stopped (exit {code}), process gone")
        problems += sorted({"Home Assistant logged: " + ln[24:300] for ln in ha.complaints()} - set(problems))
        if problems:
            raise CheckFailed(f"{len(problems)} problems:\n  " + "\n  ".join(problems))
        print(
            f"ha-check: PASSED with Home Assistant {_ha_version(ha_python)} (Python {_python_version(ha_python)})"
        )
        return 0
    except CheckFailed as exc:
        print(f"ha-check: FAILED: {exc}", file=sys.stderr)
        noted = [ln for ln in ha.log_tail(400).splitlines() if " ERROR " in ln or " WARNING " in ln]
        print(
            "ha-check: Home Assistant's last warnings and errors:\n" + "\n".join(noted[-8:]), file=sys.stderr
        )
        return 1
    finally:  # after a failure or an interrupt (Ctrl-C, SIGTERM): everything goes, at once
        with contextlib.suppress(CheckFailed):
            ha.stop(0.0)
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
            gateway.wait(10)
        for n in nodes:
            with contextlib.suppress(Exception):
                n.board.stop()
        if tap is not None:
            tap.close(clear_retained=False)
        broker.close()
        if keep is not None:
            shutil.copytree(workdir, keep, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _ha_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import homeassistant.const as c; print(c.__version__)"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    return out.stdout.strip() or "?"


def _python_version(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    return out.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ha_check", description="Check gridpact against a real Home Assistant.")
    p.add_argument("--ha-python", type=Path, default=REPO_ROOT / ".venv-ha" / "bin" / "python",
                   help="the Python of the Home Assistant environment (default: .venv-ha)")  # fmt: skip
    p.add_argument("--keep", type=Path, help="copy the work folder (HA config, logs) here at the end")
    args = p.parse_args(argv)
    if not os.access(args.ha_python, os.X_OK):
        print(f"ha-check: no Home Assistant environment at {args.ha_python} (./tasks ha-check makes it)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        with sigterm_interrupts():
            return run(args.ha_python, args.keep)
    except KeyboardInterrupt:
        print("ha-check: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
