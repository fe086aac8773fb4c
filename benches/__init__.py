"""Benches: `gridpact bench <component>` prints speed and memory figures, never asserted in unit tests.

Its own layer: a bench may import product, simulation and rig; nothing imports a bench.
"""

from __future__ import annotations

import sys

HELP = {
    "meter-sim": "100 software meters served over Modbus TCP: request rate and latency",
    "firmware": "the node's poll path in the real MicroPython (wasm): time and allocations",
    "contracts": "gas per agreement, settlement and operation on the in-process EVM or anvil",
    "negotiation": "the negotiation engine's sessions, market and training speed",
    "gateway": "a real gateway process: readings/s ingested, memory, stop time",
    "simulate": "the full-stack community simulation: household-hours/s and CPU by layer",
    "dashboard": "the gateway's dashboard: first render, push latency, memory, concurrent viewers",
    "study": "a study on Dask: 1 vs N workers speed-up, per-point overhead, one large point, Case 3 at N agents",
}


def _run(name: str, argv: list[str]) -> int:
    """Each bench is imported only when asked for: `gridpact bench firmware` needs no web3."""
    if name == "meter-sim":
        from benches import meter_sim

        return int(meter_sim.main(argv) or 0)
    if name == "firmware":
        from benches import firmware

        return int(firmware.main(argv) or 0)
    if name == "contracts":
        from benches import contracts

        return int(contracts.main(argv) or 0)
    if name == "negotiation":
        from benches import negotiation

        return int(negotiation.main(argv) or 0)
    if name == "gateway":
        from benches import gateway

        return int(gateway.main(argv) or 0)
    if name == "dashboard":
        from benches import dashboard

        return int(dashboard.main(argv) or 0)
    if name == "study":
        from benches import study

        return int(study.main(argv) or 0)
    from benches import simulate

    return int(simulate.main(argv) or 0)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: gridpact bench <component> [args...]\n\ncomponents:")
        for name, text in HELP.items():
            print(f"  {name:<12} {text}")
        return 0 if argv else 2
    if argv[0] not in HELP:
        print("usage: gridpact bench {" + ",".join(HELP) + "} [args...]", file=sys.stderr)
        return 2
    return _run(argv[0], argv[1:])
