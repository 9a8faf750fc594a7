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

from .common import plt, savefig


def _series(records, group: str, x: str, y: str) -> dict:
    out: dict = defaultdict(list)
    for r in records:
        v = r.get(y)
        if v is not None and math.isfinite(v):
            out[r[group]].append((r[x], v))
    return {k: sorted(v) for k, v in out.items()}


def plot_depth_scaling(records: Sequence[Mapping], path: str | Path) -> Path:
    """Output-variance ratio and gradient-norm ratio vs depth, one panel per regime.

    Records: ``{"mode", "depth", "variance_ratio", "grad_ratio"}`` (ratios to the input
    layer's), optionally ``"theory"`` (the infinite-width variance ratio, drawn dashed) and
    ``"limit"`` (the mode's infinite-depth limit, dotted on the linear panels).
    Top row: every mode on a log scale (the plain ResNet's 2^L). Bottom row: the bounded
    modes alone on a linear scale, so that their curves are not flattened by the explosion,
    with their infinite-depth limits dotted.
    """
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 7.5))
    bounded = [m for m in dict.fromkeys(r["mode"] for r in records) if m != "standard"]
    for j, (key, title) in enumerate((("variance_ratio", "output variance q_L / q_0"),
                                      ("grad_ratio", "squared gradient norm at y_0 (ratio)"))):
        top, bottom = axes[0, j], axes[1, j]
        for i, (mode, pts) in enumerate(_series(records, "mode", "depth", key).items()):
            color = f"C{i}"
            top.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=mode)
            if mode in bounded:
                bottom.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color,
                            label=mode)
            if key == "variance_ratio":
                th = _series([r for r in records if r["mode"] == mode], "mode", "depth",
                             "theory").get(mode, [])
                if th:
                    top.plot([p[0] for p in th], [p[1] for p in th], "--", color=color, lw=1,
                             label=f"{mode}, theory")
        limits = {r["mode"]: r["limit"] for r in records if r.get("limit") is not None}
        for i, mode in enumerate(dict.fromkeys(r["mode"] for r in records)):
            if mode in limits:
                bottom.axhline(limits[mode], color=f"C{i}", ls=":", lw=1,
                               label=f"{mode}: infinite-depth limit {limits[mode]:.3g}")
        top.set(xscale="log", yscale="log", xlabel="depth L (blocks)", ylabel="ratio (log scale)",
                title=title)
        bottom.set(xscale="log", xlabel="depth L (blocks)", ylabel="ratio (linear scale)",
                   title=f"{title}: bounded scalings")
        tops = [r[key] for r in records if r["mode"] in bounded and r.get(key) is not None
                and math.isfinite(r[key])] + list(limits.values())
        bottom.set_ylim(0, 1.15 * max(tops) if tops else None)  # room for the limit lines
        for ax in (top, bottom):
            ax.title.set_fontsize(10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return savefig(fig, path)


def plot_deep_training(records: Sequence[Mapping], path: str | Path, *, title: str = "",
                       cap: float = 100.0) -> Path:
    """Training loss against step, one panel per depth, one colour per scaling mode (one
    thin line per seed); a diverged run is marked with a cross where it diverged.

    Records: ``{"mode", "depth", "seed", "curve", "diverged", "diverged_at"}`` (``curve``: the
    per-step losses, ``nan`` at a divergence). Losses above ``cap`` are drawn at ``cap`` (the
    top of the axis) so that an exploding run does not flatten the others.
    """
    depths = sorted({r["depth"] for r in records})
    modes = list(dict.fromkeys(r["mode"] for r in records))
    fig, axes = plt.subplots(1, len(depths), figsize=(6 * len(depths), 4.2), squeeze=False)
    for ax, depth in zip(axes[0], depths, strict=True):
        for i, mode in enumerate(modes):
            rs = [r for r in records if r["depth"] == depth and r["mode"] == mode]
            color, diverged = f"C{i}", [r for r in rs if r["diverged"]]
            for k, r in enumerate(rs):
                ys = [min(v, cap) for v in r["curve"] if math.isfinite(v)]
                ax.plot(range(1, len(ys) + 1), ys, color=color, lw=1, alpha=0.8,
                        label=mode if k == 0 and not diverged else None)
            if diverged:
                steps = [r["diverged_at"] for r in diverged]
                ax.plot(steps, [cap] * len(steps), "x", color=color, ms=11, mew=2.5,
                        clip_on=False, zorder=5,
                        label=f"{mode}: diverged ({len(diverged)}/{len(rs)} seeds, step "
                              f"{min(steps)}{'' if len(set(steps)) == 1 else f'-{max(steps)}'})")
        ax.set(yscale="log", xlabel="step", ylabel=f"training loss (capped at {cap:g})",
               title=f"L = {depth}" + (f": {title}" if title else ""))
        ax.set_ylim(top=cap * 1.5)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
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


_ARCH_TITLES = {"decreasing": "branch scales 1/l (judged)",
                "stable": "Stable ResNet, 1/sqrt(L) (control)"}


def plot_budget_accuracy(records: Sequence[Mapping], path: str | Path) -> Path:
    """Test accuracy vs stochastic-depth budget, one line per survival-rate mode.

    Records: ``{"mode", "budget", "accuracy"}``, optionally ``"arch"`` (one panel per
    network) and ``"accuracy_std"`` (the sd over seeds, drawn as error bars when it is not
    None, i.e. when there were several seeds) with ``"n"`` (the number of seeds).
    """
    archs = list(dict.fromkeys(r.get("arch", "") for r in records))
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4), squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        rows_a = [r for r in records if r.get("arch", "") == arch]
        n_seeds = max((r.get("n") or 1) for r in rows_a) if rows_a else 1
        modes = list(dict.fromkeys(r["mode"] for r in rows_a))
        for k, mode in enumerate(modes):
            rows = sorted((r for r in rows_a if r["mode"] == mode
                           and r.get("accuracy") is not None), key=lambda r: r["budget"])
            shift = 0.1 * (k - (len(modes) - 1) / 2)  # so that error bars at one budget part
            xs, ys = [r["budget"] + shift for r in rows], [r["accuracy"] for r in rows]
            sds = [r.get("accuracy_std") for r in rows]
            marker = "*" if mode == "no-drop" else "o"
            if all(sd is not None for sd in sds):
                ax.errorbar(xs, ys, yerr=sds, fmt=marker + "-", capsize=3, label=mode,
                            ms=10 if mode == "no-drop" else 5)
            else:
                ax.plot(xs, ys, marker + "-", label=mode, ms=10 if mode == "no-drop" else 5)
        bars = ", error bars: sd over seeds" if n_seeds > 1 else ", one seed"
        title = _ARCH_TITLES.get(arch, arch or "stochastic depth at a fixed budget")
        ax.set(xlabel="budget (expected active blocks)", ylabel="test accuracy (mean network)",
               title=f"{title} ({n_seeds} seed{'s' if n_seeds > 1 else ''}{bars})")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return savefig(fig, path)
