"""Crash safety: SIGKILL the household processes at 20 random points, restart them, check the chain.

Both households run as their own processes (`trade_node.py`) against Mosquitto and anvil with the
real Market. A seeded schedule kills one of them with SIGKILL every ~1.5 s (during negotiation,
signing, submission, reporting: wherever it happens to be) and restarts it. Afterwards both run
undisturbed until every agreement is closed, and the chain must show each agreement submitted
once and settled (or refunded) exactly once, with every on-chain agreement known to both journals.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from test_trade_two_gateways import households
from trade_helpers import Community, mine_every_second, setup_community
from web3 import Web3

from gateway.chain.market import FINAL, Status, terms_from_dict
from hil.services import AnvilNode, MosquittoBroker
from tests.process_helpers import survivors

NODE = Path(__file__).with_name("trade_node.py")
KILLS = 20


class Zygote:
    """Starts household processes forked from a pre-imported parent (see trade_node.serve_forks)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(NODE), "--zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip

    def start(self, spec_file: Path, log: Path) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"start {spec_file} {log}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


def kill(pid: int) -> None:
    """SIGKILL and wait until the process is dead (a zombie until the zygote reaps it)."""
    os.kill(pid, signal.SIGKILL)
    assert survivors([pid], within_s=5.0) == [], f"process {pid} survived SIGKILL"


def journal(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT id, state, terms FROM agreements"))


def open_count(tmp_path: Path) -> int:
    total = 0
    for name in ("seller", "buyer"):
        db = tmp_path / name / "trading.db"
        if db.exists():
            total += sum(1 for _, state, _ in journal(db) if state not in ("closed", "abandoned"))
    return total


def test_sigkill_at_20_random_points_settles_every_agreement_once(
    mosquitto: MosquittoBroker, mined_anvil: AnvilNode, tmp_path: Path
) -> None:
    w3 = Web3(Web3.HTTPProvider(mined_anvil.info.url))
    com: Community = setup_community(w3, report_window=12)
    mine_every_second(w3)
    specs = households(tmp_path, com, mosquitto.port, 1_200_000, mined_anvil.info.url)
    files = {}
    for spec in specs:
        files[spec["name"]] = tmp_path / f"{spec['name']}.spec.json"
        files[spec["name"]].write_text(json.dumps(spec))
    zygote = Zygote()
    logs_of = {name: tmp_path / f"{name}.log" for name in files}
    pids = {name: zygote.start(f, logs_of[name]) for name, f in files.items()}
    rng = random.Random(20260501)
    kills: list[tuple[float, str]] = []
    try:
        time.sleep(3.0)  # first agreements under way
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.5))  # anywhere in negotiation, signing, submission, reporting
            name = rng.choice(sorted(pids))
            kill(pids[name])
            kills.append((time.time(), name))
            time.sleep(rng.uniform(0.0, 0.5))
            pids[name] = zygote.start(files[name], logs_of[name])
        # drain: both restart with nothing to trade and run until everything open is closed
        for name in files:
            kill(pids[name])
            spec = json.loads(files[name].read_text())
            spec["tables"]["agent"]["fixed_net_wh"] = 0
            files[name].write_text(json.dumps(spec))
            pids[name] = zygote.start(files[name], logs_of[name])
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and open_count(tmp_path) > 0:
            time.sleep(0.5)
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                kill(pid)
        zygote.close()
    logs = "".join((tmp_path / f"{n}.log").read_text(errors="replace") for n in files)
    assert len(kills) == KILLS
    assert open_count(tmp_path) == 0, logs[-6000:]

    submitted = [e["args"]["id"] for e in com.submitted_events()]
    closing = [e["args"]["id"] for e in com.settled_events()] + [
        e["args"]["id"] for e in com.reclaimed_events()
    ]
    assert len(submitted) >= 3, f"too few agreements to mean anything: {len(submitted)}\n{logs[-6000:]}"
    assert len(submitted) == len(set(submitted))
    assert sorted(closing) == sorted(submitted)  # every agreement closed exactly once, none forgotten
    on_chain = {"0x" + bytes(i).hex() for i in submitted}
    closed = {"0x" + bytes(i).hex() for i in closing}
    known = {name: {row[0]: row for row in journal(tmp_path / name / "trading.db")} for name in files}
    for name in files:
        assert on_chain <= set(known[name]), f"{name} forgot an on-chain agreement"
        for agreement_id, state, terms in known[name].values():
            status = Status(
                int(com.market.functions.agreementOf(terms_from_dict(json.loads(terms)).as_tuple()).call()[0])
            )
            if agreement_id in on_chain:  # a closed agreement's slot may hold a newer one (the seller's ring)
                assert state == "closed" and (
                    status in FINAL or (status is Status.NONE and agreement_id in closed)
                )
            else:
                assert state == "abandoned" and status is Status.NONE
    recovered = logs.count("recovered_txs=") - logs.count("recovered_txs=0 ")
    print(f"kills={len(kills)} submitted={len(submitted)} settled={len(com.settled_events())} "
          f"refunded={len(com.reclaimed_events())} restarts_with_txs_to_recover={recovered} "
          f"abandoned={sum(1 for n in files for r in known[n].values() if r[1] == 'abandoned')}")  # fmt: skip
    terms_of = {e["args"]["id"]: e["args"] for e in com.submitted_events()}
    payouts = [
        (e["args"]["deliveredWh"], e["args"]["paidToSeller"], e["args"]["refundedToBuyer"],
         terms_of[e["args"]["id"]]["quantityWh"] * terms_of[e["args"]["id"]]["unitPrice"] // 1000)
        for e in com.settled_events()
    ]  # fmt: skip
    assert all(paid + refunded == escrow for _, paid, refunded, escrow in payouts), payouts
    escrow_left = com.token.functions.balanceOf(com.market.address).call() - sum(
        com.market.functions.balanceOf(h).call() for h in com.households
    )
    assert escrow_left == 0  # all escrow paid out: tokens conserved
