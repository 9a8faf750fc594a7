"""Pictures of signal propagation: EOC curves, phase diagrams, output fields, convergence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .common import plt, savefig


def _draw_curve(ax, points, label: str | None, color=None) -> None:
    sb = np.array([p.sigma_b for p in points])
    sw = np.array([p.sigma_w for p in points])
    stable = np.array([p.stable for p in points])
    if len(points) == 1:
        ax.plot(sb, sw, "o", color=color or "k", label=label, zorder=5)
        return
    line = None
    for mask, style in ((stable, "-"), (~stable, "--")):
        if mask.any():
            y = np.where(mask, sw, np.nan)
            (line,) = ax.plot(sb, y, style, color=color if line is None else line.get_color(),
                              label=label if style == "-" or not stable.any() else None)
    if (~stable).any() and stable.any():
        ax.plot([], [], "--", color=line.get_color(), label=f"{label}: q* repels")


def plot_eoc_curves(curves: Mapping[str, Sequence], path: str | Path, *,
                    highlight=None, title: str | None = None) -> Path:
    """sigma_w against sigma_b on the EOC, one line per activation (dashed where q* repels).

    Args:
        curves: activation name -> list of :class:`~scalelab.theory.EOCPoint`.
        highlight: an EOCPoint to mark.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, pts in curves.items():
        if pts:
            _draw_curve(ax, pts, name)
    if highlight is not None:
        ax.plot([highlight.sigma_b], [highlight.sigma_w], "*", ms=12, color="crimson",
                label=f"({highlight.sigma_b:.3g}, {highlight.sigma_w:.4g})", zorder=6)
    ax.set_xlabel(r"$\sigma_b$")
    ax.set_ylabel(r"$\sigma_w$ on the Edge of Chaos")
    ax.set_title(title or "Edge of Chaos curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return savefig(fig, path)


def _draw_phase(ax, diagram) -> None:
    sb, sw = diagram.sigma_b, diagram.sigma_w
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chi = np.log(diagram.chi1)
    lim = 1.5  # colours saturate at chi1 = e^(+-1.5); the contours carry the values
    mesh = ax.pcolormesh(sb, sw, np.ma.masked_invalid(log_chi), cmap="coolwarm", vmin=-lim,
                         vmax=lim, shading="auto")
    levels = np.log([0.5, 0.8, 1.25, 2.0])
    if np.isfinite(log_chi).sum() > 4:
        cs = ax.contour(sb, sw, np.ma.masked_invalid(log_chi), levels=levels, colors="k",
                        linewidths=0.6, alpha=0.6)
        ax.clabel(cs, fmt=lambda v: f"{np.exp(v):.2g}", fontsize=7)
    if diagram.eoc:
        _draw_curve(ax, diagram.eoc, "EOC", color="k")
    ax.set_xlim(sb.min(), sb.max())
    ax.set_ylim(sw.min(), sw.max())
    ax.set_xlabel(r"$\sigma_b$")
    ax.set_ylabel(r"$\sigma_w$")
    note = "; white: variance diverges" if np.isnan(diagram.chi1).any() else ""
    ax.set_title(f"{diagram.activation}: ordered (blue) / chaotic (red){note}", fontsize=8)
    ax.figure.colorbar(mesh, ax=ax, label=r"$\log \chi_1$", extend="both")


def plot_phase_diagrams(diagrams: Sequence, path: str | Path) -> Path:
    """chi1 (log scale) over (sigma_b, sigma_w), contours and the EOC line, one panel each.

    Args:
        diagrams: :class:`~scalelab.theory.PhaseDiagram` records. White: variance diverges.
    """
    n = len(diagrams)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, d in zip(axes.flat, diagrams, strict=False):
        _draw_phase(ax, d)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return savefig(fig, path)


def plot_output_fields(fields: Mapping[str, np.ndarray], path: str | Path, *,
                       label: str = "network output", symmetric: bool = False) -> Path:
    """Images side by side: a network's scalar output over the unit square, one per label,
    on one shared colour scale with one colour bar (so a nearly constant field looks
    constant, not like a gradient stretched to its own tiny range).

    Args:
        fields: title -> 2-D array (rows: x2, columns: x1 over [0, 1]).
        label: the colour bar's label.
        symmetric: limits +-(largest |value|) with a diverging colour map (for centred
            fields).
    """
    imgs = [np.asarray(img, dtype=float) for img in fields.values()]
    vmin = min(float(np.nanmin(i)) for i in imgs)
    vmax = max(float(np.nanmax(i)) for i in imgs)
    if symmetric:
        vmax = max(abs(vmin), abs(vmax))
        vmin = -vmax
    if vmax <= vmin:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    fig, axes = plt.subplots(1, len(fields), figsize=(4 * len(fields) + 1.2, 4.3),
                             squeeze=False, layout="constrained")
    im = None
    for ax, title, img in zip(axes[0], fields, imgs, strict=True):
        im = ax.imshow(img, origin="lower", extent=(0, 1, 0, 1),
                       cmap="RdBu_r" if symmetric else "viridis", vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1])
        ax.set_xlabel("input $x_1$")
        ax.set_ylabel("input $x_2$")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.85,
                 label=label + (" (shared scale)" if len(imgs) > 1 else ""))
    # constrained layout, not savefig()'s tight_layout; bbox_inches keeps every label inside
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_correlation_convergence(records: Mapping[str, dict], path: str | Path) -> Path:
    """1 - c_l against depth l on log-log axes, with the predicted constant / l**power; when
    the records carry a ``fit``, a second panel shows the relative error of l^p (1 - c_l)
    against the predicted constant shrinking with depth, with the fitted correction.

    Args:
        records: name -> {"depth": [...], "gap": [...], "power": p, "constant": C,
            optionally "fit": {"C", "D", "E", "from_depth"}} (the fit of
            l^p (1 - c_l) = C + D l^(-1/2) + E l^(-1)).
    """
    with_fit = any("fit" in r for r in records.values())
    fig, axes = plt.subplots(1, 2 if with_fit else 1, figsize=(12 if with_fit else 6, 4.4),
                             squeeze=False)
    ax = axes[0, 0]
    for name, r in records.items():
        ls, gap = np.asarray(r["depth"]), np.asarray(r["gap"])
        (line,) = ax.loglog(ls, gap, label=f"{name}")
        ax.loglog(ls, r["constant"] / ls ** r["power"], ":", color=line.get_color(), lw=1)
    ax.plot([], [], "k:", lw=1, label=r"predicted $C / l^p$")
    ax.set_xlabel("depth l")
    ax.set_ylabel(r"$1 - c_l$ on the Edge of Chaos")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if with_fit:
        ax = axes[0, 1]
        for i, (name, r) in enumerate(records.items()):
            ls, gap = np.asarray(r["depth"], float), np.asarray(r["gap"], float)
            err = gap * ls ** r["power"] / r["constant"] - 1
            ax.plot(ls, 100 * err, color=f"C{i}", label=name)
            f = r.get("fit")
            if f:
                sel = ls >= f["from_depth"]
                model = (f["C"] + f["D"] * ls[sel] ** -0.5 + f["E"] / ls[sel]) / r["constant"] - 1
                ax.plot(ls[sel], 100 * model, "--", color=f"C{i}", lw=1)
                ax.plot([ls[-1] * 1.15], [100 * (f["C"] / r["constant"] - 1)], "<",
                        color=f"C{i}", ms=6)
        ax.plot([], [], "k--", lw=1, label="fit C + D/sqrt(l) + E/l")
        ax.plot([], [], "k<", label="fitted limit C")
        ax.axhline(0.0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("depth l")
        ax.set_ylabel(r"$l^p (1 - c_l)$ / predicted constant $- 1$  (%)")
        ax.set_title("finite-depth correction (symlog; linear within ±1%)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return savefig(fig, path)


def plot_training_losses(curves: Mapping[str, Sequence[float]], path: str | Path, *,
                         title: str = "") -> Path:
    """Training loss against step, one line per run (a diverged run stops where it did)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, loss in curves.items():
        y = np.asarray(loss, dtype=float)
        if y.size > 50:  # light smoothing so the curves can be told apart
            k = max(1, y.size // 50)
            y = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(1, y.size + 1), y, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return savefig(fig, path)


def plot_loss_vs_lr(records: Sequence[Mapping], path: str | Path, *, title: str = "") -> Path:
    """Final training loss against learning rate, one line per run label, with the range over
    seeds as error bars; a star marks each label's best lr, a cross at the top a diverged one.

    Args:
        records: dicts ``{"label", "lr", "mean_loss", "seed_losses"}`` (``inf``/``None`` =
            diverged).
    """
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    labels = list(dict.fromkeys(r["label"] for r in records))
    finite = [v for r in records for v in r["seed_losses"] if v is not None and np.isfinite(v)]
    top = max(finite) * 2 if finite else 10.0
    for i, label in enumerate(labels):
        rs = sorted((r for r in records if r["label"] == label), key=lambda r: r["lr"])
        color = f"C{i}"
        ok = [r for r in rs if r["mean_loss"] is not None and np.isfinite(r["mean_loss"])]
        if ok:
            x = [r["lr"] for r in ok]
            y = np.array([r["mean_loss"] for r in ok])
            lo = y - np.array([min(r["seed_losses"]) for r in ok])
            hi = np.array([max(r["seed_losses"]) for r in ok]) - y
            ax.errorbar(x, y, yerr=[lo, hi], fmt="o-", color=color, ms=4, capsize=3,
                        label=label)
            k = int(np.argmin(y))
            ax.plot([x[k]], [y[k]], "*", color=color, ms=13)
        else:
            ax.plot([], [], "o-", color=color, label=label)
        bad = [r["lr"] for r in rs if r not in ok]
        if bad:
            ax.plot(bad, [top] * len(bad), "x", color=color, ms=8)
    ax.plot([], [], "kx", label="diverged (any seed)")
    ax.set(xscale="log", yscale="log", xlabel="learning rate",
           ylabel="final training loss (mean of last 20 steps)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return savefig(fig, path)
