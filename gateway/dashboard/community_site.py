"""What the community view shows, read from the chain index (and the community broker's messages).

`CommunitySite.rebuild` turns the index into one snapshot (figures, charts, agreements, disputes,
participants, latest chain activity) after every indexing step that changed something, so a page
render or an SSE push only serialises a dict; nothing here talks to the node.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address

from gateway.dashboard.community import AgreementState, fold_agreements, participants, prices, volumes
from gateway.dashboard.index import ChainIndex

LATEST = 25


@dataclass
class ChainFacts:
    """The Market's current settings, read from the node at each rebuild (two view calls)."""

    provider: str | None = None
    buy_price: int = 0
    sell_price: int = 0
    params: tuple[int, int, int, int] = (0, 0, 0, 0)
    operator: str | None = None  # who is credited penalties, report gaps and network fees
    network_fee: int = 0  # token base units per kWh delivered between households


@dataclass
class Messages:
    """What the community broker carried: counts per message type, the newest public offers."""

    counts: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    offers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LATEST))

    def public(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "rejected": self.rejected, "offers": list(self.offers)[::-1]}


def _addr_eq(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).lower() == str(b).lower()


class CommunitySite:
    def __init__(self, index: ChainIndex, community: str = "") -> None:
        self.index = index
        self.community = community
        self.facts = ChainFacts()
        self.messages = Messages()
        self.agreements: dict[str, AgreementState] = {}
        self.snapshot: dict[str, Any] = {}
        self.built_at = 0.0
        self.rebuild()

    # ------------------------------------------------------------------ the snapshot

    def rebuild(self) -> dict[str, Any]:
        q = self.index.query
        terms = {}
        for aid, terms_json in q(
            "SELECT t.id, t.terms FROM terms t LEFT JOIN txs x ON x.hash = t.tx ORDER BY t.block, x.idx"
        ):
            terms.setdefault(aid, json.loads(terms_json))
        rows = q(
            "SELECT block, log_index, tx, name, args, agreement FROM events WHERE agreement IS NOT NULL ORDER BY block, log_index"
        )
        self.agreements = fold_agreements(rows, terms)
        ts_of = {int(n): int(t) for n, t in q("SELECT number, ts FROM blocks")}
        tariffs = [
            (int(b), int(json.loads(a)["buyPrice"]), int(json.loads(a)["sellPrice"]))
            for b, a in q("SELECT block, args FROM events WHERE name='ProviderSet' ORDER BY block, log_index")
        ]
        members = participants(
            q(
                "SELECT name, args FROM events WHERE name IN ('ParticipantRegistered','ParticipantRemoved') ORDER BY block, log_index"
            )
        )
        agreements = sorted(self.agreements.values(), key=lambda a: (a.submitted_block, a.id), reverse=True)
        vol = volumes(agreements, self.facts.provider)
        counts = Counter(a.status for a in agreements)
        latest_events = [
            {"block": b, "log_index": i, "tx": tx, "contract": c, "name": n or "(unknown)", "args": json.loads(a) if a else {}, "ts": ts_of.get(int(b))}
            for b, i, tx, c, n, a in q(f"SELECT block, log_index, tx, contract, name, args FROM events ORDER BY block DESC, log_index DESC LIMIT {LATEST}")
        ]  # fmt: skip
        self.snapshot = {
            "community": self.community,
            "market": self.index.domain.market,
            "chain_id": self.index.domain.chain_id,
            "indexed_to": self.index.next_block - 1,
            "head": int(self.index.meta("head") or 0),
            "figures": {
                "agreements": len(agreements),
                "by_status": dict(counts),
                "participants": len(members),
                "p2p_wh": vol["p2p_wh"],
                "provider_bought_wh": vol["provider_bought_wh"],
                "provider_sold_wh": vol["provider_sold_wh"],
                "self_sufficiency": vol["self_sufficiency"],
                "p2p_share": vol["p2p_share"],
            },
            "hours": vol["hours"][-72:],
            "days": vol["days"][-31:],
            "prices": prices(agreements, tariffs, ts_of),
            "tariff": {"provider": self.facts.provider, "buy": str(self.facts.buy_price), "sell": str(self.facts.sell_price)},
            "operator": {"account": self.facts.operator, "network_fee": str(self.facts.network_fee)},
            "params": dict(zip(("report_window", "dispute_window", "tolerance_bps", "penalty_bps"), self.facts.params, strict=True)),
            "agreements": [a.public() for a in agreements[:LATEST]],
            "disputes": [a.public() for a in agreements if a.status == "disputed"],
            "participants": members,
            "events": latest_events,
            "blocks": [
                {"number": n, "hash": h, "ts": t, "txs": c, "gas_used": g}
                for n, h, t, c, g in q(f"SELECT number, hash, ts, txs, gas_used FROM recent ORDER BY number DESC LIMIT {LATEST}")
            ],
            "txs": [
                {"hash": h, "block": b, "sender": s, "contract": c, "fn": f, "status": st}
                for h, b, s, c, f, st in q(f"SELECT hash, block, sender, contract, fn, status FROM txs ORDER BY block DESC, idx DESC LIMIT {LATEST}")
            ],
            "messages": self.messages.public(),
        }  # fmt: skip
        self.built_at = time.time()
        return self.snapshot

    def aggregates(self) -> dict[str, Any]:
        """What any signed-in household may see: community figures and charts, nobody's own trades."""
        s = self.snapshot
        keys = (
            "community",
            "market",
            "chain_id",
            "indexed_to",
            "head",
            "figures",
            "hours",
            "days",
            "prices",
            "tariff",
            "params",
            "operator",
        )
        return {k: s[k] for k in keys}

    def own(self, address: str) -> list[dict[str, Any]]:
        """One household's agreements (newest first)."""
        mine = [
            a for a in self.agreements.values() if _addr_eq(a.seller, address) or _addr_eq(a.buyer, address)
        ]
        return [a.public() for a in sorted(mine, key=lambda a: a.submitted_block, reverse=True)]

    def disputed_terms(self) -> dict[str, dict[str, Any]]:
        """Terms of the agreements waiting for a ruling, by id (what `resolveDispute` needs)."""
        out = {}
        for aid, a in self.agreements.items():
            if a.status == "disputed":
                row = self.index.query("SELECT terms FROM terms WHERE id=? ORDER BY block LIMIT 1", (aid,))
                if row:
                    out[aid] = json.loads(row[0][0])
        return out

    # ------------------------------------------------------------------ explorer pages

    def agreement(self, aid: str) -> dict[str, Any] | None:
        """An agreement's page: terms, both signatures, the calls that carried it, events, anchors."""
        a = self.agreements.get(aid)
        if a is None:
            return None
        q = self.index.query
        calls = [
            {"block": b, "tx": tx, "fn": fn, "seller_sig": ss, "buyer_sig": bs, "item": json.loads(item)}
            for b, tx, fn, ss, bs, item in q("SELECT block, tx, fn, seller_sig, buyer_sig, item FROM terms WHERE id=? ORDER BY block", (aid,))
        ]  # fmt: skip
        submitted = next((c for c in calls if c["seller_sig"] or c["buyer_sig"]), None)
        reports = [c for c in calls if "sellerWh" in c["item"] or "buyerWh" in c["item"]]
        hours = list(range(a.delivery_start // 3600 * 3600, max(a.delivery_end, a.delivery_start + 1), 3600))[
            :48
        ]
        anchors = []
        for b, args_json in q("SELECT block, args FROM events WHERE name='ReadingsAnchored' ORDER BY block"):
            args = json.loads(args_json)
            if int(args.get("hourStart", -1)) in hours and (
                _addr_eq(args.get("gateway"), a.seller) or _addr_eq(args.get("gateway"), a.buyer)
            ):
                anchors.append({"block": b, **args})
        return {
            "agreement": a.public(),
            "terms_call": submitted,
            "reports": reports,
            "events": a.events,
            "anchors": anchors,
        }

    def tx(self, tx_hash: str) -> dict[str, Any] | None:
        rows = self.index.query(
            "SELECT hash, block, idx, sender, target, contract, fn, args, status FROM txs WHERE hash=?",
            (tx_hash.lower(),),
        )
        if not rows:
            return None
        h, b, i, s, t, c, f, a, st = rows[0]
        events = [
            {"log_index": li, "contract": c2, "name": n or "(unknown)", "args": json.loads(a2) if a2 else {}, "agreement": ag}
            for li, c2, n, a2, ag in self.index.query("SELECT log_index, contract, name, args, agreement FROM events WHERE tx=? ORDER BY log_index", (h,))
        ]  # fmt: skip
        return {"hash": h, "block": b, "index": i, "sender": s, "target": t, "contract": c, "fn": f,
                "args": json.loads(a) if a else None, "status": st, "events": events}  # fmt: skip

    def address(self, address: str) -> dict[str, Any]:
        low = address.lower()
        txs = [
            {"hash": h, "block": b, "fn": f, "status": st}
            for h, b, s, f, st in self.index.query(
                "SELECT hash, block, sender, fn, status FROM txs ORDER BY block DESC LIMIT 500"
            )
            if s.lower() == low
        ][:LATEST]
        return {"address": address, "agreements": self.own(address), "txs": txs,
                "participant": any(_addr_eq(m, address) for m in self.snapshot.get("participants", []))}  # fmt: skip

    def search(self, text: str) -> str | None:
        """Where a search goes: an agreement id, a transaction hash, an address or a block number."""
        t = text.strip().lower()
        if len(t) == 66 and t.startswith("0x"):
            if t in self.agreements:
                return f"/explorer/agreement/{t}"
            if self.index.query("SELECT 1 FROM txs WHERE hash=?", (t,)):
                return f"/explorer/tx/{t}"
            return None
        if len(t) == 42 and t.startswith("0x"):
            try:
                return f"/explorer/address/{to_checksum_address(t)}"
            except ValueError:
                return None
        return None
