"""Load the device's MicroPython modules into a private namespace on CPython.

Each virtual board gets its own copy of every device module, and its own `machine`, `network`,
`time`, ... shims, so that several boards can run in one process without sharing state and
without touching `sys.modules`.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

DEVICE_DIR = Path(__file__).resolve().parents[1] / "device"


class DeviceNamespace:
    """Imports inside the device code resolve to shims first, then to device modules, then to CPython."""

    def __init__(
        self,
        shims: Mapping[str, types.ModuleType],
        device_dir: Path = DEVICE_DIR,
        print_fn: Callable[..., None] | None = None,
    ) -> None:
        self.device_dir = device_dir
        self.modules: dict[str, types.ModuleType] = dict(shims)
        self.builtins: dict[str, Any] = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import
        if print_fn is not None:
            self.builtins["print"] = print_fn

    def _import(
        self,
        name: str,
        globals_: Mapping[str, object] | None = None,
        locals_: Mapping[str, object] | None = None,
        fromlist: tuple[str, ...] | list[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level == 0:
            mod = self.modules.get(name)
            if mod is not None:
                return mod
            if (self.device_dir / f"{name}.py").exists():
                return self.load(name)
        return builtins.__import__(name, globals_, locals_, fromlist or (), level)

    def load(self, name: str) -> types.ModuleType:
        """Execute device module `name` (once) in this namespace and return it."""
        if name in self.modules:
            return self.modules[name]
        path = self.device_dir / f"{name}.py"
        mod = types.ModuleType(name)
        mod.__file__ = str(path)
        mod.__dict__["__builtins__"] = self.builtins
        self.modules[name] = mod
        try:
            exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
        except BaseException:
            del self.modules[name]
            raise
        return mod

    def run_script(self, code: str, filename: str = "<device script>") -> dict[str, Any]:
        """Run a script as the device would (its imports see this namespace); returns its globals."""
        glb: dict[str, Any] = {"__name__": "__main__", "__builtins__": self.builtins}
        exec(compile(code, filename, "exec"), glb)
        return glb
