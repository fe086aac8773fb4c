"""Where the full-stack run's services are: broker and chain URLs, the simulated start, quiet logs."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from requests.sessions import Session


def parse_broker_url(url: str) -> tuple[str, int]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ValueError(f"--broker must look like mqtt://HOST:PORT, got {url!r}")
    return u.hostname, u.port or 1883


def summer_start_after(ts: int) -> int:
    """The first June 1st 00:00 UTC after `ts`: chains only move forward, and PV matters in June."""
    year = time.gmtime(ts).tm_year
    for y in (year, year + 1):
        start = int(time.mktime((y, 6, 1, 0, 0, 0, 0, 0, 0)) - time.timezone)
        if start > ts + 3600:
            return start
    raise AssertionError("unreachable")


@contextlib.contextmanager
def quiet_amqtt() -> Iterator[None]:
    """amqtt logs tracebacks for every connection a restart cuts: keep them off the progress display."""
    loggers = [logging.getLogger(name) for name in ("amqtt", "asyncio", "transitions")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    hook = sys.unraisablehook

    def filtered(info: Any) -> None:
        if "amqtt" not in repr(info.object) and "amqtt" not in repr(info.exc_value):
            hook(info)

    sys.unraisablehook = filtered
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def rpc_session(url: str) -> Session:
    """The HTTP session for a JSON-RPC node; one on this machine is reached without a proxy.

    requests otherwise looks up the proxy variables and ~/.netrc before each request: a tenth
    of the cost of each of a run's tens of thousands of requests to a local node."""
    from requests.sessions import Session

    session = Session()
    session.trust_env = urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1")
    return session


def connect_chain(url: str | None) -> tuple[Any, str]:
    """A Web3 on the given JSON-RPC node, or the in-process EVM."""
    from hil.services import in_process_web3

    if url is None:
        return in_process_web3(), "in-process py-evm"
    from web3 import Web3
    from web3.types import RPCEndpoint

    # the chain id never changes, and web3 asks for it before every call it validates
    provider = Web3.HTTPProvider(
        url, request_kwargs={"timeout": 30}, session=rpc_session(url), cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )  # fmt: skip
    w3 = Web3(provider)
    if not w3.is_connected():
        raise ValueError(f"no Ethereum node answers at {url}")
    return w3, url
