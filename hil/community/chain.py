"""The community on a real chain: deploy, register, mint, agree and settle through the Market contract.

The simulator acts as the community (COMMUNITY_ROLE) that batches what the households' gateways
signed: both parties sign each agreement's EIP-712 terms with their own keys, and each household's
meter node signs its hourly statement with its own device key (registered by `setMeter`); the
community settles each hour as the keeper, from the meters' statements (`settleByMeters`), so the
contract checks every signature exactly as it would for real gateways and meters. The chain's
clock is moved to the simulated hour (py-evm `time_travel`, anvil `evm_setNextBlockTimestamp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from hil.services import DEV_PRIVATE_KEYS

_EMPTY = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")  # sha256("")
SETUP_GAS = 500_000  # a limit for each setup transaction (register, mint, approve, deposit, setMeter)


def meter_address(secret: bytes) -> str:
    """The address the installer registers for a meter node's device key."""
    import coincurve

    from gridpact.core.statement import address_of

    return address_of(coincurve.PrivateKey(secret).public_key.format(compressed=False)[1:])


class ChainLayerError(RuntimeError):
    """The chain disagrees with the simulation, or cannot be driven (no time travel)."""


@dataclass
class ChainTotals:
    """What the chain says after the run: per household free balances and settlement events."""

    balances: list[int]
    minted: int
    market_holds: int
    settled_events: int
    refunded_events: int
    refunded_total: int
    paid_total: int
    gas_used: int
    transactions: int
    anchors: int = 0
    meter_settled: int = 0  # agreements settled from the meters' signed statements
    notes: list[str] = field(default_factory=list)


def household_keys(n: int) -> list[str]:
    """Dev keys 1..9 (funded on py-evm, mostly on anvil), then deterministic extra keys; setup funds any without gas."""
    keys = list(DEV_PRIVATE_KEYS[1:])
    i = 0
    while len(keys) < n:
        keys.append("0x" + keccak(text=f"gridpact-simulate-household-{i}").hex())
        i += 1
    return keys[:n]


