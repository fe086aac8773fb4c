"""`gridpact gateway keystore ...` and `gridpact gateway trade ...` (dispatched by gateway.cli).

keystore create   write a new encrypted key (scrypt sized for a 512 MB Pi), print its address
keystore address  print a keystore's address and KDF parameters without decrypting it
trade status      what the journal holds: agreements by state, transactions in flight, anchoring
trade deposit     move community tokens into the Market (approve + deposit), so the agent can buy
trade export-abi  refresh the Market ABI shipped with the gateway from contracts/artifacts
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from gateway.chain.keystore import (
    KeystoreError,
    PassphraseSource,
    create_keystore,
    kdf_params,
    keystore_address,
)
from gateway.errors import ConfigError
from gridpact.core.config import SecretRef, read_secret

ERC20_ABI = [
    {"type": "function", "name": "approve", "stateMutability": "nonpayable", "outputs": [{"name": "", "type": "bool"}],
     "inputs": [{"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}]},
    {"type": "function", "name": "balanceOf", "stateMutability": "view", "outputs": [{"name": "", "type": "uint256"}],
     "inputs": [{"name": "account", "type": "address"}]},
]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridpact gateway", description="gateway keys and trading tools")
    sub = p.add_subparsers(dest="group", required=True)
    ks = sub.add_parser("keystore", help="the gateway's encrypted key").add_subparsers(
        dest="cmd", required=True
    )
    create = ks.add_parser("create", help="write a new encrypted keystore")
    create.add_argument("--out", type=Path, required=True)
    create.add_argument("--passphrase-file", type=Path)
    create.add_argument("--credential", help="systemd credential name holding the passphrase")
    create.add_argument("--kdf", choices=("scrypt", "pbkdf2"), default="scrypt")
    create.add_argument(
        "--import-key-file", type=Path, help="encrypt this hex private key instead of a new one"
    )
    addr = ks.add_parser("address", help="print the address and KDF of a keystore")
    addr.add_argument("keystore", type=Path)
    trade = sub.add_parser("trade", help="trading journal and funds").add_subparsers(
        dest="cmd", required=True
    )
    status = trade.add_parser("status", help="agreements, transactions in flight, anchoring")
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--json", action="store_true")
    deposit = trade.add_parser("deposit", help="approve and deposit tokens into the Market")
    deposit.add_argument("--config", type=Path, required=True)
    deposit.add_argument("amount", type=int, help="token base units")
    trade.add_parser(
        "export-abi",
        help="refresh the Market and MarketLoans ABIs in gateway/chain/ from contracts/artifacts",
    )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.group == "keystore":
            return _create(args) if args.cmd == "create" else _address(args)
        if args.cmd == "status":
            return _status(args)
        if args.cmd == "deposit":
            return _deposit(args)
        return _export_abi()
    except (KeystoreError, ConfigError) as exc:
        print(f"gridpact gateway: {exc}", file=sys.stderr)
        return 2


def _create(args: argparse.Namespace) -> int:
    source = PassphraseSource(args.credential, args.passphrase_file)
    key_ref = SecretRef("--import-key-file", args.import_key_file) if args.import_key_file else None
    key = read_secret(key_ref).decode().strip() if key_ref else None
    address = create_keystore(args.out, source.read(), private_key=key, kdf=args.kdf)
    print(address)
    return 0


def _address(args: argparse.Namespace) -> int:
    print(json.dumps({"address": keystore_address(args.keystore), **kdf_params(args.keystore)}))
    return 0


def _trading(config: Path):  # -> (GatewayConfig, TradingConfig)
    from gateway.config import load_config

    cfg = load_config(config)
    if cfg.trading is None:
        raise ConfigError("community", "this gateway has no trading sections")
    return cfg, cfg.trading


def _status(args: argparse.Namespace) -> int:
    from gateway.chain.journal import Journal

    cfg, _ = _trading(args.config)
    path = Path(cfg.gateway.state_dir) / "trading.db"
    if not path.exists():
        print(f"no trading journal yet at {path}")
        return 0
    journal = Journal(path)
    try:
        states = Counter(
            f"{r.state}:{r.note}" if r.state == "closed" else r.state for r in journal.agreements()
        )
        pending = [{"key": t.key, "nonce": t.nonce, "hash": t.hash} for t in journal.pending_txs()]
        report = {"journal": str(path), "agreements": dict(states), "pending_txs": pending,
                  "anchor_next_hour": journal.get("anchor_next")}  # fmt: skip
    finally:
        journal.close()
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


def _deposit(args: argparse.Namespace) -> int:
    from web3 import Web3

    from gateway.chain.journal import Journal
    from gateway.chain.keystore import load_account
    from gateway.chain.market import market_abi
    from gateway.chain.sender import TxSender

    cfg, trading = _trading(args.config)
    chain = trading.chain
    account = load_account(
        chain.keystore, PassphraseSource(chain.passphrase_credential, chain.passphrase_file).read()
    )
    w3 = Web3(Web3.HTTPProvider(chain.rpc_url, request_kwargs={"timeout": chain.rpc_timeout_s}))
    journal = Journal(Path(cfg.gateway.state_dir) / "trading.db")
    try:
        sender = TxSender(w3, account, journal, market_abi())
        market = w3.eth.contract(address=Web3.to_checksum_address(chain.market), abi=sender.abi)
        token = w3.eth.contract(address=market.functions.token().call(), abi=ERC20_ABI)
        n = int(journal.get("deposit_count", "0") or 0) + 1
        sender.wait(sender.send(f"approve:{n}", token.functions.approve(market.address, args.amount)).key)
        sender.wait(sender.send(f"deposit:{n}", market.functions.deposit(args.amount)).key)
        journal.set("deposit_count", str(n))
        print(f"deposited {args.amount}; free balance {market.functions.balanceOf(account.address).call()}")
    finally:
        journal.close()
    return 0


def _export_abi() -> int:
    from contracts.build import load_artifact
    from gateway.chain.market import SHIPPED_ABIS

    for name, path in SHIPPED_ABIS.items():
        path.write_text(json.dumps(load_artifact(name)["abi"], indent=0))
        print(f"wrote {path}")
    return 0
