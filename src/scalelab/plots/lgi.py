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


#: (record key, legend label, colour, marker, axis label) of each panel's left and right series
_BOUND_AND_GAP = (("bound", "LGI bound (left)", "tab:blue", "o", "bound (constants dropped)"),
                  ("gap", "measured gap (right)", "tab:red", "s", "test - train cross-entropy"))
_CONSTANTS = (("theta", "theta (left)", "tab:green", "o", "theta"),
              ("c", "c (right)", "tab:purple", "^", "c"))


def _twin(ax, rows, xkey, xlabel, log_x, series=_BOUND_AND_GAP):
    """Two seed-mean series with their sd as error bars, on a left and a right axis."""
    xs = [r[xkey] for r in rows]
    handles = []
    for axis, (key, label, colour, marker, ylabel) in zip((ax, ax.twinx()), series, strict=True):
        handles.append(axis.errorbar(xs, [r[f"{key}_mean"] for r in rows],
                                     yerr=[r[f"{key}_sd"] for r in rows], color=colour,
                                     marker=marker, capsize=3, label=label))
        axis.set_ylabel(ylabel, color=colour)
    ax.set_xlabel(xlabel)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="best")


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
        _twin(axes[1, 1], by_r, "ratio", f"label-flip ratio (n={by_r[0]['n']})", False,
              _CONSTANTS)
        axes[1, 1].set_title("Fitted LGI constants vs label corruption")
    _twin(axes[1, 0], by_n, "n", "training examples n (clean labels)", True, _CONSTANTS)
    axes[1, 0].set_title("Fitted LGI constants vs n")
    return savefig(fig, path)
