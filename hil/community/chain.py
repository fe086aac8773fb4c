"""The community on a real chain: deploy, register, mint, agree and settle through the Market contract.

The simulator acts as the community (COMMUNITY_ROLE) that batches what the households' gateways
signed: both parties sign each agreement's EIP-712 terms and each delivery report with their own
keys, so the contract checks every signature exactly as it would for real gateways. The chain's
clock is moved to the simulated hour (py-evm `time_travel`, anvil `evm_setNextBlockTimestamp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak

from hil.services import DEV_PRIVATE_KEYS


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

    def __init__(self, w3: Any, names: list[str], deployer_key: str = DEV_PRIVATE_KEYS[0]) -> None:
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
        self._terms: dict[int, list[Any]] = {}
        self._rings: dict[str, Any] = {}  # seller -> the gateway's NonceRing: slots reused once closed

    def _tx(self, sender: Any, call: Any) -> Any:
        receipt = sender.transact(call)
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
        for name, addr, sender in zip(self.names, self.addresses, self.senders, strict=True):
            meter_id = keccak(text=f"meter:{name}")
            self._tx(self.community, self.market.functions.register(addr, meter_id, keccak(text=name)))
            self._tx(self.community, self.token.functions.mint(addr, start_tokens))
            self._tx(sender, self.token.functions.approve(self.market.address, start_tokens))
            self._tx(sender, self.market.functions.deposit(start_tokens))
        from gridpact.core.eip712 import Domain

        self.domain = Domain.of(self.w3, self.market.address)
        self.minted = start_tokens * len(self.names)
        return self.deployment

    def _fund(self, addr: str) -> None:
        tx = {"to": addr, "value": 10**20, "gas": 21000}
        receipt = self.community._send(tx)
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
            self._tx(self.community, call)

    def settle(self, hour: int, hour_start: int, delivered: list[int]) -> list[tuple[int, int]]:
        """Each party signs its delivery report (from its meter data); one settleBatch; (paid, refunded)."""
        from gridpact.core.eip712 import agreement_id, sign_report

        terms = self._terms.pop(hour, [])
        if len(terms) != len(delivered):
            raise ChainLayerError(f"hour {hour}: {len(terms)} agreements but {len(delivered)} deliveries")
        if not terms:
            return []
        items = []
        for term, d in zip(terms, delivered, strict=True):
            aid = agreement_id(term, self.domain)
            seller = self.addresses.index(term.seller)
            buyer = self.addresses.index(term.buyer)
            items.append(
                (term.as_tuple(), d, d, sign_report(aid, d, self.domain, self.keys[seller]),
                 sign_report(aid, d, self.domain, self.keys[buyer]))
            )  # fmt: skip
        self.set_time(hour_start + 3600 + 5)
        receipt = self._tx(self.community, self.market.functions.settleBatch(items))
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

    def anchor(self, household: int, hour_start: int, batch_hash: bytes, count: int) -> None:
        """A household's gateway anchors the hash of its hour of verified readings (once the hour has closed)."""
        self.set_time(
            hour_start + 3600 + 5
        )  # the Market anchors only closed hours; an hour with no trades moved no clock
        self._tx(self.senders[household], self.market.functions.anchorReadings(hour_start, batch_hash, count))
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
        )
