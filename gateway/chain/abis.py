"""The community contracts' ABIs as the gateway ships them, readable without loading web3.

`gateway.chain.market` (web3 and eth-account) re-exports these; the community dashboard reads them
here, so a dashboard that only reads the chain does not load web3 (gateway/dashboard/rpc.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHIPPED_ABI = Path(__file__).with_name("market_abi.json")
SHIPPED_LOANS_ABI = Path(__file__).with_name("loans_abi.json")
SHIPPED_DEMAND_ABI = Path(__file__).with_name("demand_abi.json")
SHIPPED_ABIS = {"Market": SHIPPED_ABI, "MarketLoans": SHIPPED_LOANS_ABI, "DemandResponse": SHIPPED_DEMAND_ABI}


def market_abi(name: str = "Market") -> list[dict[str, Any]]:
    """A contract's ABI (`Market`, `MarketLoans`, `DemandResponse`): the built artifact when present (dev checkouts),
    else the copy shipped here."""
    try:
        from contracts.build import ARTIFACTS

        built = ARTIFACTS / f"{name}.json"
        if built.exists():
            return json.loads(built.read_text())["abi"]
    except ImportError:
        pass
    return json.loads(SHIPPED_ABIS[name].read_text())
