"""`gridpact study cooperative`: one big cooperative case with its evaluations on a Dask cluster.

The options are those of `gridpact negotiate cooperative` (Chakraborty, Baarslag and Kaisers'
energy loans, e.g. `--case 3 --agents 1000 --days 7`) plus `--cluster local|ADDRESS`: each
period's contract-space evaluations go to the cluster's workers in chunks, the rest of the
period (pairing, negotiation, dispatch) stays in this process. The chunks, and so the result,
do not depend on where they run: the printed fingerprint equals the single-process one for
the same seed. A remote cluster's workers need this project installed (they import the engine).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from gateway.negotiation.cooperative import cli as coop
from gateway.negotiation.cooperative.backends import BackendError
from gridpact.core.signals import stop_within
from hil.study.cluster import connect


def main(argv: list[str]) -> int:
    p = coop.parser()
    p.prog = "gridpact study cooperative"
    p.description = __doc__
    p.add_argument(
        "--cluster",
        default="local",
        metavar="ADDRESS",
        help="'local' (default: a local cluster of --workers processes) or a running Dask "
        "scheduler, e.g. tcp://10.0.0.5:8786",
    )
    args = p.parse_args(argv)
    job = coop.prepare(args)
    if isinstance(job, int):
        return job
    if args.backend == "torch":
        print("gridpact study cooperative: the cluster runs the numpy backend, not torch", file=sys.stderr)
        return 2
    # auto would pick torch where a GPU is present, and torch evaluates in one process
    backend = "numpy" if args.backend == "auto" else args.backend
    address = None if args.cluster == "local" else args.cluster
    try:
        with stop_within(1.5), connect(address, job.settings.workers) as dask:  # gone 1.5 s after a signal
            # evaluation chunks follow the worker count; the result does not (simulation.run)
            job = replace(job, settings=replace(job.settings, backend=backend, workers=max(1, dask.workers)))
            print(
                f"gridpact study cooperative: {len(job.agents)} agents x {job.days:g} days on "
                f"{dask.address} ({dask.workers} workers)",
                file=sys.stderr,
            )
            result, random_run = coop.simulate(job, dask.executor())
    except (BackendError, ValueError) as exc:
        print(f"gridpact study cooperative: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gridpact study cooperative: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gridpact study cooperative: interrupted", file=sys.stderr)
        # our workers are stopped by now; Dask's thread teardown can outlast the 2 s we promise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return coop.finish(job, result, random_run)
