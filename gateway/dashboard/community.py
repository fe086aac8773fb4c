"""The community view's figures, computed from the chain index: pure functions over its rows.

An agreement's state is the fold of its events in chain order; volumes are counted by the hour
and day its delivery starts; prices are each agreement's unit price (token base units per kWh,
as the contract and the agents' configs speak) against the provider's posted tariffs over time.
Self-sufficiency is the share of what households bought on the Market that came from neighbours
(energy bought from the provider through the contract counts against it; grid imports outside
the contract are not on the chain, so the operator cannot see them). The P2P share is the share
of all traded energy, both directions with the provider included, that went between households.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

HOUR = 3600
DAY = 86400

# event name -> the agreement status it leaves (events of other names do not change the status)
STATUS_AFTER = {
    "AgreementSubmitted": "active",
    "ProviderTraded": "active",
    "DisputeOpened": "disputed",
    "AgreementSettled": "settled",
    "DisputeResolved": "settled",
    "EscrowReclaimed": "refunded",
    "TermsCancelled": "cancelled",
}


@dataclass
class AgreementState:
    """What the chain says about one agreement, folded from its events and the calls carrying its terms."""

    id: str
    seller: str = ""
    buyer: str = ""
    quantity_wh: int = 0
    unit_price: int = 0
    delivery_start: int = 0
    delivery_end: int = 0
    provider: bool = False
    status: str = "active"
    delivered_wh: int | None = None
    paid_to_seller: int | None = None
    refunded_to_buyer: int | None = None
    submitted_block: int = 0
    submit_tx: str = ""
    close_tx: str | None = None
    dispute: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("events")
        for key in ("unit_price", "paid_to_seller", "refunded_to_buyer"):
            if d[key] is not None:
                d[key] = str(d[key])  # token base units exceed JavaScript's exact integers
        return d


def fold_agreements(
    events: Iterable[tuple[Any, ...]], terms: dict[str, dict[str, Any]]
) -> dict[str, AgreementState]:
    """Agreements from (block, log_index, tx, name, args_json, agreement) rows in chain order.

    `terms` maps an agreement id to its Terms (from the call that submitted it); a ProviderTraded
    event carries its own.
    """
    out: dict[str, AgreementState] = {}
    for block, log_index, tx, name, args_json, aid in events:
        if aid is None or name is None:
            continue
        args = json.loads(args_json)
        a = out.get(aid)
        if a is None:
            if name not in ("AgreementSubmitted", "ProviderTraded"):
                continue  # an event of an agreement submitted before the index starts: nothing to show
            a = out[aid] = AgreementState(aid, submitted_block=int(block), submit_tx=str(tx))
            t = args.get("terms") if name == "ProviderTraded" else terms.get(aid)
            if isinstance(t, dict):
                a.seller, a.buyer = str(t["seller"]), str(t["buyer"])
                a.quantity_wh, a.unit_price = int(t["quantityWh"]), int(t["unitPrice"])
                a.delivery_start, a.delivery_end = int(t["deliveryStart"]), int(t["deliveryEnd"])
            else:
                a.seller, a.buyer = str(args.get("seller", "")), str(args.get("buyer", ""))
                a.quantity_wh, a.unit_price = int(args.get("quantityWh", 0)), int(args.get("unitPrice", 0))
            a.provider = name == "ProviderTraded"
        a.events.append(
            {"block": int(block), "log_index": int(log_index), "tx": tx, "name": name, "args": args}
        )
        a.status = STATUS_AFTER.get(name, a.status)
        if name == "AgreementSettled":
            a.delivered_wh = int(args["deliveredWh"])
            a.paid_to_seller, a.refunded_to_buyer = int(args["paidToSeller"]), int(args["refundedToBuyer"])
            a.close_tx = tx
        elif name == "DisputeResolved":
            a.delivered_wh = int(args["deliveredWh"])
            a.close_tx = tx
        elif name == "EscrowReclaimed":
            a.refunded_to_buyer = int(args["amount"])
            a.close_tx = tx
        elif name == "DisputeOpened":
            a.dispute = {"by": args.get("by"), "deadline": args.get("deadline"),
                         "seller_wh": args.get("sellerWh"), "buyer_wh": args.get("buyerWh")}  # fmt: skip
    return out


def volumes(agreements: Iterable[AgreementState], provider: str | None = None) -> dict[str, Any]:
    """Energy per hour and per day of delivery start, between households (p2p) and with the provider.

    Closed agreements count what was delivered; open ones what was contracted.
    """
    hours: dict[int, list[int]] = {}
    days: dict[int, list[int]] = {}
    p2p = bought_p2p = bought_provider = sold_provider = 0
    for a in agreements:
        if a.status in ("cancelled",):
            continue
        wh = (
            a.delivered_wh if a.delivered_wh is not None else (0 if a.status == "refunded" else a.quantity_wh)
        )
        with_provider = a.provider or (provider is not None and provider in (a.seller, a.buyer))
        slot = 1 if with_provider else 0
        hours.setdefault(a.delivery_start // HOUR * HOUR, [0, 0])[slot] += wh
        days.setdefault(a.delivery_start // DAY * DAY, [0, 0])[slot] += wh
        if not with_provider:
            p2p += wh
            bought_p2p += wh
        elif (provider is not None and a.seller == provider) or (a.provider and _is_sale(a)):
            bought_provider += wh
        else:
            sold_provider += wh
    total = p2p + bought_provider + sold_provider
    bought = bought_p2p + bought_provider
    return {
        "hours": [[h, v[0], v[1]] for h, v in sorted(hours.items())],
        "days": [[d, v[0], v[1]] for d, v in sorted(days.items())],
        "p2p_wh": p2p,
        "provider_bought_wh": bought_provider,
        "provider_sold_wh": sold_provider,
        "self_sufficiency": None if bought == 0 else round(bought_p2p / bought, 4),
        "p2p_share": None if total == 0 else round(p2p / total, 4),
    }


def _is_sale(a: AgreementState) -> bool:
    """A provider trade in which the provider sold (the household bought): its first event names the buyer."""
    first = a.events[0]["args"] if a.events else {}
    return str(first.get("household", "")) == a.buyer


def prices(
    agreements: Iterable[AgreementState],
    tariffs: list[tuple[int, int, int]],
    ts_of: dict[int, int],
    last: int = 500,
) -> dict[str, Any]:
    """Unit prices by delivery start (p2p only, the `last` newest: a push stays small) and the tariffs as steps."""
    points = sorted(
        (a.delivery_start, a.unit_price) for a in agreements if not a.provider and a.status != "cancelled"
    )[-last:]
    steps = [[ts_of.get(block, 0), buy, sell] for block, buy, sell in tariffs]
    return {"p2p": [[t, str(p)] for t, p in points], "tariffs": [[t, str(b), str(s)] for t, b, s in steps]}


def participants(rows: Iterable[tuple[str, str]]) -> list[str]:
    """Registered gateways now, from (event name, args json) rows in chain order."""
    members: dict[str, None] = {}
    for name, args_json in rows:
        gateway = json.loads(args_json).get("gateway")
        if name == "ParticipantRegistered":
            members[gateway] = None
        elif name == "ParticipantRemoved":
            members.pop(gateway, None)
    return list(members)
