"""Golden vectors for the device key and the meter statement (docs/wire/golden/statement-v1.json).

Every expected value comes from the references, never from the firmware: public keys and
signatures from coincurve (libsecp256k1, whose default nonce is RFC 6979 with HMAC-SHA256 and whose
signatures are low-s), Keccak-256 and addresses from eth_utils, statement bytes from the gateway's struct encoder.
The RFC 6979 section lists secp256k1 nonces published with the Bitcoin community's test vectors
(private key 1); tests check them against the firmware's nonce generator too.
`python -m firmware.host.statement_vectors` rewrites the file.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import coincurve
from eth_utils.crypto import keccak

from firmware.host.maps_gen import REPO_ROOT
from gridpact.core import statement

STATEMENT_VECTORS_PATH = REPO_ROOT / "docs" / "wire" / "golden" / "statement-v1.json"
N = statement.SECP256K1_N

# (private key, message whose sha256 is signed, k, r||s) as published for secp256k1/SHA-256.
RFC6979_PUBLISHED = [
    (1, "Satoshi Nakamoto",
     "8f8a276c19f4149656b280621e358cce24f5f52542772691ee69063b74f15d15",
     "934b1ea10a4b3c1757e2b0c017d0b6143ce3c9a7e6a4a49860d7a6ab210ee3d8"
     "2442ce9d2b916064108014783e923ec36b49743e2ffa1c4496f01a512aafd9e5"),
    (1, "All those moments will be lost in time, like tears in rain. Time to die...",
     "38aa22d72376b4dbc472e06c3ba403ee0a394da63fc58d88686c611aba98d6b3", None),
]  # fmt: skip


def _keys() -> list[bytes]:
    """Edge keys (1, 2, n-1, n/2) and hash-derived ones."""
    edge = [1, 2, 3, N - 1, N // 2, N // 2 + 1, 2**255]
    out = [k.to_bytes(32, "big") for k in edge]
    out += [hashlib.sha256(b"gridpact device key %d" % i).digest() for i in range(6)]
    return out


def _digests() -> list[bytes]:
    """Zero, all-ones (>= n: reduced by bits2octets) and ordinary digests."""
    return [bytes(32), b"\xff" * 32, N.to_bytes(32, "big")] + [
        hashlib.sha256(b"gridpact digest %d" % i).digest() for i in range(3)
    ]


def sign_reference(secret: bytes, dg: bytes) -> dict[str, Any]:
    sig = coincurve.PrivateKey(secret).sign_recoverable(dg, hasher=None)
    return {"r": sig[:32].hex(), "s": sig[32:64].hex(), "v": 27 + sig[64]}


def build_statement_vectors() -> dict[str, Any]:
    keys_out = []
    for secret in _keys():
        pub = coincurve.PrivateKey(secret).public_key.format(compressed=False)[1:]
        keys_out.append({"secret": secret.hex(), "public": pub.hex(), "address": statement.address_of(pub)})
    sigs = [
        {"secret": secret.hex(), "digest": dg.hex(), **sign_reference(secret, dg)}
        for i, secret in enumerate(_keys())
        for dg in _digests()[i % 2 :: 2]
    ]
    rfc = [
        {"secret": d.to_bytes(32, "big").hex(), "message": m, "k": k, "rs": rs}
        for d, m, k, rs in RFC6979_PUBLISHED
    ]
    stmts = []
    cases = [
        ("node-01", 1767229200, 0, 0, 0, b""),
        ("node-01", 1767232800, 1234567, 89012, 360, b"window"),
        ("a" * 32, 2**64 - 1, 2**64 - 1, 2**64 - 1, 2**32 - 1, b"max"),
    ]
    secret = _keys()[7]
    for dev, end, imp, exp, n, seed in cases:
        st = statement.Statement(dev, end, imp, exp, n, hashlib.sha256(seed).digest())
        raw = statement.encode(st)
        dg = statement.digest(raw)
        stmts.append({
            "dev": dev, "window_end": end, "import_wh": imp, "export_wh": exp, "readings": n,
            "readings_digest": st.readings_digest.hex(), "hex": raw.hex(), "digest": dg.hex(),
            "secret": secret.hex(), **sign_reference(secret, dg),
        })  # fmt: skip
    bodies = [b'{"v":1,"dev":"node-01","seq":%d}' % i for i in range(3)]
    window = hashlib.sha256(b"".join(len(b).to_bytes(2, "big") + b for b in bodies)).digest()
    texts = [b"", b"abc", b"a" * 135, b"a" * 136, b"a" * 137, bytes(range(256)) * 2]
    hashes = [{"hex": t.hex(), "keccak256": keccak(t).hex()} for t in texts]
    return {
        "keccak": hashes,
        "keys": keys_out,
        "signatures": sigs,
        "rfc6979": rfc,
        "statements": stmts,
        "window": {"bodies": [b.decode() for b in bodies], "readings": 3, "digest": window.hex()},
    }


def main(argv: list[str] | None = None) -> int:
    STATEMENT_VECTORS_PATH.write_text(json.dumps(build_statement_vectors(), indent=1) + "\n")
    print(f"wrote {STATEMENT_VECTORS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
