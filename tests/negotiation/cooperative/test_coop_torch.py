"""The torch backend (run on CPU here) gives the numpy results within float tolerance."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

# The GPU backend is an optional extra (`pip install -e .[gpu]`): torch is several GB with CUDA.
# CI installs it after the README's test command (.ci/run runs this file again with the extra);
# elsewhere this says why it did not run.
torch = pytest.importorskip(
    "torch",
    reason="no GPU on this machine, so ./tasks did not install the GPU backend's torch "
    "(GRIDPACT_GPU_EXTRA=1 ./tasks setup installs a CPU build; CI runs this file in its GPU step)",
)

from gateway.negotiation.cooperative import backends, fast  # noqa: E402 - after the optional-extra check
from gateway.negotiation.cooperative.bench import sample_batch  # noqa: E402 - after the optional-extra check
from gateway.negotiation.cooperative.evaluate import EvalBatch  # noqa: E402 - after the optional-extra check
from gateway.negotiation.cooperative.torch_backend import evaluate  # noqa: E402 - after the optional-extra check


def few_scenarios(n: int = 8, risk: float = 1.0) -> EvalBatch:
    """The full contract grid and window on real data, with fewer scenarios to keep CPU time low."""
    torch.set_num_threads(1)
    b = sample_batch(2)
    return EvalBatch(b.demand[:, :n], b.x0, b.batteries, b.lam1, b.lam2, b.q, b.tau, risk)


def test_coop_torch_cpu_matches_numpy_float64() -> None:
    batch = few_scenarios()
    got = evaluate(batch, device="cpu")
    assert np.max(np.abs(got - fast.evaluate(batch))) < 1e-9


def test_coop_torch_cpu_float32_is_close() -> None:
    batch = few_scenarios()
    got = evaluate(batch, device="cpu", dtype=torch.float32)
    want = fast.evaluate(batch)
    assert np.max(np.abs(got - want)) < 1e-4 * np.max(np.abs(want))


def test_coop_backend_selection() -> None:
    has_torch, acc = backends.torch_available()
    assert has_torch
    name, _ = backends.resolve("auto")
    assert name == ("numpy" if acc is None else f"torch:{acc}")
    assert backends.resolve("torch")[0].startswith("torch:")
    assert backends.resolve("reference")[0] == "reference"


def test_coop_torch_backend_runs_the_same_simulation() -> None:
    from gateway.negotiation.cooperative.cases import case
    from gateway.negotiation.cooperative.scenarios import ScenarioModel
    from gateway.negotiation.cooperative.simulation import Settings, run

    torch.set_num_threads(1)
    small = Settings(days=0.1, workers=2, scenario=ScenarioModel(n_scenarios=4))
    with_torch = run(case(1), replace(small, backend="torch"))
    with_numpy = run(case(1), replace(small, backend="numpy", workers=1))
    assert with_torch.backend.startswith("torch:")
    assert [(s.agreed, s.q, s.tau) for s in with_torch.sessions] == [
        (s.agreed, s.q, s.tau) for s in with_numpy.sessions
    ]
    assert np.allclose(with_torch.xi["s2"], with_numpy.xi["s2"], atol=1e-9)
