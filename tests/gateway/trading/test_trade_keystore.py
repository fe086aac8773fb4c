"""The encrypted keystore: round trip, Pi-sized KDF parameters, passphrase sources, clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.chain.keystore import (
    SCRYPT_N,
    KeystoreError,
    PassphraseSource,
    create_keystore,
    kdf_params,
    keystore_address,
    load_account,
)
from hil.services import DEV_PRIVATE_KEYS

DEV0_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_default_keystore_round_trips_with_pi_sized_scrypt(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    address = create_keystore(path, "correct horse", private_key=DEV_PRIVATE_KEYS[0])
    assert address == DEV0_ADDRESS
    assert keystore_address(path) == DEV0_ADDRESS
    params = kdf_params(path)
    assert params == {"kdf": "scrypt", "dklen": 32, "n": SCRYPT_N, "r": 8, "p": 1}
    assert 128 * params["r"] * params["n"] <= 32 * 2**20  # KDF memory fits a 512 MB Pi
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_account(path, "correct horse").address == DEV0_ADDRESS


def test_pbkdf2_and_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    create_keystore(path, "pw", private_key=DEV_PRIVATE_KEYS[1], kdf="pbkdf2", work=1000)
    assert kdf_params(path)["kdf"] == "pbkdf2"
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        load_account(path, "not it")


def test_refuses_to_overwrite_and_reports_missing(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    create_keystore(path, "pw", work=2**4)
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        create_keystore(path, "pw", work=2**4)
    with pytest.raises(KeystoreError, match="cannot read keystore"):
        load_account(tmp_path / "absent.json", "pw")
    (tmp_path / "junk.json").write_text("{nope")
    with pytest.raises(KeystoreError, match="not JSON"):
        load_account(tmp_path / "junk.json", "pw")


def test_passphrase_from_systemd_credential_then_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "gateway-key-pass").write_text("from-credential\n")
    pw_file = tmp_path / "pass.txt"
    pw_file.write_text("from-file\n")
    source = PassphraseSource(credential="gateway-key-pass", file=pw_file)
    assert source.read({"CREDENTIALS_DIRECTORY": str(creds)}) == "from-credential"
    assert source.read({}) == "from-file"
    with pytest.raises(KeystoreError, match="LoadCredential"):
        PassphraseSource(credential="gateway-key-pass").read({})
    with pytest.raises(KeystoreError, match="cannot read passphrase file"):
        PassphraseSource(file=tmp_path / "none").read({})


@pytest.mark.parametrize("text", ["", "\n", "   \n", "\t"])
def test_empty_passphrases_are_refused_to_create_and_to_read(tmp_path: Path, text: str) -> None:
    """A keystore under an empty passphrase is a key in clear with extra steps."""
    with pytest.raises(KeystoreError, match="passphrase is empty"):
        create_keystore(tmp_path / "k.json", text.rstrip("\n"), DEV_PRIVATE_KEYS[1], kdf="pbkdf2", work=2)
    assert not (tmp_path / "k.json").exists()
    pw_file = tmp_path / "pass.txt"
    pw_file.write_text(text)
    with pytest.raises(KeystoreError, match="passphrase is empty"):
        PassphraseSource(file=pw_file).read({})
