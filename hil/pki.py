"""A throwaway PKI for tests and benches: a CA, a server certificate for 127.0.0.1, a client one.

Made with Debian's `openssl` command (the project adds no crypto library for it). What a community
would run for its broker is described in docs/gateway-trading.md; this is only for the rigs.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {out.stderr.strip()[-500:]}")


def make_pki(folder: Path, server_ip: str = "127.0.0.1") -> Pki:
    """CA + server (SAN IP `server_ip`) + client certificates, EC P-256, valid one day."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", "/CN=gridpact test CA")  # fmt: skip
    made: dict[str, tuple[Path, Path]] = {}
    for name, subject, ext in (
        ("server", f"/CN={server_ip}", f"subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth\n"),
        ("client", "/CN=gridpact test client", "extendedKeyUsage=clientAuth\n"),
    ):
        key, csr, cert, extfile = (folder / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
        extfile.write_text(ext)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", subject)  # fmt: skip
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", "1", "-extfile", str(extfile))  # fmt: skip
        made[name] = (cert, key)
    return Pki(ca, made["server"][0], made["server"][1], made["client"][0], made["client"][1])
