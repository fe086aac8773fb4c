"""The run's report: PNG plots (matplotlib, Agg), one self-contained HTML page, a JSON summary."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hil.community.engine import EngineResult


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_energy(r: EngineResult, path: Path) -> Path:
    """Community load, PV, grid import/export and P2P energy per hour."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    x = np.arange(r.config.hours)
    ax.plot(x, r.load_kwh.sum(0), label="load")
    ax.plot(x, r.pv_kwh.sum(0), label="PV")
    ax.plot(x, r.grid_imp.sum(0), label="grid import")
    ax.plot(x, r.grid_exp.sum(0), label="grid export")
    ax.bar(x, r.p2p_sold.sum(0), color="tab:purple", alpha=0.6, label="peer to peer")
    ax.set_xlabel("hour of run")
    ax.set_ylabel("kWh per hour")
    ax.legend(fontsize=8, ncol=5)
    return _save(fig, path)


def plot_costs(summary: dict[str, Any], path: Path) -> Path:
    """Per household cost under grid-only, individual battery and community scenarios."""
    rows = summary["households"][:40]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    x = np.arange(len(rows))
    for k, (key, label) in enumerate(
        [
            ("cost_grid_only", "grid only"),
            ("cost_battery_only", "own battery"),
            ("cost_community", "community"),
        ]
    ):
        ax.bar(x + (k - 1) * 0.27, [row[key] for row in rows], width=0.27, label=label)
    ax.set_xticks(x, [row["name"] for row in rows], rotation=90 if len(rows) > 12 else 0, fontsize=7)
    ax.set_ylabel("energy cost (tokens)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_tokens(r: EngineResult, path: Path) -> Path:
    """Token balance of each household after each hour."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    unit = r.ledger.unit
    for i in range(min(len(r.specs), 40)):
        ax.plot(np.arange(1, r.config.hours + 1), r.balance[i] / unit, lw=1)
    ax.set_xlabel("hour of run")
    ax.set_ylabel("token balance")
    return _save(fig, path)


def plot_prices(r: EngineResult, path: Path) -> Path:
    """Agreed P2P prices per hour against the retail and feed-in tariffs."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.step(np.arange(r.config.hours), r.retail, where="post", label="retail")
    ax.axhline(r.config.tariff.feed_in, color="tab:green", label="feed-in")
    unit = r.ledger.unit
    if r.settled:
        ax.scatter(
            [s.hour + 0.5 for s in r.settled],
            [s.trade.price / unit for s in r.settled],
            s=10,
            c=["tab:red" if s.refund else "tab:purple" for s in r.settled],
            label="agreements (red: refunded)",
        )
    ax.set_xlabel("hour of run")
    ax.set_ylabel("tokens per kWh")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _table(rows: list[dict[str, Any]], keys: list[str]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(k, '')))}</td>" for k in keys) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(summary: dict[str, Any], images: list[Path]) -> str:
    """One self-contained page: the figures inlined as base64 PNG, the tables, the layers that ran."""
    comm = summary["community"]
    layers = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in summary["layers"].items()
    )
    checks = "".join(f"<li>{html.escape(c)}</li>" for c in summary.get("checks", []))
    imgs = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{p.stem}</figcaption></figure>"
        for p in images
    )
    keys = list(summary["households"][0].keys()) if summary["households"] else []
    events = summary.get("events", [])
    ev = _table(events, ["t", "event", "detail"]) if events else "<p>none</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gridpact simulate report</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1200px}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}figure{{display:inline-block;margin:4px}}</style>
</head><body>
<h1>gridpact simulate</h1>
<p>{comm["households"]} households, {comm["hours"]} simulated hours, seed {summary["config"]["seed"]},
strategy {html.escape(summary["config"]["strategy"])}, profiles from {summary["config"]["profile_source"]};
wall time {summary["wall_s"]} s.</p>
<h2>Layers that ran</h2><ul>{layers}</ul>
<h2>Checks</h2><ul>{checks or "<li>none recorded</li>"}</ul>
<h2>Community</h2>{_table([comm], list(comm.keys()))}
<h2>Figures</h2>{imgs}
<h2>Households</h2>{_table(summary["households"], keys)}
<h2>Events</h2>{ev}
</body></html>
"""


def write_report(r: EngineResult, summary: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write summary.json, the PNGs and report.html under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    images = [
        plot_energy(r, out / "energy.png"),
        plot_costs(summary, out / "costs.png"),
        plot_tokens(r, out / "tokens.png"),
        plot_prices(r, out / "prices.png"),
    ]
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "report.html").write_text(render_html(summary, images))
    return {"json": out / "summary.json", "html": out / "report.html", **{p.stem: p for p in images}}
