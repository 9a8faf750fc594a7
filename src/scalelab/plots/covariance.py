"""Pictures for covariance cleaning: top-eigenvalue bias and the cleaners compared."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from .common import savefig


def plot_top_eigenvalue_bias(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Sample top eigenvalue vs population spike, before and after de-biasing, per q.

    Args:
        records: dicts with ``q``, ``spike``, ``predicted_top`` (BBP limit),
            ``sample_top_mean``, ``sample_top_std``, ``debiased_mean``, ``debiased_std``
            (as the ``covariance-cleaning`` reproduction returns them).
        path: where to write the PNG.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    qs = sorted({r["q"] for r in records})
    colors = plt.cm.viridis([i / max(1, len(qs) - 1) * 0.85 for i in range(len(qs))])
    top = 0.0
    for q, col in zip(qs, colors, strict=True):
        rs = sorted((r for r in records if r["q"] == q), key=lambda r: r["spike"])
        x = [r["spike"] for r in rs]
        ax.plot(x, [r["predicted_top"] for r in rs], "--", color=col, lw=1)
        ax.errorbar(x, [r["sample_top_mean"] for r in rs], yerr=[r["sample_top_std"] for r in rs],
                    fmt="o", color=col, ms=5, capsize=2, label=f"sample, q={q:g}")
        ax.errorbar(x, [r["debiased_mean"] for r in rs], yerr=[r["debiased_std"] for r in rs],
                    fmt="x", color=col, ms=6, capsize=2)
        top = max(top, max(x))
    ax.plot([0, top], [0, top], color="black", lw=0.8, label="population spike (y = l)")
    ax.plot([], [], "x", color="gray", label="de-biased (inverse BBP)")
    ax.plot([], [], "--", color="gray", label="BBP limit l(1 + q/(l-1))")
    ax.set_xlabel("population spike l")
    ax.set_ylabel("top eigenvalue")
    ax.set_title("Sample top eigenvalue overestimates the spike")
    ax.legend(fontsize=7)
    return savefig(fig, path)


def _ticks_in(lo: float, hi: float) -> list[float]:
    """Round tick values for a log axis spanning [lo, hi] (at least the two ends' neighbours)."""
    cands = [1.0, 1.1, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0,
             50.0, 100.0, 200.0, 500.0, 1000.0]
    inside: list[float] = []
    for c in cands:  # keep ticks at least ~10% apart so their labels do not collide
        if lo <= c <= hi and (not inside or math.log10(c / inside[-1]) >= 0.045):
            inside.append(c)
    if len(inside) < 4:  # a narrow range: ticks at the data's own ends and middle
        inside = sorted({float(f"{v:.3g}") for v in (lo, (lo * hi) ** 0.5, hi)})
    return inside


def plot_cleaner_comparison(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Frobenius error and out-of-sample min-variance risk of each cleaner across q, with
    standard-error bars, x ticks at the q values run and risk-axis ticks inside the data's
    range.

    Args:
        records: dicts with ``q``, ``method``, ``frobenius_mean`` and ``risk_ratio_mean``
            (true risk of the min-variance portfolio over the optimal risk; 1 is perfect), and
            optionally ``frobenius_sem`` / ``risk_ratio_sem`` (error bars).
        path: where to write the PNG.
    """
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for m in methods:
        rs = sorted((r for r in records if r["method"] == m), key=lambda r: r["q"])
        qs = [r["q"] for r in rs]
        axes[0].errorbar(qs, [r["frobenius_mean"] for r in rs],
                         yerr=[r.get("frobenius_sem", 0.0) for r in rs], fmt="o-", capsize=3,
                         ms=4, label=m)
        axes[1].errorbar(qs, [r["risk_ratio_mean"] for r in rs],
                         yerr=[r.get("risk_ratio_sem", 0.0) for r in rs], fmt="o-", capsize=3,
                         ms=4, label=m)
    risks = [r["risk_ratio_mean"] for r in records]
    axes[0].set_ylabel("||C_hat - C||_F")
    axes[0].set_title("Frobenius error vs true correlation")
    axes[1].set_ylabel("out-of-sample risk / optimal risk")
    axes[1].set_yscale("log")
    axes[1].yaxis.set_minor_formatter(NullFormatter())
    axes[1].set_yticks(_ticks_in(min(risks) * 0.98, max(risks) * 1.02))
    axes[1].yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    axes[1].set_title("Minimum-variance portfolio (bars: standard error)")
    qs_all = sorted({r["q"] for r in records})
    for ax in axes:
        ax.set_xlabel("q = N / T")
        ax.set_xticks(qs_all)
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return savefig(fig, path)
