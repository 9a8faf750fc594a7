"""Pictures of the NTK at large depth: depth profiles, kernel regression vs depth, width
convergence of empirical NTKs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import plt, savefig


def _fit_text(fit) -> str:
    if fit.better == "none":
        return "too few points to fit"
    return (f"exp rate {fit.rate:.3g} (R²={fit.r2_exponential:.3f}), "
            f"power {fit.exponent:.3g} (R²={fit.r2_power:.3f})")


def plot_ntk_depth_profile(profiles: Mapping[str, object], path: str | Path, *,
                           title: str | None = None) -> Path:
    """Distance of the normalised NTK to its depth limit vs depth, log-log and semi-log, and
    the condition number, one line per profile.

    Args:
        profiles: label -> :class:`~scalelab.theory.NTKDepthProfile`.
        title: the figure's title.
    A power law is a straight line in the first panel, an exponential in the second.
    """
    fig, grid = plt.subplots(2, 2, figsize=(12, 8.5))
    axes, key = grid.ravel()[:3], grid.ravel()[3]
    handles = []
    for i, (label, p) in enumerate(profiles.items()):
        color = f"C{i}"
        d = np.where(np.asarray(p.distance) > 0, p.distance, np.nan)
        for ax in axes[:2]:
            (line,) = ax.plot(p.depths, d, "o-", ms=3.5, color=color)
        handles.append((line, f"{label}\n  {_fit_text(p.fit)}"))
        axes[2].plot(p.depths, p.condition, "o-", ms=3.5, color=color)
    axes[0].set_xscale("log")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("depth L")
        ax.grid(alpha=0.3, which="both")
    axes[2].set_xscale("log")
    ylabel = r"$\max_{a\neq b} |\tilde\Theta_{ab} - \tilde\Theta_\infty|$"
    axes[0].set_ylabel(ylabel)
    axes[0].set_title("distance to the depth limit (log-log: power laws are lines)", fontsize=9)
    axes[1].set_ylabel(ylabel)
    axes[1].set_title("the same, semi-log (exponentials are lines)", fontsize=9)
    axes[2].set_ylabel(r"condition number of $\tilde\Theta$")
    axes[2].set_title("conditioning of the normalised NTK", fontsize=9)
    key.axis("off")
    key.legend([h for h, _ in handles], [t for _, t in handles], loc="center", fontsize=8,
               title="fits of the distance: exp = log-linear, power = log-log", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return savefig(fig, path)


def plot_ntk_regression(curves: Mapping[str, Mapping], path: str | Path, *, chance: float,
                        title: str | None = None) -> Path:
    """NTK-regression test accuracy vs depth (mean and range over seeds), one line per net,
    and the same against depth in units of the correlation depth scale xi_c (off the EOC).

    Args:
        curves: label -> ``{"depths", "mean", "min", "max", "xi_c"}`` (``xi_c`` None / inf
            on the EOC and for ResNets).
        chance: the majority-class rate, drawn as a line.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for i, (label, c) in enumerate(curves.items()):
        L = np.asarray(c["depths"], dtype=float)
        mean, lo, hi = (np.asarray(c[k], dtype=float) for k in ("mean", "min", "max"))
        axes[0].plot(L, mean, "o-", ms=3.5, color=f"C{i}", label=label)
        axes[0].fill_between(L, lo, hi, color=f"C{i}", alpha=0.2)
        xi = c.get("xi_c")
        if xi is not None and np.isfinite(xi):
            axes[1].plot(L / xi, mean, "o-", ms=3.5, color=f"C{i}",
                         label=rf"{label} ($\xi_c$={xi:.3g})")
            axes[1].fill_between(L / xi, lo, hi, color=f"C{i}", alpha=0.2)
    for ax in axes:
        ax.axhline(chance, color="k", ls=":", lw=1, label="chance (majority class)")
        ax.set_xscale("log")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_xlabel("depth L")
    axes[0].set_title("infinite-width NTK regression on MNIST digits", fontsize=9)
    axes[1].set_xlabel(r"depth in units of $\xi_c$ (ordered / chaotic MLPs)")
    axes[1].set_title("off the Edge of Chaos, against the depth scale", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return savefig(fig, path)


def plot_ntk_width_convergence(curves: Mapping[str, Mapping], path: str | Path, *,
                               title: str | None = None) -> Path:
    """Relative error of empirical NTKs to the infinite-width NTK vs width (log-log), mean and
    range over seeds, with a 1/sqrt(width) guide through each curve's first point.

    Args:
        curves: label -> ``{"widths", "mean", "min", "max", "slope"}``.
    """
    fig, ax = plt.subplots(figsize=(6, 4.4))
    for i, (label, c) in enumerate(curves.items()):
        w = np.asarray(c["widths"], dtype=float)
        mean, lo, hi = (np.asarray(c[k], dtype=float) for k in ("mean", "min", "max"))
        ax.plot(w, mean, "o-", color=f"C{i}", label=f"{label} (slope {c['slope']:.2f})")
        ax.fill_between(w, lo, hi, color=f"C{i}", alpha=0.2)
        ax.plot(w, mean[0] * np.sqrt(w[0] / w), ":", color=f"C{i}", lw=1)
    ax.plot([], [], "k:", lw=1, label=r"$\propto 1/\sqrt{\mathrm{width}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel(r"$\|\hat\Theta - \Theta\|_F / \|\Theta\|_F$")
    ax.set_title(title or "empirical NTK of random nets vs the infinite-width NTK", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return savefig(fig, path)
