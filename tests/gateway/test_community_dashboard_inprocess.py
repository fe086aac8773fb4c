"""The community dashboard's seam for a caller holding its own chain (`serve_community`), on py-evm.

What `gridpact simulate --dashboard` would use: the app and its indexer in the caller's event loop,
on the in-process EVM, with the operator's LocalAccount, its index in SQLite and in a real PostgreSQL. Over real HTTP (httpx against uvicorn):
an agreement is indexed and shown, a dispute is ruled through the two CSRF-checked POSTs, a
replayed confirmation sends nothing new, a call the chain would refuse is flagged by the dry run.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from eth_account import Account

from contracts.harness import Community, advance_time, household_key
from gateway.dashboard.auth import AccountStore
from gateway.dashboard.community_server import Listen, serve_community
from hil.services import DEV_PRIVATE_KEYS, free_port, in_process_web3

PASSWORD = "correct horse battery"


async def _until(predicate: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_serve_community_on_the_in_process_evm(tmp_path: Path, where: Callable[[str], Path | str]) -> None:
    c = Community(in_process_web3(), DEV_PRIVATE_KEYS[0])
    a, b = (c.add_household(household_key(i), deposit=10**21) for i in range(2))
    store = AccountStore(tmp_path / "accounts.sqlite3")
    store.add("op", "operator", "-", PASSWORD)
    store.close()
    port = free_port()
    location = where("index")  # SQLite (the default: index.sqlite3 in the state folder) or PostgreSQL
    listen = Listen("127.0.0.1", port, tmp_path / "state", tmp_path / "accounts.sqlite3", secure_cookies=False,
                    index_database=location if isinstance(location, str) else None)  # fmt: skip

    async def scenario() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(
            serve_community(
                c.w3, c.market.address, listen, Account.from_key(DEV_PRIVATE_KEYS[0]), started=started
            )
        )
        try:
            await asyncio.wait_for(started.wait(), 30)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                assert (
                    await http.post("/login", data={"name": "op", "password": PASSWORD})
                ).status_code == 303
                t = c.terms(a, b)
                aid = "0x" + c.agreement_id(t).hex()
                await asyncio.to_thread(
                    c.admin.transact, c.market.functions.submitAgreement(t.as_tuple(), *c.sign(t, a, b))
                )

                async def shown(status: str) -> bool:
                    data = (await http.get("/community/data.json")).json()
                    return any(x["id"] == aid and x["status"] == status for x in data["agreements"])

                await _until(lambda: shown("active"))
                await asyncio.to_thread(advance_time, c.w3, 2 * 3600 + 1)
                await asyncio.to_thread(
                    c.admin.transact, c.market.functions.settleBatch([c.settle_item(t, a, b, 1000, 500)])
                )
                await _until(lambda: shown("disputed"))
                page = (await http.get(f"/explorer/agreement/{aid}")).text
                csrf = re.search(r'name="csrf" value="([^"]+)"', page)
                assert csrf is not None
                # a ruling for an agreement not in dispute is refused before anything is signed
                refused = await http.post(
                    "/operator/action/resolve",
                    data={"csrf": csrf[1], "agreement": "0x" + "00" * 32, "delivered_wh": "1"},
                )
                assert refused.status_code == 400 and "not an agreement waiting" in refused.text
                # the provider tariff for an unregistered provider: the dry run says the chain refuses it
                dry = await http.post(
                    "/operator/action/tariffs",
                    data={"csrf": csrf[1], "provider": "0x" + "42" * 20, "buy_price": "1", "sell_price": "2"},
                )
                assert dry.status_code == 200 and "NotProvider" in dry.text
                # the network fee: a number too large for its uint96 is refused; a good one is dry-run and sent
                assert "Set the network fee" in (await http.get("/community")).text
                big = await http.post(
                    "/operator/action/network_fee", data={"csrf": csrf[1], "fee_per_kwh": str(2**96)}
                )
                assert big.status_code == 400 and "fee_per_kwh" in big.text
                fee = await http.post(
                    "/operator/action/network_fee", data={"csrf": csrf[1], "fee_per_kwh": "7"}
                )
                assert "Dry run: the chain accepts this call." in fee.text, fee.text
                fee_token = re.search(r'name="token" value="([^"]+)"', fee.text)
                assert fee_token is not None
                sent = await http.post("/operator/confirm", data={"csrf": csrf[1], "token": fee_token[1]})
                assert sent.status_code == 200, sent.text
                await _until(lambda: asyncio.to_thread(lambda: c.market.functions.networkFee().call() == 7))
                review = await http.post(
                    "/operator/action/resolve",
                    data={"csrf": csrf[1], "agreement": aid, "delivered_wh": "700"},
                )
                assert "Dry run: the chain accepts this call." in review.text
                token = re.search(r'name="token" value="([^"]+)"', review.text)
                assert token is not None
                done = await http.post("/operator/confirm", data={"csrf": csrf[1], "token": token[1]})
                assert done.status_code == 200, done.text
                tx = re.search(r'id="sent-tx"[^>]*>(0x[0-9a-f]{64})<', done.text)
                assert tx is not None
                await _until(lambda: shown("settled"))
                nonce = c.w3.eth.get_transaction_count(c.admin.address)
                again = await http.post("/operator/confirm", data={"csrf": csrf[1], "token": token[1]})
                assert again.status_code == 400  # no longer in dispute: nothing is signed
                assert c.w3.eth.get_transaction_count(c.admin.address) == nonce
                assert (await http.post("/operator/confirm", data={"token": token[1]})).status_code == 403
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
