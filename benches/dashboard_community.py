"""`gridpact bench dashboard --view community`: the community view's render time, push latency, memory.

A real anvil with the community's contracts and `--agreements` agreements already on chain (half
settled, some disputed); the real `gridpact dashboard run` process indexes them from the deployment
block (timed), the bench signs in as the operator, times the overview and the explorer, holds N SSE
viewers, submits agreements one by one and times each from the transaction's receipt to every
viewer's event, reads the process's VmRSS and stops it with SIGTERM (timed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from web3 import Web3

from benches.sse import rss_mb as _rss_mb
from benches.sse import viewer as _viewer
from contracts.harness import Community, advance_time, household_key
from gateway.chain.keystore import create_keystore
from gateway.dashboard.auth import AccountStore
from hil.services import DEV_PRIVATE_KEYS, AnvilNode, free_port

PASSWORD = "bench-password-123"


def _seed(c: Community, n: int) -> None:
    """n agreements between three households; after a delivery hour, most settled, every tenth disputed."""
    hs = c.households
    pending = []
    for i in range(n):
        seller, buyer = hs[i % 3], hs[(i + 1) % 3]
        t = c.terms(seller, buyer, quantity_wh=500 + 10 * (i % 50), unit_price=100 + i % 40)
        c.admin.transact(c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, seller, buyer)))
        pending.append((t, seller, buyer, i))
    if not pending:
        return
    advance_time(c.w3, 2 * 3600 + 1)
    items = [c.settle_item(t, s, b, t.quantityWh, t.quantityWh // 2 if i % 10 == 0 else t.quantityWh)
             for t, s, b, i in pending[: n // 2]]  # fmt: skip
    for k in range(0, len(items), 20):
        c.admin.transact(c.market.functions.settleBatch(items[k : k + 20]))


async def _measure(base: str, c: Community, viewers: int, changes: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=viewers + 4)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=httpx.Timeout(10.0, read=30.0)
    ) as client:
        r = await client.post("/login", data={"name": "op", "password": PASSWORD})
        if r.status_code != 303:
            raise RuntimeError(f"sign-in failed: HTTP {r.status_code}")
        renders: dict[str, list[float]] = {"/community": [], "/explorer": []}
        for path, times in renders.items():
            for _ in range(11):
                t0 = time.perf_counter()
                (await client.get(path)).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
        opened = asyncio.Event()
        count = [0]
        per_viewer: list[dict[int, float]] = [{} for _ in range(viewers)]
        tasks = [asyncio.create_task(_viewer(client, "/community/events", per_viewer[i], opened, count, viewers))
                 for i in range(viewers)]  # fmt: skip
        await asyncio.wait_for(opened.wait(), 30)
        await asyncio.sleep(0.5)
        latencies: list[float] = []
        a, b, _ = c.households
        for _ in range(changes):
            marks = [max(v) if v else 0 for v in per_viewer]
            t = c.terms(a, b)
            await asyncio.to_thread(
                c.admin.transact, c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b))
            )
            mined = time.perf_counter()  # the receipt is in: the event is on chain
            deadline = mined + 5
            while time.perf_counter() < deadline and any(
                (max(v) if v else 0) == m for v, m in zip(per_viewer, marks, strict=True)
            ):
                await asyncio.sleep(0.005)
            for v, m in zip(per_viewer, marks, strict=True):
                fresh = [ts for seq, ts in v.items() if seq > m]
                if fresh:
                    latencies.append((min(fresh) - mined) * 1000)
            await asyncio.sleep(0.3)
        held = sum(1 for task in tasks if not task.done())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "first": {p: v[0] for p, v in renders.items()},
        "warm": {p: statistics.median(v[1:]) for p, v in renders.items()},
        "push_p50": statistics.median(latencies) if latencies else float("nan"),
        "push_max": max(latencies) if latencies else float("nan"),
        "delivered": len(latencies),
        "held": held,
    }


def community_bench(viewers: int, changes: int, agreements: int, backend: str = "sqlite") -> int:
    with (
        tempfile.TemporaryDirectory(prefix="gridpact-bench-community-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        d = Path(tmp)
        node = AnvilNode()
        node.start()
        proc: subprocess.Popen[bytes] | None = None
        database = ""
        if backend == "postgresql":  # a throwaway local cluster, stopped with the bench
            from hil.services import PostgresServer

            server = PostgresServer()
            stack.callback(server.close)
            server.start()
            database = f'database = "{server.create_database("bench")}"\n'
        try:
            w3 = Web3(Web3.HTTPProvider(node.info.url, request_kwargs={"timeout": 30}))
            c = Community(w3, DEV_PRIVATE_KEYS[0])
            for i in range(3):
                c.add_household(household_key(i), deposit=10**22)
            t0 = time.perf_counter()
            _seed(c, agreements)
            seed_s = time.perf_counter() - t0
            create_keystore(d / "operator.json", "bench-operator-pass", DEV_PRIVATE_KEYS[0], work=2**10)
            (d / "pass").write_text("bench-operator-pass\n")
            port = free_port()
            config = d / "dashboard.toml"
            config.write_text(f'[index]\nstate_dir = "state"\n{database}[dashboard]\nlisten = "127.0.0.1:{port}"\n'
                              f'secure_cookies = false\nmax_viewers = 250\n[chain]\nrpc_url = "{node.info.url}"\n'
                              f'market = "{c.market.address}"\nkeystore = "operator.json"\npassphrase_file = "pass"\n')  # fmt: skip
            accounts = AccountStore(d / "state" / "dashboard.sqlite3")
            accounts.add("op", "operator", "-", PASSWORD)
            accounts.close()
            head = int(w3.eth.block_number)
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            t_start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "gridpact.cli", "dashboard", "run", "--config", str(config)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            cookie_client = httpx.Client(base_url=base, timeout=5)
            indexed_s = float("nan")
            while time.perf_counter() - t_start < 120:
                if proc.poll() is not None:
                    print("the dashboard exited at start", file=sys.stderr)
                    return 1
                try:
                    if (
                        cookie_client.post("/login", data={"name": "op", "password": PASSWORD}).status_code
                        == 303
                    ):
                        data = cookie_client.get("/community/data.json").json()
                        if data["indexed_to"] >= head:
                            indexed_s = time.perf_counter() - t_start
                            break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            cookie_client.close()
            rss_idle = _rss_mb(proc.pid)
            figures = asyncio.run(_measure(base, c, viewers, changes))
            rss = _rss_mb(proc.pid)
            t_stop = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            stop_s = time.perf_counter() - t_stop
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
            node.close()
    print(
        f"gridpact bench dashboard --view community (`gridpact dashboard run`, real anvil, {agreements} agreements, {backend} index, loopback)"
    )
    print(f"  seeding the chain             {seed_s:8.2f} s   ({head} blocks)")
    print(f"  start to indexed to the head  {indexed_s:8.2f} s   (from the deployment block, no scan from 0)")
    for path in figures["first"]:
        print(
            f"  render {path:<22} first {figures['first'][path]:6.1f} ms   warm p50 {figures['warm'][path]:.1f} ms"
        )
    print(f"  push latency receipt->SSE     p50 {figures['push_p50']:6.1f} ms   max {figures['push_max']:.1f} ms"
          f"   ({figures['delivered']} events over {viewers} viewers x {changes} agreements)")  # fmt: skip
    print(f"  concurrent SSE viewers held   {figures['held']:8.0f} / {viewers}")
    print(f"  resident memory (VmRSS)       {rss_idle:8.1f} MB idle, {rss:.1f} MB after the viewers")
    print(f"  SIGTERM to exit               {stop_s:8.2f} s")
    return 0


def fold_bench(agreements: int, backend: str = "sqlite") -> int:
    """The community view's rebuild (after each new block) on a synthetic index of `agreements` settled ones.

    No chain: rows shaped as the indexer writes them, so the figure is the fold and the queries alone.
    `backend` "postgresql" puts the index in a throwaway local PostgreSQL cluster (hil.services).
    """
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="gridpact-bench-fold-"))
        location: str | Path = Path(tmp) / "index.sqlite3"
        if backend == "postgresql":
            from hil.services import PostgresServer

            server = PostgresServer()
            stack.callback(server.close)
            server.start()
            location = server.create_database("fold")
        times, size = _fold(agreements, location)
    print(
        f"gridpact bench dashboard --view fold ({agreements} settled agreements, synthetic {backend} index)"
    )
    print(
        f"  rebuild after a block         p50 {statistics.median(times) * 1000:8.1f} ms   max {max(times) * 1000:.1f} ms"
    )
    print(f"  snapshot pushed to viewers    {size / 1024:8.1f} kB")
    return 0


def _fold(agreements: int, location: str | Path) -> tuple[list[float], int]:
    import json

    from gateway.dashboard.community_site import CommunitySite
    from gateway.dashboard.index import ChainIndex, upsert_sql
    from gateway.dashboard.indexdb import open_index_db
    from gridpact.core.eip712 import Domain

    seller, buyer, market = "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "11" * 20
    index = ChainIndex(open_index_db(location), None, {"Market": market}, {"Market": []},  # type: ignore[arg-type]
                       Domain(1, market), 0)  # fmt: skip
    events, terms, blocks = [], [], []
    for i in range(agreements):
        aid, tx, blk = f"0x{i:064x}", f"0x{i + 10**9:064x}", 2 * i
        t = {"seller": seller, "buyer": buyer, "quantityWh": 1000, "unitPrice": 100 + i % 50,
             "deliveryStart": 1_700_000_000 + 3600 * i, "deliveryEnd": 1_700_003_600 + 3600 * i, "nonce": i,
             "expiry": 0}  # fmt: skip
        terms.append((aid, blk, tx, "submitAgreement", json.dumps(t), None, None, "{}"))
        events.append((blk, 0, tx, market, "Market", "AgreementSubmitted", json.dumps({"id": aid, "seller": seller,
                       "buyer": buyer, "quantityWh": 1000, "unitPrice": t["unitPrice"]}), aid, ""))  # fmt: skip
        events.append((blk + 1, 0, tx, market, "Market", "AgreementSettled", json.dumps({"id": aid,
                       "deliveredWh": 990, "paidToSeller": 99, "refundedToBuyer": 1}), aid, ""))  # fmt: skip
        blocks += [(blk, "0x", 1_700_000_000 + blk), (blk + 1, "0x", 1_700_000_001 + blk)]
    with index.db.transaction():
        index.db.executemany(upsert_sql("events"), events)
        index.db.executemany(upsert_sql("terms"), terms)
        index.db.executemany(upsert_sql("blocks"), blocks)
    site = CommunitySite(index)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        site.rebuild()
        times.append(time.perf_counter() - t0)
    size = len(json.dumps(site.snapshot))
    index.close()
    return times, size
