"""The report's PNG plots: accuracy against a cost with the Pareto front, and per-layer bars of a compressed model.

matplotlib's object API with the Agg canvas: no global backend or pyplot state is touched.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from .compare import pareto_front
from .entry import Entry, number

_MAX_BARS = 30

COST_AXES = {
    "params": ("parameters", "accuracy_vs_params.png", "Accuracy vs parameters"),
    "macs": ("MACs per sample", "accuracy_vs_macs.png", "Accuracy vs MACs"),
    "latency": ("latency (ms)", "accuracy_vs_latency.png", "Accuracy vs measured latency"),
}


def _figure(w: float = 7.0, h: float = 4.4) -> Figure:
    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _cost(e: Entry, key: str) -> float | None:
    return {"params": e.params, "macs": e.macs, "latency": e.latency_ms}[key]


def scatter(entries: list[Entry], key: str) -> tuple[bytes, list[str]] | None:
    pts = [(e, float(_cost(e, key))) for e in entries if _cost(e, key) and e.accuracy is not None]  # type: ignore
    if not pts:
        return None
    front = pareto_front([(c, e.accuracy) for e, c in pts])  # type: ignore[misc]
    front_names = [pts[i][0].name for i in front]
    xlabel, _, title = COST_AXES[key]
    fig = _figure()
    ax = fig.add_subplot()
    for e, c in pts:
        style = dict(marker="s", color="#444444") if not e.compressed else dict(marker="o", color="#1f77b4")
        ax.scatter([c], [e.accuracy], s=42, zorder=3, **style)
        ax.annotate(e.name, (c, e.accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    fx = [pts[i][1] for i in front]
    fy = [pts[i][0].accuracy for i in front]
    ax.step(fx, fy, where="post", color="#d62728", lw=1.2, alpha=0.8, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="#d62728", lw=1.5, zorder=4)
    costs = [c for _, c in pts]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    if key != "latency":
        ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
    if ax.get_xscale() != "log":
        ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_xlabel(xlabel + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles = [
        ax.scatter([], [], marker="s", color="#444444", label="original"),
        ax.scatter([], [], marker="o", color="#1f77b4", label="compressed"),
        ax.plot([], [], color="#d62728", label="Pareto front (ringed)")[0],
    ]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    ax.margins(x=0.15, y=0.12)
    return _png(fig), front_names


def layer_rows(e: Entry, original: Entry | None) -> list[tuple[str, float, float, float, float]]:
    """(layer, params before, after, MACs before, after) for the compressed layers of ``e``."""
    rows = []
    keys = ("params_before", "params_after", "macs_before", "macs_after")
    for layer in e.layers:
        values = [number(layer.get(k)) for k in keys]
        if isinstance(layer.get("name"), str) and all(v is not None for v in values):
            rows.append((layer["name"], *values))  # type: ignore[arg-type]
    if rows or original is None or not e.profile or not original.profile:
        return rows
    for row in original.profile:  # fall back to the two profiles, matched by name
        name = row["name"]
        sub = [r for r in e.profile if r["name"] == name or r["name"].startswith(name + ".")]
        after_p, after_m = sum(r["params"] for r in sub), sum(r["macs"] for r in sub)
        if sub and (after_p, after_m) != (row["params"], row["macs"]):
            rows.append((name, row["params"], after_p, row["macs"], after_m))
    return rows


def bar_order(e: Entry, rows: list[tuple[str, float, float, float, float]]
              ) -> list[tuple[str, float, float, float, float]]:
    """The rows to plot, in network order (the order of ``e``'s profile; record order for a layer not in it).

    With more than ``_MAX_BARS`` rows, the ``_MAX_BARS`` with the most MACs before compression are kept.
    """
    names = [r["name"] for r in e.profile or [] if isinstance(r.get("name"), str)]

    def position(k: int) -> tuple[int, int]:
        layer = rows[k][0]
        at = next((i for i, n in enumerate(names) if n == layer or n.startswith(layer + ".")), len(names))
        return at, k

    keep = sorted(range(len(rows)), key=lambda k: -rows[k][3])[:_MAX_BARS]
    return [rows[k] for k in sorted(keep, key=position)]


def layer_bars(e: Entry, rows: list[tuple[str, float, float, float, float]]) -> bytes:
    """Per-layer params and MACs, original vs compressed, first layer of the network at the top."""
    rows = bar_order(e, rows)[::-1]  # barh draws the first row at the bottom
    names = [r[0] for r in rows]
    y = np.arange(len(rows))
    fig = _figure(9.0, max(2.6, 0.42 * len(rows) + 1.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (i, j), what in zip(axes, ((1, 2), (3, 4)), ("parameters", "MACs per sample")):
        before = [r[i] for r in rows]
        after = [r[j] for r in rows]
        ax.barh(y + 0.2, before, 0.4, color="#999999", label="original")
        ax.barh(y - 0.2, after, 0.4, color="#1f77b4", label="compressed")
        for k, (b, a) in enumerate(zip(before, after)):
            if a > 0:
                ax.annotate(f"{b / a:.1f}×", (max(a, b), k), xytext=(4, -3), textcoords="offset points",
                            fontsize=7)
        ax.set_xlabel(what)
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.18)
    axes[0].set_yticks(y, names, fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_formatter(EngFormatter(sep=" "))
        ax.xaxis.set_major_locator(MaxNLocator(5))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle(f"{e.name}: compressed layers, original vs compressed" +
                 (f" (vs {e.original})" if e.original else ""), fontsize=10)
    return _png(fig)
