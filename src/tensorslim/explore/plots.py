"""PNG plots of an exploration: the front among all trials, and the mixed-method front vs single-method fronts."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ..study.pareto import pareto_indices


def _figure(ncols: int = 2):
    """A figure on its own Agg canvas (no pyplot, no global backend). Matplotlib is imported here, on the first
    plot: ``tensorslim pick`` and ``explore(..., plots=False)`` import this module and draw nothing."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * ncols, 4.4))
    axes = fig.subplots(1, ncols)
    return fig, list(axes) if ncols > 1 else [axes]


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def front_2d(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (cost, accuracy) front: minimise cost, maximise accuracy; sorted by cost."""
    idx = pareto_indices([(c, -a) for c, a in points])
    return sorted(points[i] for i in idx)


def single_method_trials(trials: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Trials grouped by the one method they use (all-dense trials belong to every group)."""
    families = sorted({m for t in trials for m in t["methods"]})
    return {f: [t for t in trials if set(t["methods"]) <= {f}] for f in families}


def mixed_dominates(mixed: Sequence[Sequence[float]], single: Sequence[Sequence[float]]) -> bool:
    """True when some point of ``mixed`` is not weakly dominated by any point of ``single`` (minimisation)."""
    for m in mixed:
        if not any(all(s_k <= m_k for s_k, m_k in zip(s, m)) for s in single):
            return True
    return False


def _step(ax, pts, **kw) -> None:  # noqa: ANN001
    if pts:
        xs, ys = zip(*pts)
        ax.step(xs, ys, where="post", **kw)
        ax.plot(xs, ys, "o", ms=3, color=kw.get("color"))


def front_plot(pareto: dict[str, Any], trials: Sequence[dict[str, Any]], hifi: Sequence[dict[str, Any]]) -> bytes:
    base = pareto["original"]
    fig, axes = _figure(2)
    for ax, key in zip(axes, ("macs", "memory")):
        ax.scatter([t[key] / base[key] for t in trials], [t["lowfi_accuracy"] for t in trials], s=8, c="0.7",
                   label=f"trials, low fidelity ({len(trials)})")
        ax.scatter([h[key] / base[key] for h in hifi], [h["val_accuracy"] for h in hifi], s=16, c="tab:blue",
                   label=f"full fidelity ({len(hifi)})")
        pts = sorted((p[key] / base[key], p["val_accuracy"]) for p in pareto["points"])
        _step(ax, pts, color="tab:red", label="Pareto set")
        ax.axhline(base["val_accuracy"], color="k", lw=0.6, ls=":", label="original")
        ax.set_xscale("log")
        ax.set_xlabel(f"{key} / original")
        ax.set_ylabel("validation accuracy (%)")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_title(f"{pareto['model']}: exploration front")
    return _png(fig)


def methods_plot(pareto: dict[str, Any], trials: Sequence[dict[str, Any]]) -> bytes:
    base = pareto["original"]
    fig, axes = _figure(2)
    groups = single_method_trials(trials)
    for ax, key in zip(axes, ("macs", "memory")):
        _step(ax, front_2d([(t[key] / base[key], t["lowfi_accuracy"]) for t in trials]), color="k", lw=2,
              label="mixed methods")
        for name, group in groups.items():
            _step(ax, front_2d([(t[key] / base[key], t["lowfi_accuracy"]) for t in group]), lw=1,
                  label=f"{name} only ({len(group)})")
        ax.set_xscale("log")
        ax.set_xlabel(f"{key} / original")
        ax.set_ylabel("low-fidelity accuracy (%)")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_title("mixed-method front vs single-method fronts")
    return _png(fig)
