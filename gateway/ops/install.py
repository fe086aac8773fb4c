"""`gridpact gateway install-service`: put the shipped unit in place with this install's paths."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

DEFAULT_EXEC = "/usr/local/bin/gridpact"
DEFAULT_CONFIG = "/etc/gridpact/gateway.toml"
UNIT_NAME = "gridpact-gateway.service"
PASSPHRASE_CREDENTIAL = "gateway-key-pass"


def shipped_unit() -> str:
    return resources.files("gateway.ops").joinpath(UNIT_NAME).read_text(encoding="utf-8")


def render_unit(executable: str, config: str, template: str | None = None, trading: bool = True) -> str:
    """The unit with ExecStart pointing at `executable` and `config` (both absolute paths); without
    `trading`, the keystore passphrase credential is left out (its file would not exist)."""
    for name, value in (("executable", executable), ("config", config)):
        if not value.startswith("/") or any(c in value for c in " \n\t\"'\\%$"):
            raise ValueError(f"{name} must be an absolute path without spaces or quotes: {value!r}")
    text = template if template is not None else shipped_unit()
    lines = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={executable} gateway run --config {config}"
        if not trading and line.startswith(f"LoadCredential={PASSPHRASE_CREDENTIAL}:"):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def find_executable() -> str:
    """The absolute path of this install's `gridpact` (next to the running Python, else on PATH)."""
    candidate = Path(sys.executable).parent / "gridpact"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("gridpact")
    return str(Path(found).resolve()) if found else DEFAULT_EXEC


def install(unit_dir: Path, executable: str, config: str, reload: bool, trading: bool = True) -> Path:
    """Write the unit into `unit_dir` and optionally ask systemd to reload; returns the unit's path."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    target = unit_dir / UNIT_NAME
    target.write_text(render_unit(executable, config, trading=trading), encoding="utf-8")
    target.chmod(0o644)
    if reload:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
    return target


def next_steps(target: Path, config: str, trading: bool = True) -> str:
    lines = [
        f"installed {target}",
        "next steps:",
        f"  sudo install -D -m 0640 gateway.toml {shlex.quote(config)}",
        "  sudo install -m 0600 meter-hmac.key /etc/gridpact/meter-hmac.key",
    ]
    if trading:
        lines.append("  sudo install -m 0600 key-pass /etc/gridpact/key-pass   (the keystore passphrase)")
    lines += ["  sudo systemctl enable --now gridpact-gateway.service", "  journalctl -u gridpact-gateway -f"]
    return "\n".join(lines)
