"""The rig's broker: a Mosquitto the scenarios can stop and start.

Virtual boards use the loopback Mosquitto of `hil.services`. A real board reaches the broker
over WiFi, so on a bench Mosquitto listens on the bench host's LAN address from the rig file.
Either keeps sessions across a restart (persistence on), as a household's broker should.
"""

from __future__ import annotations

from hil.rig import Rig
from hil.services import MosquittoBroker


def start_bench_broker(rig: Rig) -> MosquittoBroker:
    """A started broker for this rig: loopback for virtual boards, the bench LAN for real ones."""
    if rig.hardware:
        bench = MosquittoBroker(port=rig.broker_port or 1883, host=rig.broker_host, persistent=True)
        bench.start()
        return bench
    broker = MosquittoBroker(persistent=True)
    broker.start()
    return broker
