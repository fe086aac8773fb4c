"""What the contract commands of `gridpact contracts` share: an action's parser with its node and contract."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def action_parser(
    acts: Any, name: str, helptext: str, contract: str, add_key: Callable[[argparse.ArgumentParser, bool], None],
    signed: bool = True,
) -> argparse.ArgumentParser:  # fmt: skip
    """An action taking `--rpc URL`, `--<contract> ADDRESS` and, when `signed`, the signing key's options."""
    p = acts.add_parser(name, help=helptext)
    p.add_argument("--rpc", required=True, help="JSON-RPC URL")
    p.add_argument(f"--{contract}", required=True, help=f"the {contract} contract's address")
    if signed:
        add_key(p, True)
    return p
