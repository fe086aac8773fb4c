"""`gridpact study FILE`: sweep the community simulator over a grid of points on a Dask cluster.

FILE is a TOML grid (see docs/studies/example.toml and docs/study.md). Points run on a local
cluster of worker processes by default, or on a running Dask cluster with `--cluster ADDRESS`.
`gridpact study cooperative ...` runs one big cooperative case on the cluster instead (hil/study/coop.py).
Results go to OUT/results.csv and OUT/summary.html; each point's row is kept in OUT/points/,
so a study interrupted (Ctrl-C, SIGTERM) and started again skips the points already done.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hil.study import grid

STOP_DEADLINE_S = 1.5  # a signal ends the study within this, even if a cluster client swallowed it


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gridpact study", description=__doc__, epilog="gridpact study cooperative --help: one big case"
    )
    p.add_argument("file", type=Path, help="the study's TOML grid")
    p.add_argument("--out", type=Path, help="output folder (default: study-out/NAME)")
    p.add_argument("--cluster", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="local cluster's worker processes"
    )
    p.add_argument(
        "--shared-fs",
        action="store_true",
        help="with --cluster: the workers see --out at the same path (NFS...), so they store rows themselves",
    )
    p.add_argument("--marks", type=Path, help="audit folder (shared filesystem): one file per point computed")
    p.add_argument("--dry-run", action="store_true", help="list the points and which are done, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str]) -> int:
    if argv[:1] == ["cooperative"]:
        from hil.study import coop

        return coop.main(argv[1:])
    if argv[:1] == ["cooperative-live"]:  # the cooperative claim with live gateways (Mosquitto, anvil)
        from hil import loans_live

        return loans_live.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        study = grid.load(args.file)
    except ValueError as exc:
        print(f"gridpact study: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("gridpact study: --workers must be >= 1", file=sys.stderr)
        return 2
    out: Path = args.out or Path("study-out") / study.name
    from hil.study.points import load_row
    from hil.study.runner import Progress, result_path

    if args.dry_run:
        for p in study.points:
            state = "done" if load_row(result_path(out, p)) is not None else "todo"
            print(f"{p.key} {state} {p.label()}")
        return 0
    if args.marks is not None:
        args.marks.mkdir(parents=True, exist_ok=True)
    from gridpact.core.signals import stop_within
    from hil.study.cluster import connect
    from hil.study.runner import run_study
    from hil.study.summary import write_summary

    total = len({p.key for p in study.points})
    try:
        with stop_within(STOP_DEADLINE_S), connect(args.cluster, args.workers) as cluster:
            done = sum(load_row(result_path(out, p)) is not None for p in study.points)
            progress = Progress(total, done, quiet=args.quiet)
            shared = args.cluster is None or args.shared_fs
            marks = args.marks.resolve() if args.marks is not None else None
            outcome = run_study(study, out.resolve(), cluster, marks, progress, shared)
        paths = write_summary(study, outcome.rows, outcome.failed, out)
    except KeyboardInterrupt:
        print("gridpact study: interrupted; finished points are kept, run again to go on", file=sys.stderr)
        # Everything this study started is stopped by now; the interpreter's own teardown of
        # Dask's threads can take seconds on a loaded machine, and the 2 s promise is ours.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    except OSError as exc:
        print(f"gridpact study: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2
    print(
        f"study {study.name}: {len(outcome.rows)}/{total} points done ({outcome.ran} ran, "
        f"{outcome.skipped} skipped, {len(outcome.failed)} failed) in {outcome.wall_s:.1f} s; "
        f"table {paths['csv']}; summary {paths['html']}"
    )
    for key, why in outcome.failed.items():
        print(f"  failed {key}: {why}", file=sys.stderr)
    return 1 if outcome.failed else 0
