"""`gridpact bench <component>`: speed and memory figures, printed, never asserted in unit tests."""

from __future__ import annotations

import importlib
import sys

BENCHES: dict[str, str] = {
    "meter-sim": "meter_sim.bench",
    "firmware": "firmware.host.bench",
    "contracts": "contracts.bench",
    "negotiation": "gateway.negotiation.bench",
    "gateway": "gateway.bench",
    "simulate": "hil.community.bench",
    "study": "hil.study.bench",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print("usage: gridpact bench {" + ",".join(BENCHES) + "} [args...]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHES[argv[0]])
    return int(module.main(argv[1:]) or 0)
