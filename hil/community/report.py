"""The run's report: PNG plots (matplotlib, Agg), one self-contained HTML page, a JSON summary."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hil.community.engine import EngineResult

# Figures drawn for a screen about 700 px wide with 13 pt text: still legible scaled to a phone.
FIGSIZE = (7.0, 4.0)
plt.rcParams.update({"font.size": 13, "axes.titlesize": 13, "legend.fontsize": 11})


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_energy(r: EngineResult, path: Path) -> Path:
    """Community load, PV, grid import/export and P2P energy per hour."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    x = np.arange(r.config.hours)
    ax.plot(x, r.load_kwh.sum(0), label="load")
    ax.plot(x, r.pv_kwh.sum(0), label="PV")
    ax.plot(x, r.grid_imp.sum(0), label="grid import")
    ax.plot(x, r.grid_exp.sum(0), label="grid export")
    ax.bar(x, r.p2p_sold.sum(0), color="tab:purple", alpha=0.6, label="peer to peer")
    ax.set_xlabel("hour of run")
    ax.set_ylabel("kWh per hour")
    ax.legend(fontsize="small", ncol=3)
    return _save(fig, path)


def plot_costs(summary: dict[str, Any], path: Path) -> Path:
    """Per household cost under grid-only, individual battery and community scenarios."""
    rows = summary["households"][:40]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    x = np.arange(len(rows))
    for k, (key, label) in enumerate(
        [
            ("cost_grid_only", "grid only"),
            ("cost_battery_only", "own battery"),
            ("cost_community", "community"),
        ]
    ):
        ax.bar(x + (k - 1) * 0.27, [row[key] for row in rows], width=0.27, label=label)
    ax.set_xticks(x, [row["name"] for row in rows], rotation=90 if len(rows) > 6 else 0, fontsize="small")
    ax.set_ylabel("energy cost (tokens)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_tokens(r: EngineResult, path: Path) -> Path:
    """Each household's tokens over the run, as the change since the start (that is what moves)."""
    from hil.community.summary import token_path

    fig, ax = plt.subplots(figsize=FIGSIZE)
    path_t = token_path(r)
    x = np.arange(r.config.hours + 1)
    shown = min(len(r.specs), 40)
    for i in range(shown):
        # a point per hour end, joined: a settlement in the last hour still shows as a slope
        ax.plot(x, path_t[i] - path_t[i, 0], lw=1.6, marker="." if r.config.hours <= 48 else None,
                label=r.specs[i].name)  # fmt: skip
    ax.axhline(0, color="#888", lw=0.8)
    ax.set_xlabel("end of hour")
    ax.set_ylabel("tokens vs start")
    ax.set_title("token balances: earned from peers minus paid to peers")
    if shown <= 10:
        ax.legend(ncol=min(shown, 3), fontsize="small")
    return _save(fig, path)


def plot_prices(r: EngineResult, path: Path) -> Path:
    """Agreed P2P prices per hour against the retail and feed-in tariffs."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
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
    ax.legend(fontsize="small")
    return _save(fig, path)


CSS = """
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:0 12px 2em;
max-width:1100px;color:#1a1a1a}
h1{font-size:1.6em;margin:.6em 0 .3em}h2{font-size:1.25em;margin-top:1.4em}
li{overflow-wrap:anywhere}
.scroll{overflow:auto;max-width:100%;max-height:32em;border:1px solid #ddd}
table{border-collapse:collapse;font-size:14px}
th{position:sticky;top:0;background:#f2f2f2}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
td.wrap,th.wrap{white-space:normal;text-align:left;min-width:16em}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,30em),1fr));gap:12px}
figure{margin:0}img{width:100%;height:auto;display:block}figcaption{font-size:.9em;color:#555}
.partial{background:#fff3cd;border:2px solid #b58100;padding:8px 12px}
"""


def _table(rows: list[dict[str, Any]], keys: list[str], wrap: tuple[str, ...] = ()) -> str:
    """A table in a box that scrolls on its own, so the page never gets wider than the screen."""
    head = "".join(f"<th{' class=wrap' if k in wrap else ''}>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=wrap' if k in wrap else ''}>{html.escape(str(row.get(k, '')))}</td>" for k in keys
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll" tabindex="0"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _pairs(d: dict[str, Any]) -> str:
    """One record as a two-column table (figure, value): fits a phone where one wide row does not."""
    return _table([{"figure": k, "value": v} for k, v in d.items()], ["figure", "value"])


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head><body>
{body}
</body></html>
"""


def balance_rows(names: list[str], path_t: np.ndarray) -> list[dict[str, Any]]:
    """Per household: tokens at the start and the end, the change, the lowest and highest point."""
    return [
        {
            "household": name,
            "start": round(float(row[0]), 4),
            "final": round(float(row[-1]), 4),
            "change": round(float(row[-1] - row[0]), 4),
            "lowest": round(float(row.min()), 4),
            "highest": round(float(row.max()), 4),
        }
        for name, row in zip(names, path_t, strict=True)
    ]


def _figure(p: Path) -> str:
    data = base64.b64encode(p.read_bytes()).decode()
    return (
        f'<figure><a href="{p.name}"><img alt="{p.stem} plot" src="data:image/png;base64,{data}"></a>'
        f"<figcaption>{p.stem} (tap for full size)</figcaption></figure>"
    )


def _dashboard_links(dashboard: dict[str, Any] | None) -> str:
    """`--dashboard`: where the run was served (up while its process runs; the sign-in was on its terminal)."""
    if not dashboard:
        return ""
    pages = "".join(
        f'<li><a href="{html.escape(url)}">{html.escape(name)}</a></li>'
        for name, url in dashboard["household_pages"].items()
    )
    return f"""<section id="dashboard"><h2>Live dashboard</h2>
<p>Served on loopback while this run's process runs (Ctrl-C ends it); sign in as
<b>{html.escape(dashboard["account"])}</b> with the password the run printed.
<a href="{html.escape(dashboard["community"])}">Community view and block explorer</a> ·
<a href="{html.escape(dashboard["households"])}">households</a>:</p><ul class="dash">{pages}</ul></section>
"""


def _markets(rows: list[dict[str, Any]] | None) -> str:
    """`--market`: the trading models priced on this run's households and weather."""
    if not rows:
        return ""
    return (
        '<section id="markets"><h2>Trading models compared</h2><p>Same households, same weather; costs in '
        "tokens over the run (households' net energy bill), the operator's account, and households worse off "
        "than with their own battery only. Energy loans move energy, not tokens: lent and given back within the run "
        "(traded counts both).</p>" + _table(rows, list(rows[0].keys())) + "</section>\n"
    )


def render_html(
    summary: dict[str, Any],
    images: list[Path],
    balances: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> str:
    """One self-contained page: the figures inlined as base64 PNG, the tables, the layers that ran."""
    comm = summary["community"]
    layers = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in summary["layers"].items()
    )
    checks = "".join(f"<li>{html.escape(c)}</li>" for c in summary.get("checks", []))
    by_stem = {p.stem: p for p in images}
    tokens = by_stem.pop("tokens", None)
    imgs = "".join(_figure(p) for p in by_stem.values())
    keys = list(summary["households"][0].keys()) if summary["households"] else []
    events = events if events is not None else summary.get("events", [])
    ev = _table(events, ["time", "event", "detail"], wrap=("detail",)) if events else "<p>none</p>"
    counters = summary.get("gateway_events") or {}
    if counters:
        ev += "<h3>The gateways' own counters</h3>" + _pairs(counters)
    bal = _table(balances, list(balances[0].keys())) if balances else ""
    body = f"""<h1>gridpact simulate</h1>
<p>{comm["households"]} households, {comm["hours"]} simulated hours, seed {summary["config"]["seed"]},
strategy {html.escape(summary["config"]["strategy"])}, profiles from {summary["config"]["profile_source"]};
wall time {summary["wall_s"]} s.</p>
{_dashboard_links(summary.get("dashboard"))}<section id="balances"><h2>Token balances</h2>
<div class="figs">{_figure(tokens) if tokens else ""}<div>{bal}</div></div></section>
<section id="events"><h2>Events</h2>{ev}</section>
<h2>Figures</h2><div class="figs">{imgs}</div>
{_markets(summary.get("markets"))}<h2>Community</h2>{_pairs(comm)}
<h2>Households</h2>{_table(summary["households"], keys)}
<h2>Layers that ran</h2><ul>{layers}</ul>
<h2>Checks</h2><ul>{checks or "<li>none recorded</li>"}</ul>"""
    return _page("gridpact simulate report", body)


def write_partial_report(
    out: Path,
    hours: list[dict[str, Any]],
    total: int,
    stopped_by: str,
    wall_s: float,
    options: dict[str, Any],
    names: list[str] | None = None,
) -> dict[str, Path]:
    """What a stopped run had: its hourly figures so far, marked partial (no plots: it must be quick)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "partial": True,
        "stopped_by": stopped_by,
        "hours_done": len(hours),
        "hours": total,
        "wall_s": round(wall_s, 3),
        "options": {
            k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
            for k, v in options.items()
        },
        "progress": hours,
    }
    _write_whole(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    rows = [{k: v for k, v in h.items() if k != "balances"} for h in hours]
    last = hours[-1]["balances"] if hours else []
    bal = _table(
        [
            {"household": names[i] if names and i < len(names) else i, "tokens": round(b, 4)}
            for i, b in enumerate(last)
        ],
        ["household", "tokens"],
    )
    body = f"""<h1>gridpact simulate: partial report</h1>
<p class="partial"><b>Partial:</b> the run was stopped by {html.escape(stopped_by)} after {len(hours)} of
{total} simulated hours ({wall_s:.1f} s wall). These are the figures up to that hour; the full report,
its plots and end-of-run checks were not produced.</p>
<section id="balances"><h2>Token balances after hour {len(hours)}</h2>{bal if last else "<p>no hour completed</p>"}</section>
<section id="progress"><h2>Hour by hour</h2>{_table(rows, list(rows[0].keys())) if rows else "<p>none</p>"}</section>"""
    _write_whole(out / "report.html", _page("gridpact simulate report (partial)", body))
    return {"json": out / "summary.json", "html": out / "report.html"}


def _write_whole(path: Path, text: str) -> None:
    """Write beside, then rename: a process ended mid-write leaves the old file or the new one, never
    a truncated one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(r: EngineResult, summary: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write summary.json, the PNGs and report.html under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    images = [
        plot_energy(r, out / "energy.png"),
        plot_costs(summary, out / "costs.png"),
        plot_tokens(r, out / "tokens.png"),
        plot_prices(r, out / "prices.png"),
    ]
    from hil.community.summary import timeline, token_path

    balances = balance_rows([sp.name for sp in r.specs], token_path(r))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "report.html").write_text(
        render_html(summary, images, balances, timeline(r, summary.get("events", [])))
    )
    return {"json": out / "summary.json", "html": out / "report.html", **{p.stem: p for p in images}}
