"""The community broker over TLS: a real Mosquitto with a TLS-only listener that requires client
certificates; two gateways' transports exchange a message through it, a client without TLS or
without a trusted chain gets nothing through, and a config that would send the broker password in
clear off the machine is refused."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiomqtt
import pytest

from gateway.errors import ConfigError
from gateway.trading.config import CommunityConfig, parse_community
from gateway.trading.transport import Transport, community_tls
from hil.pki import make_pki
from hil.services import MosquittoBroker

A, B = "0x" + "aa" * 20, "0x" + "bb" * 20


def transport(port: int, me: str, tls: aiomqtt.TLSParameters | None) -> Transport:
    return Transport("127.0.0.1", port, "gridpact", "oak-street", me, tls=tls)


async def exchange(
    port: int, tls_a: aiomqtt.TLSParameters | None, tls_b: aiomqtt.TLSParameters | None
) -> list[bytes]:
    """What B receives of one message A sends to it within 3 s (both connect first, if they can)."""
    got: list[bytes] = []

    async def into(payload: bytes) -> None:
        got.append(payload)

    async def drop(_: bytes) -> None:
        return None

    a, b = transport(port, A, tls_a), transport(port, B, tls_b)
    async with asyncio.TaskGroup() as tg:
        ta = tg.create_task(a.run(drop, random.Random(1)), name="a")
        tb = tg.create_task(b.run(into, random.Random(2)), name="b")
        try:
            async with asyncio.timeout(3):
                await a.connected.wait()
                await b.connected.wait()
                await a.publish(B, b"hello over tls")
                while not got:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        ta.cancel()
        tb.cancel()
    return got


def test_transports_talk_through_a_tls_broker_with_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = MosquittoBroker(tls=pki, client_certs=True)
    broker.start()
    pid = broker.pid
    try:
        cfg = parse_community(
            {"id": "oak-street", "port": broker.port, "tls": True, "ca_file": str(pki.ca),
             "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}, tmp_path,
        )  # fmt: skip
        tls = community_tls(cfg)
        assert asyncio.run(exchange(broker.port, tls, tls)) == [b"hello over tls"]
        # plain TCP to the TLS listener, or TLS trusting no such CA: nothing gets through
        assert asyncio.run(exchange(broker.port, None, tls)) == []
        stranger_ca = make_pki(tmp_path / "other").ca
        untrusting = aiomqtt.TLSParameters(ca_certs=str(stranger_ca), certfile=str(pki.client_cert),
                                           keyfile=str(pki.client_key))  # fmt: skip
        assert asyncio.run(exchange(broker.port, untrusting, tls)) == []
        # TLS without a client certificate: the broker requires one
        assert asyncio.run(exchange(broker.port, aiomqtt.TLSParameters(ca_certs=str(pki.ca)), tls)) == []
    finally:
        broker.close()
    assert pid is not None and not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"host": "10.0.0.5", "username": "h1", "password_file": "pw"}, "community.tls"),
        ({"host": "broker.example.org", "username": "h1", "password_file": "pw"}, "community.tls"),
        ({"tls": True, "cert_file": "c.pem"}, "community.cert_file"),
        ({"ca_file": "ca.pem"}, "community.tls"),
    ],
)
def test_configs_that_would_leak_or_half_configure_tls_are_refused(
    table: dict, key: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_community({"id": "oak-street", **table}, tmp_path)


def test_a_password_over_loopback_or_tls_is_fine(tmp_path: Path) -> None:
    local = parse_community({"id": "oak-street", "username": "h", "password_file": "pw"}, tmp_path)
    remote = parse_community(
        {"id": "oak-street", "host": "10.0.0.5", "username": "h", "password_file": "pw", "tls": True},
        tmp_path,
    )
    assert isinstance(local, CommunityConfig) and community_tls(local) is None
    assert remote.tls and community_tls(remote) is not None
