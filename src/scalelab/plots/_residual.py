"""Pictures for deep residual networks: depth scaling, lr transfer, stochastic-depth budgets.

Training curves use :func:`scalelab.plots.plot_training_losses`.

Each function takes a list of flat record dicts (what the reproductions store in
``result.json``) plus a path, and returns the path of the PNG written.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._common import plt, savefig


def _series(records, group: str, x: str, y: str) -> dict:
    out: dict = defaultdict(list)
    for r in records:
        v = r.get(y)
        if v is not None and math.isfinite(v):
            out[r[group]].append((r[x], v))
    return {k: sorted(v) for k, v in out.items()}


def plot_depth_scaling(records: Sequence[Mapping], path: str | Path) -> Path:
    """Output-variance ratio and gradient-norm ratio vs depth, one line per scaling mode.

    Records: ``{"mode", "depth", "variance_ratio", "grad_ratio"}`` (ratios to the input layer's).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "variance_ratio", "output variance q_L / q_0"),
                           (axes[1], "grad_ratio", "squared gradient norm at y_0 (ratio)")):
        for mode, pts in _series(records, "mode", "depth", key).items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=mode)
        ax.set(xscale="log", yscale="log", xlabel="depth L (blocks)", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    return savefig(fig, path)


def plot_lr_transfer(records: Sequence[Mapping], path: str | Path, cap: float = 10.0,
                     optima: Mapping[str, Mapping] | None = None) -> Path:
    """Loss vs learning rate, one line per depth, one panel per parametrisation.

    Records: ``{"param", "depth", "lr", "loss"}`` and optionally ``"seed_losses"`` (drawn as
    min-max error bars when there are several); losses above ``cap`` are drawn at ``cap``.
    A star marks each depth's best grid learning rate; ``optima`` (param -> {depth: log10
    lr}, e.g. the parabola-refined optima) adds a vertical tick per depth at that lr.
    """
    params = list(dict.fromkeys(r["param"] for r in records))
    fig, axes = plt.subplots(1, len(params), figsize=(5.2 * len(params), 4.2), squeeze=False,
                             sharey=True)
    for ax, param in zip(axes[0], params, strict=True):
        rows = [r for r in records if r["param"] == param]
        series = _series(rows, "depth", "lr", "loss")
        cmap = plt.get_cmap("viridis")
        for i, (depth, pts) in enumerate(sorted(series.items())):
            color = cmap(i / max(1, len(series) - 1))
            xs, ys = [p[0] for p in pts], [min(p[1], cap) for p in pts]
            by_lr = {r["lr"]: r for r in rows if r["depth"] == depth}
            seeds = [[v for v in (by_lr[x].get("seed_losses") or []) if v is not None
                      and math.isfinite(v)] for x in xs]
            if all(len(v) > 1 for v in seeds):
                lo = [y - min(min(v), cap) for y, v in zip(ys, seeds, strict=True)]
                hi = [min(max(v), cap) - y for y, v in zip(ys, seeds, strict=True)]
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=color, label=f"L={depth}",
                            ms=3, capsize=2, lw=1)
            else:
                ax.plot(xs, ys, "o-", color=color, label=f"L={depth}", ms=3)
            j = min(range(len(ys)), key=ys.__getitem__)
            ax.plot(xs[j], ys[j], "*", color=color, ms=12)
            v = (optima or {}).get(param, {}).get(depth)
            if v is not None and math.isfinite(v):
                ax.axvline(10.0 ** v, color=color, lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="learning rate",
               title=param + (" (dotted: refined optimum per depth)" if optima else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("final train loss (bars: range over seeds)")
    return savefig(fig, path)


def plot_budget_accuracy(records: Sequence[Mapping], path: str | Path) -> Path:
    """Test accuracy vs stochastic-depth budget, one line per survival-rate mode.

    Records: ``{"mode", "budget", "accuracy"}`` (plus optional ``"accuracy_std"`` error bars).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in dict.fromkeys(r["mode"] for r in records):
        rows = sorted((r for r in records if r["mode"] == mode and r.get("accuracy") is not None),
                      key=lambda r: r["budget"])
        ax.errorbar([r["budget"] for r in rows], [r["accuracy"] for r in rows],
                    yerr=[r.get("accuracy_std") or 0.0 for r in rows], fmt="o-", capsize=3,
                    label=mode)
    ax.set(xlabel="budget (expected active blocks)", ylabel="test accuracy",
           title="stochastic depth at a fixed budget")
    ax.grid(alpha=0.3)
    ax.legend()
    return savefig(fig, path)
