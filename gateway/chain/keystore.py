"""The gateway's encrypted key: one secp256k1 key signs peer messages, typed agreements and transactions.

The keystore is the standard Web3 Secret Storage (v3) JSON written by eth-account, so any Ethereum
tool can open it. The KDF is sized for a 512 MB Raspberry Pi: scrypt with n=2**15, r=8, p=1 needs
128 * r * n = 32 MiB of RAM and about a second on a Pi 3 (a tenth of that on a laptop); the
eth-account default (n=2**18) would need 256 MiB, half the Pi. pbkdf2-sha256 with 600,000
iterations (the OWASP 2023 figure) is the alternative where memory is scarcer still.

The passphrase is never in the config file: it comes from a systemd credential
($CREDENTIALS_DIRECTORY/<name>, LoadCredential= in the unit) or from a file readable only by the
service user.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount

from gridpact.core.config import ConfigError, SecretRef, read_secret_raw

Kdf = Literal["scrypt", "pbkdf2"]

SCRYPT_N = 2**15  # 32 MiB with r=8: fits a 512 MB Pi with room for the service
PBKDF2_ITERATIONS = 600_000
DEFAULT_KDF: Kdf = "scrypt"


class KeystoreError(RuntimeError):
    """The key cannot be had: missing file, wrong passphrase, unreadable credential. Says which."""


@dataclass(frozen=True)
class PassphraseSource:
    """Where the passphrase lives: a systemd credential name, or a file path (credential first)."""

    credential: str | None = None
    file: Path | None = None

    def read(self, environ: dict[str, str] | None = None) -> str:
        """Read the passphrase (gridpact.core.config's secret reader), stripping one trailing newline; never log it."""
        env = os.environ if environ is None else environ
        cred_dir = env.get("CREDENTIALS_DIRECTORY")
        if self.credential and cred_dir and (Path(cred_dir) / self.credential).exists():
            ref = SecretRef("chain.passphrase_credential", credential=self.credential)
        elif self.file is not None:
            ref = SecretRef("chain.passphrase_file", file=self.file)
        elif self.credential:
            raise KeystoreError(
                f"systemd credential {self.credential!r} not found "
                f"(CREDENTIALS_DIRECTORY={cred_dir!r}); set LoadCredential= in the unit"
            )
        else:
            raise KeystoreError("no passphrase source: give a credential name or a passphrase file")
        try:
            raw = read_secret_raw(ref, env)
        except ConfigError as exc:
            raise KeystoreError(f"cannot read passphrase file {self.file}: {exc.message}") from exc
        return _strip_newline(raw.decode())


def _strip_newline(text: str) -> str:
    return _not_empty(text[:-1] if text.endswith("\n") else text)


def _not_empty(passphrase: str) -> str:
    """An empty (or all-blank) passphrase encrypts the key with nothing: refused, to create or to use."""
    if not passphrase.strip():
        raise KeystoreError("the passphrase is empty: put a real one in the credential or file")
    return passphrase


def kdf_work_factor(kdf: Kdf) -> int:
    """The work factor we write for each KDF (see the module docstring for why)."""
    return SCRYPT_N if kdf == "scrypt" else PBKDF2_ITERATIONS


def encrypt_key(
    private_key: bytes | str, passphrase: str, kdf: Kdf = DEFAULT_KDF, work: int | None = None
) -> dict:
    """The v3 keystore JSON for a key; `work` overrides the work factor (tests use small ones)."""
    key = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else private_key
    return dict(Account.encrypt(key, passphrase, kdf=kdf, iterations=work or kdf_work_factor(kdf)))


def create_keystore(
    path: Path,
    passphrase: str,
    private_key: bytes | str | None = None,
    kdf: Kdf = DEFAULT_KDF,
    work: int | None = None,
) -> str:
    """Write a new keystore (0600, refusing to overwrite) and return its address."""
    _not_empty(passphrase)
    if path.exists():
        raise KeystoreError(f"{path} exists: refusing to overwrite a key")
    key = private_key if private_key is not None else Account.create().key
    data = encrypt_key(key, passphrase, kdf, work)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return Account.from_key(key).address


def keystore_address(path: Path) -> str:
    """The address a keystore holds, without decrypting it."""
    data = _read_json(path)
    address = data.get("address")
    if not isinstance(address, str):
        raise KeystoreError(f"{path} has no address field")
    from eth_utils.address import to_checksum_address

    return to_checksum_address("0x" + address.removeprefix("0x"))


def load_account(path: Path, passphrase: str) -> LocalAccount:
    """Decrypt the keystore; a wrong passphrase is a KeystoreError, not a traceback."""
    data = _read_json(path)
    try:
        key = Account.decrypt(data, passphrase)
    except ValueError as exc:
        raise KeystoreError(f"cannot decrypt {path}: wrong passphrase or damaged keystore") from exc
    return Account.from_key(key)


def kdf_params(path: Path) -> dict[str, Any]:
    """The KDF name and parameters of a keystore (for `status` and for checking the Pi budget)."""
    crypto = _read_json(path).get("crypto", {})
    return {"kdf": crypto.get("kdf"), **{k: v for k, v in crypto.get("kdfparams", {}).items() if k != "salt"}}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise KeystoreError(f"keystore {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise KeystoreError(f"keystore {path} is not a JSON object")
    return data