class CommunityChain:
    """Token + Market deployed for N households; one batch of agreements and one of settlements per hour."""

    def __init__(
        self,
        w3: Any,
        names: list[str],
        deployer_key: str = DEV_PRIVATE_KEYS[0],
        meter_keys: list[bytes] | None = None,
    ) -> None:
        from contracts.chain import Sender

        self.w3 = w3
        self.names = names
        self.keys = household_keys(len(names))
        self.addresses = [Account.from_key(k).address for k in self.keys]
        self.community = Sender(w3, deployer_key)
        self.senders = [Sender(w3, k) for k in self.keys]
        self.gas_used = 0
        self.transactions = 0
        self.anchors = 0
        self.moves = 0  # blocks mined by set_time: a cached "latest" block is stale after one
        self._terms: dict[int, list[Any]] = {}
        self._rings: dict[str, Any] = {}  # seller -> the gateway's NonceRing: slots reused once closed
        # each household's meter node: device key (the nodes' provisioned ones when given), cumulative
        # (import, export) Wh, end of its last window on chain
        self.meter_keys = meter_keys or [
            keccak(text=f"gridpact-simulate-meter-{i}") for i in range(len(names))
        ]
        self.counters = [(0, 0)] * len(names)
        self.meter_used: list[int | None] = [None] * len(names)
        self.meter_settled = 0

    def transact(self, sender: Any, call: Any, gas: int | None = None) -> Any:
        """Send a bound contract call from `sender`, counting its gas and the transaction; the receipt.
        `gas`: a limit that spares the node two gas estimates (a revert then shows in the receipt)."""
        receipt = sender.transact(call, gas)
        self.gas_used += int(receipt["gasUsed"])
        self.transactions += 1
        return receipt

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def set_time(self, ts: int) -> None:
        """Make the next block's timestamp `ts` (never backwards)."""
        if ts <= self.now():
            return
        provider = self.w3.provider
        tester = getattr(provider, "ethereum_tester", None)
        self.moves += 1
        if tester is not None:
            tester.time_travel(ts)
            return
        try:
            self.w3.provider.make_request("evm_setNextBlockTimestamp", [ts])
            self.w3.provider.make_request("evm_mine", [])
        except Exception as exc:  # a node without the dev RPC
            raise ChainLayerError(f"the chain cannot be moved to the simulated time: {exc}") from exc

    def setup(self, start_tokens: int) -> dict[str, Any]:
        """Deploy, register every household, mint and deposit its starting tokens."""
        from contracts.deploy import contracts_at, deploy_all

        for addr in self.addresses:  # keys beyond the node's funded dev accounts need gas money
            if int(self.w3.eth.get_balance(addr)) < 10**18:
                self._fund(addr)
        self.deployment = deploy_all(self.w3, self.community.account.key)
        self.token, self.market = contracts_at(self.w3, self.deployment)
        gas = SETUP_GAS  # 5 transactions a household: no estimates (at 100 households, 1,000 requests fewer)
        for name, addr, sender in zip(self.names, self.addresses, self.senders, strict=True):
            meter_id = keccak(text=f"meter:{name}")
            self.transact(
                self.community, self.market.functions.register(addr, meter_id, keccak(text=name)), gas
            )
            self.transact(self.community, self.token.functions.mint(addr, start_tokens), gas)
            self.transact(sender, self.token.functions.approve(self.market.address, start_tokens), gas)
            self.transact(sender, self.market.functions.deposit(start_tokens), gas)
        for addr, secret in zip(self.addresses, self.meter_keys, strict=True):
            self.transact(self.community, self.market.functions.setMeter(addr, meter_address(secret)), gas)
        from gridpact.core.eip712 import Domain

        self.domain = Domain.of(self.w3, self.market.address)
        self.minted = start_tokens * len(self.names)
        return self.deployment

    def grant_keeper(self, household: int) -> None:
        """The community grants a household's gateway KEEPER_ROLE: it may carry every meter's window."""
        role = self.market.functions.KEEPER_ROLE().call()
        self.transact(self.community, self.market.functions.grantRole(role, self.addresses[household]))

    def _fund(self, addr: str) -> None:
        tx = {"to": addr, "value": 10**20, "gas": 21000}
        receipt = self.community.send(tx)
        self.gas_used += int(receipt["gasUsed"])
        self.transactions += 1

    def submit(self, hour: int, hour_start: int, trades: list[Any]) -> None:
        """Both parties sign each trade's terms; the community submits the hour's batch."""
        from gateway.trading.nonces import NonceRing
        from gridpact.core.eip712 import Terms, sign_terms

        terms, s_sigs, b_sigs = [], [], []
        for t in trades:
            seller = self.addresses[t.seller]
            nonce = self._rings.setdefault(seller, NonceRing()).allocate((), hour_start)  # as gateways do
            term = Terms(
                seller, self.addresses[t.buyer], t.wh, t.price,
                hour_start, hour_start + 3600, nonce, hour_start + 600,
            )  # fmt: skip
            terms.append(term)
            s_sigs.append(sign_terms(term, self.domain, self.keys[t.seller]))
            b_sigs.append(sign_terms(term, self.domain, self.keys[t.buyer]))
        self._terms[hour] = terms
        if terms:
            self.set_time(hour_start - 30)
            call = self.market.functions.submitAgreements([x.as_tuple() for x in terms], s_sigs, b_sigs)
            self.transact(self.community, call)

    def settle(
        self,
        hour: int,
        hour_start: int,
        delivered: list[int],
        metered: tuple[list[int], list[int]] | None = None,
    ) -> list[tuple[int, int]]:
        """Settle the hour's agreements in one call; (paid, refunded) each. With `metered` (each household's
        (import, export) Wh in the hour) the community carries the meters' signed statements
        (`settleByMeters`, the live rule); without, both parties sign `delivered` as reports (`settleBatch`)."""
        from gridpact.core.eip712 import agreement_id, sign_report

        terms = self._terms.pop(hour, [])
        if len(terms) != len(delivered):
            raise ChainLayerError(f"hour {hour}: {len(terms)} agreements but {len(delivered)} deliveries")
        windows = self._meter_windows(hour_start, terms, metered) if metered is not None else None
        if not terms:
            return []
        self.set_time(hour_start + 3600 + 5)
        if windows is not None:
            index = {w[0]: i for i, w in enumerate(windows)}
            items = [(t.as_tuple(), index[t.seller], index[t.buyer]) for t in terms]
            from gridpact.core.statement import settlement_batch

            batch = settlement_batch(windows, items)
            receipt = self.transact(self.community, self.market.functions.settleByMeters(batch))
            self.meter_settled += len(terms)
        else:
            items = []
            for term, d in zip(terms, delivered, strict=True):
                aid = agreement_id(term, self.domain)
                seller = self.addresses.index(term.seller)
                buyer = self.addresses.index(term.buyer)
                items.append(
                    (term.as_tuple(), d, d, sign_report(aid, d, self.domain, self.keys[seller]),
                     sign_report(aid, d, self.domain, self.keys[buyer]))
                )  # fmt: skip
            receipt = self.transact(self.community, self.market.functions.settleBatch(items))
        events = self.market.events.AgreementSettled().process_receipt(receipt)
        by_id = {bytes(e["args"]["id"]): e["args"] for e in events}
        out = []
        for term in terms:
            ev = by_id.get(agreement_id(term, self.domain))
            if ev is None:
                raise ChainLayerError(f"hour {hour}: an agreement was not settled on chain")
            self._rings[term.seller].release(term.nonce)  # settled: the seller's slot takes new terms
            out.append((int(ev["paidToSeller"]), int(ev["refundedToBuyer"])))
        return out

    def _meter_windows(
        self, hour_start: int, terms: list[Any], metered: tuple[list[int], list[int]]
    ) -> list[tuple]:
        """Advance every meter by its hour and sign the statements of the households that traded (chained to
        their last window on chain when it ended at this hour's start)."""
        from gridpact.core import statement

        end = hour_start + 3600
        imp, exp = metered
        parties = sorted(
            {self.addresses.index(t.seller) for t in terms} | {self.addresses.index(t.buyer) for t in terms}
        )
        windows = []
        for i in range(len(self.names)):
            before = self.counters[i]
            after = (before[0] + max(0, imp[i]), before[1] + max(0, exp[i]))
            self.counters[i] = after
            if i not in parties:
                continue
            dev = f"sim-{i}"
            signed = [
                (raw, statement.sign(raw, self.meter_keys[i]))
                for raw in (statement.encode(statement.Statement(dev, ts, c[0], c[1], 1, _EMPTY)) for ts, c in
                            ((hour_start, before), (end, after)))
            ]  # fmt: skip
            first = None if self.meter_used[i] == hour_start else signed[0]
            windows.append(statement.window_args(self.addresses[i], hour_start, end, first, signed[1]))
            self.meter_used[i] = end
        return windows

    def anchor(self, household: int, hour_start: int, batch_hash: bytes, count: int) -> None:
        """A household's gateway anchors the hash of its hour of verified readings (once the hour has closed)."""
        self.set_time(
            hour_start + 3600 + 5
        )  # the Market anchors only closed hours; an hour with no trades moved no clock
        self.transact(
            self.senders[household], self.market.functions.anchorReadings(hour_start, batch_hash, count)
        )
        self.anchors += 1

    def totals(self) -> ChainTotals:
        """Balances and conservation figures read back from the chain."""
        balances = [int(self.market.functions.balanceOf(a).call()) for a in self.addresses]
        settled = self.market.events.AgreementSettled().get_logs(from_block=0)
        return ChainTotals(
            balances=balances,
            minted=int(self.token.functions.totalSupply().call()),
            market_holds=int(self.token.functions.balanceOf(self.market.address).call()),
            settled_events=len(settled),
            refunded_events=sum(1 for e in settled if int(e["args"]["refundedToBuyer"]) > 0),
            refunded_total=sum(int(e["args"]["refundedToBuyer"]) for e in settled),
            paid_total=sum(int(e["args"]["paidToSeller"]) for e in settled),
            gas_used=self.gas_used,
            transactions=self.transactions,
            anchors=self.anchors,
            meter_settled=self.meter_settled,
        )
