"""PyTorch evaluation of the contract space, for an accelerator (CUDA) when one is present.

On a GPU the plain lock-step simulation of every (agent, scenario, q, τ) lane is the best
fit: it is one wide elementwise kernel chain per period with no data-dependent control
flow. It computes the same formula as `evaluate.reference`, so results agree with the numpy
paths to float rounding (float64 by default; float32 within about 1e-4 relative).
torch is optional: importing this module without it raises ImportError with the reason.
"""

# torch is an optional extra: without it the type checker sees `torch` as unknown, not as an error.
# pyright: reportMissingImports=false

from __future__ import annotations

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only where torch is absent
    raise ImportError("the torch backend needs PyTorch (pip install torch==2.13.0)") from exc

from gateway.negotiation.cooperative.evaluate import EvalBatch


def accelerator() -> str | None:
    """Name of a usable accelerator device, or None on a CPU-only machine."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return None


def _col(values: list[float], a: int, dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=dev).reshape(a, 1, 1, 1)


def evaluate(batch: EvalBatch, device: str | None = None, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """EU of shape (A, nq, nt), the same numbers as `evaluate.reference(batch)`."""
    dev = torch.device(device or accelerator() or "cpu")
    if dev.type == "mps" and dtype == torch.float64:
        dtype = torch.float32  # MPS has no float64
    a, s, w, nq, nt = batch.shape
    bs = batch.batteries
    xmin = _col([b.xmin for b in bs], a, dev, dtype)
    xmax = _col([b.xmax for b in bs], a, dev, dtype)
    uc = _col([b.uc for b in bs], a, dev, dtype)
    ud = _col([b.ud for b in bs], a, dev, dtype)
    etac = _col([b.eta_charge for b in bs], a, dev, dtype)
    etad = _col([b.eta_discharge for b in bs], a, dev, dtype)
    eps = _col([b.eps for b in bs], a, dev, dtype)
    lam1 = torch.as_tensor(batch.lam1, dtype=dtype, device=dev).reshape(a, 1, 1, 1)
    lam2 = torch.as_tensor(batch.lam2, dtype=dtype, device=dev).reshape(a, 1, 1, 1)
    q = torch.as_tensor(batch.q, dtype=dtype, device=dev).reshape(a, 1, nq, 1)
    demand = torch.as_tensor(batch.demand, dtype=dtype, device=dev)
    tau = torch.as_tensor(batch.tau, device=dev).reshape(1, 1, 1, nt)
    x0 = torch.as_tensor(batch.x0, dtype=dtype, device=dev).reshape(a, 1, 1, 1).expand(a, s, nq, nt)
    x = x0.clone()
    cost = torch.zeros((a, s, nq, nt), dtype=dtype, device=dev)
    zero = torch.zeros((), dtype=dtype, device=dev)

    def to_grid(y: torch.Tensor) -> torch.Tensor:
        return torch.where(y >= 0, y / etac, y * etad)

    for k in range(w):
        d = demand[:, :, k].reshape(a, s, 1, 1) - q * (tau == k).to(dtype)
        if k == 0:
            d = d + q
        u = torch.minimum(torch.maximum(-d, zero), uc)
        v = torch.minimum(torch.maximum(d, zero), ud)
        xn = torch.minimum(torch.maximum(x + etac * u - v / etad - eps, xmin), xmax)
        e = to_grid(xn - x + eps)
        cost = cost + lam1 * e + lam2 * torch.abs(d + e)
        x = xn
    u_all = -(cost + lam1 * to_grid(x0 - x))
    eu = u_all.mean(dim=1)
    z = batch.zero_column()
    if batch.risk > 0.0 and z >= 0:
        gain = u_all - u_all[:, :, z : z + 1, :]
        eu = eu - batch.risk * gain.std(dim=1, correction=0)
    return eu.to("cpu", torch.float64).numpy()
