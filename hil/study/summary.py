"""The study's table (CSV) and its HTML summary: each metric against each swept parameter.

One figure per (metric, swept parameter): the mean over seeds and every other setting held at
each value, with the spread over seeds (min..max as error bars, one dot per seed). Parquet is
not written: pyarrow is a large dependency the project does not otherwise need, and the CSV
loads in one call in any tool.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from hil.study.grid import Study

COLUMNS = (
    "key", "mode", "seed", "strategy", "market", "households", "days",
    "welfare_gain_vs_grid_only", "welfare_gain_vs_battery_only", "p2p_kwh", "self_sufficiency",
    "trades", "refunds", "mean_p2p_price", "token_conservation", "sim_s", "point_s",
)  # fmt: skip


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows([[r.get(c, "") for c in COLUMNS] for r in rows])
    return path


def spread(rows: list[dict[str, Any]], param: str, metric: str) -> list[tuple[Any, list[float]]]:
    """(parameter value, the metric's values over seeds and all other settings), in value order."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for r in rows:
        groups[r[param]].append(float(r[metric]))
    return sorted(groups.items(), key=lambda kv: (isinstance(kv[0], str), kv[0]))


def _figure(rows: list[dict[str, Any]], param: str, metric: str) -> str:
    data = spread(rows, param, metric)
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=90)
    numeric = all(isinstance(v, (int, float)) for v, _ in data)
    xs = [v if numeric else i for i, (v, _) in enumerate(data)]
    means = [sum(vals) / len(vals) for _, vals in data]
    lo = [m - min(vals) for m, (_, vals) in zip(means, data, strict=True)]
    hi = [max(vals) - m for m, (_, vals) in zip(means, data, strict=True)]
    ax.errorbar(xs, means, yerr=[lo, hi], fmt="-o" if numeric else "o", capsize=4, label="mean, min..max")
    for x, (_, vals) in zip(xs, data, strict=True):
        ax.plot([x] * len(vals), vals, ".", color="grey", alpha=0.6)
    if not numeric:
        ax.set_xticks(xs, [str(v) for v, _ in data])
    ax.set_xlabel(param)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric} vs {param}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(study: Study, rows: list[dict[str, Any]], failed: dict[str, str]) -> str:
    """A self-contained page (figures inlined, no external resources), readable on a phone."""
    swept = list(study.swept) or ["seed"]
    figs = []
    for metric in study.metrics:
        for param in swept:
            img = _figure(rows, param, metric) if rows else ""
            alt = f"{metric} against {param}, spread over seeds"
            figs.append(
                f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{img}">'
                f"<figcaption>{html.escape(alt)}</figcaption></figure>"
            )
    head = "".join(f"<th scope=col>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in COLUMNS) + "</tr>"
        for r in rows
    )
    fails = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in failed.items())
    seeds = sorted({r["seed"] for r in rows})
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>study {html.escape(study.name)}</title><style>"
        "body{font-family:sans-serif;margin:1em;max-width:70em}img{max-width:100%;height:auto}"
        "figure{display:inline-block;margin:.5em}.t{overflow-x:auto}table{border-collapse:collapse;font-size:.8em}"
        "td,th{border:1px solid #ccc;padding:2px 4px}</style></head><body>"
        f"<h1>Study {html.escape(study.name)}</h1>"
        f"<p>{len(rows)} of {len({p.key for p in study.points})} points done; swept: "
        f"{html.escape(', '.join(study.swept) or 'seeds only')}; spread over seeds {seeds}.</p>"
        + (f"<h2>Failed points</h2><ul>{fails}</ul>" if fails else "")
        + "<h2>Figures</h2>"
        + "".join(figs)
        + f"<h2>All points</h2><div class=t><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        + "</body></html>\n"
    )


def write_summary(
    study: Study, rows: list[dict[str, Any]], failed: dict[str, str], out: Path
) -> dict[str, Path]:
    """results.csv and summary.html under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out / "results.csv")
    html_path = out / "summary.html"
    html_path.write_text(render_html(study, rows, failed))
    return {"csv": csv_path, "html": html_path}
