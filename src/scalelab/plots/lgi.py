"""Pictures of the uniform Lojasiewicz gradient inequality: fits and the generalisation bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter

from .common import plt, savefig


def plot_lgi_fits(fits: list[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Recorded ``(L - L*, ||grad L||)`` points on log-log axes with each fit's envelope.

    ``fits``: dicts ``{"label": str, "fit": LGIFit}`` (from
    :func:`scalelab.diagnostics.lojasiewicz_fit`). Dots: the points used; solid line: the
    least-squares line (slope theta); dashed: the envelope ``c (L - L*)^theta``.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, item in enumerate(fits):
        f = item["fit"]
        color = f"C{i}"
        dx = f.losses - f.l_star
        ax.scatter(dx, f.grad_norms, s=4, color=color, alpha=0.35)
        xs = np.geomspace(dx.min(), dx.max(), 100)
        ax.plot(xs, np.exp(f.intercept) * xs**f.theta, color=color, lw=1.2,
                label=f"{item['label']}: theta {f.theta:.2f}, c {f.c:.2g}")
        ax.plot(xs, f.c * xs**f.theta, color=color, lw=1.0, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("L(w) - L*  (training loss above its minimum)")
    ax.set_ylabel("||grad L(w)||")
    ax.set_title(title or "Lojasiewicz fits: least squares (solid), envelope c(L-L*)^theta (dashed)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return savefig(fig, path)


def _twin(ax, rows, xkey, xlabel, log_x):
    xs = [r[xkey] for r in rows]
    a = ax.errorbar(xs, [r["bound_mean"] for r in rows], yerr=[r["bound_sd"] for r in rows],
                    color="tab:blue", marker="o", capsize=3, label="LGI bound (left)")
    ax.set_ylabel("bound (constants dropped)", color="tab:blue")
    ax2 = ax.twinx()
    b = ax2.errorbar(xs, [r["gap_mean"] for r in rows], yerr=[r["gap_sd"] for r in rows],
                     color="tab:red", marker="s", capsize=3, label="measured gap (right)")
    ax2.set_ylabel("test - train cross-entropy", color="tab:red")
    ax.set_xlabel(xlabel)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend([a, b], [a.get_label(), b.get_label()], fontsize=8, loc="best")


def _constants(ax, rows, xkey, xlabel, log_x):
    xs = [r[xkey] for r in rows]
    a = ax.errorbar(xs, [r["theta_mean"] for r in rows], yerr=[r["theta_sd"] for r in rows],
                    color="tab:green", marker="o", capsize=3, label="theta (left)")
    ax.set_ylabel("theta", color="tab:green")
    ax2 = ax.twinx()
    b = ax2.errorbar(xs, [r["c_mean"] for r in rows], yerr=[r["c_sd"] for r in rows],
                     color="tab:purple", marker="^", capsize=3, label="c (right)")
    ax2.set_ylabel("c", color="tab:purple")
    ax.set_xlabel(xlabel)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend([a, b], [a.get_label(), b.get_label()], fontsize=8, loc="best")


def plot_lgi_bound(rows: list[dict], path: str | Path, *, width: int | None = None) -> Path:
    """The LGI bound and the measured gap against n and against the label-flip ratio (top),
    and the fitted theta and c (bottom), seed mean +- sd.

    ``rows``: dicts with ``sweep`` (``"n"`` or ``"corruption"``), ``n``, ``ratio`` and
    ``{bound, gap, theta, c}_{mean, sd}`` (``experiments.lgi_bound.summarise``).
    """
    by_n = [r for r in rows if r["sweep"] == "n"]
    by_r = [r for r in rows if r["sweep"] == "corruption"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    m = f", m={width}" if width else ""
    _twin(axes[0, 0], by_n, "n", "training examples n (clean labels)", True)
    axes[0, 0].set_title(f"Bound and gap vs n{m}")
    if by_r:
        _twin(axes[0, 1], by_r, "ratio", f"label-flip ratio (n={by_r[0]['n']})", False)
        axes[0, 1].set_title("Bound and gap vs label corruption")
        _constants(axes[1, 1], by_r, "ratio", f"label-flip ratio (n={by_r[0]['n']})", False)
        axes[1, 1].set_title("Fitted LGI constants vs label corruption")
    _constants(axes[1, 0], by_n, "n", "training examples n (clean labels)", True)
    axes[1, 0].set_title("Fitted LGI constants vs n")
    return savefig(fig, path)
