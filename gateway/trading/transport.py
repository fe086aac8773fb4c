"""The community broker adapter (aiomqtt): topics, reconnects, and the raw bytes in and out.

Two subscriptions per gateway: the community's market topic (offers, broadcast) and the
gateway's own inbox topic (direct session messages). Authentication is not the broker's job:
every message is checked by `Inbox`; the broker only carries bytes. Reconnects use capped
exponential backoff with jitter so a community of gateways does not reconnect in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt

from gateway.aio import raise_if_cancel_was_swallowed
from gateway.trading.config import CommunityConfig
from gateway.trading.entropy import SYSTEM, Entropy
from gridpact.core.config import SecretRef, read_secret

log = logging.getLogger("gridpact.gateway.trading")


def community_tls(cfg: CommunityConfig) -> aiomqtt.TLSParameters | None:
    """TLS to the community broker: its CA (or the system's), and a client certificate if configured."""
    if not cfg.tls:
        return None
    return aiomqtt.TLSParameters(
        ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
        certfile=str(cfg.cert_file) if cfg.cert_file else None,
        keyfile=str(cfg.key_file) if cfg.key_file else None,
    )


def market_topic(prefix: str, community: str, level: str = "v1") -> str:
    return f"{prefix}/{community}/{level}/market"


def inbox_topic(prefix: str, community: str, address: str, level: str = "v1") -> str:
    return f"{prefix}/{community}/{level}/gw/{address.lower()}"


def community_filter(prefix: str, community: str) -> str:
    """Every peer message of a community (its market and each gateway's inbox) and nothing else.

    What a broker bridge carries between two brokers of one community (docs/bridging.md): meter
    readings (`PREFIX/meter/...`) and gateway status (`PREFIX/gateway/...`) do not match it.
    """
    return f"{prefix}/{community}/v1/#"


class Transport:
    """Publishes and delivers raw peer messages; `run` keeps the connection up until cancelled."""

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        community: str,
        me: str,
        username: str | None = None,
        password_file: Path | None = None,
        tls: aiomqtt.TLSParameters | None = None,
        level: str = "v1",
        keepalive_s: int = 30,
        entropy: Entropy = SYSTEM,
    ) -> None:
        self.level = level  # the family's topic level: "v1" (trading), "loan-v1" (energy loans)
        self.host, self.port = host, port
        self.tls = tls
        self.prefix, self.community, self.me = prefix, community, me
        self.username = username
        self.password_file = password_file
        self.keepalive_s = keepalive_s
        self.entropy = entropy  # the client id's suffix: a simulated community's repeats under its seed
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    def topic_for(self, to: str | None) -> str:
        return (
            market_topic(self.prefix, self.community, self.level)
            if to is None
            else inbox_topic(self.prefix, self.community, to, self.level)
        )

    async def publish(self, to: str | None, payload: bytes) -> bool:
        """Best effort: False when not connected (the session's timeout handles the loss)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(self.topic_for(to), payload, qos=1)
        except aiomqtt.MqttError:
            return False
        raise_if_cancel_was_swallowed()
        return True

    async def publish_to(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Best effort on a topic of its own (the meters' statements, retained for a restarting keeper)."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(topic, payload, qos=1, retain=retain)
        except aiomqtt.MqttError:
            return False
        raise_if_cancel_was_swallowed()
        return True

    async def run(
        self, deliver: Callable[[bytes], Awaitable[None]], rng: random.Random | None = None
    ) -> None:
        rng = rng or random.Random()
        backoff = 0.5
        password = (
            read_secret(SecretRef("community.password_file", self.password_file)).decode()
            if self.password_file
            else None
        )
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, username=self.username, password=password,
                    identifier=f"gridpact-trade-{self.me.lower()[2:14]}-{self.entropy.randbelow(1 << 30):x}",
                    keepalive=self.keepalive_s, max_queued_incoming_messages=10_000, tls_params=self.tls,
                ) as client:  # fmt: skip
                    raise_if_cancel_was_swallowed()
                    self._client = client
                    await client.subscribe(market_topic(self.prefix, self.community, self.level), qos=1)
                    await client.subscribe(
                        inbox_topic(self.prefix, self.community, self.me, self.level), qos=1
                    )
                    raise_if_cancel_was_swallowed()
                    self.connected.set()
                    backoff = 0.5
                    log.info("event=community_connected host=%s port=%d", self.host, self.port)
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, (bytes, bytearray)):
                            await deliver(bytes(payload))
                        elif isinstance(payload, str):
                            await deliver(payload.encode())
                        else:
                            await deliver(b"")  # counted as malformed by the inbox
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._client = None
                self.reconnects += 1
                log.warning("event=community_disconnected error=%s retry_s=%.1f", exc, backoff)
                await asyncio.sleep(backoff * (0.5 + rng.random()))
                backoff = min(backoff * 2, 30.0)
