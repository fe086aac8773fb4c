"""Choosing how the contract space is evaluated: `--backend auto|numpy|torch|reference`.

auto: torch when it is installed and an accelerator is present, else the fast numpy path.
All backends compute the same expected utilities (the reference path up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gateway.negotiation.cooperative import evaluate as ev
from gateway.negotiation.cooperative import fast

Evaluator = Callable[[ev.EvalBatch], np.ndarray]
BACKENDS = ("auto", "numpy", "torch", "reference")


class BackendError(ValueError):
    """An unknown backend, or one that cannot run here (with the reason)."""


def torch_available() -> tuple[bool, str | None]:
    """(torch importable, accelerator name or None)."""
    try:
        from gateway.negotiation.cooperative import torch_backend
    except ImportError:
        return False, None
    return True, torch_backend.accelerator()


def resolve(name: str) -> tuple[str, Evaluator]:
    """(resolved backend name, evaluator) for a --backend value."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "reference":
        return "reference", ev.reference
    if name == "numpy":
        return "numpy", fast.evaluate
    has_torch, acc = torch_available()
    if name == "auto":
        if has_torch and acc is not None:
            return f"torch:{acc}", _torch_evaluator(acc)
        return "numpy", fast.evaluate
    if not has_torch:
        raise BackendError("backend 'torch' needs PyTorch: pip install torch==2.13.0")
    device = acc or "cpu"
    return f"torch:{device}", _torch_evaluator(device)


def _torch_evaluator(device: str) -> Evaluator:
    from gateway.negotiation.cooperative import torch_backend

    def run(batch: ev.EvalBatch) -> np.ndarray:
        return torch_backend.evaluate(batch, device=device)

    return run
