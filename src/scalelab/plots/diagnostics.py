"""Pictures of the diagnostics: propagation profiles, layer alignment, output fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .common import plt, savefig
from .eoc import plot_output_fields


def _as_runs(records) -> dict[str, Sequence]:
    """A single run (a list) or several (label -> list) as label -> list."""
    if isinstance(records, Mapping):
        return dict(records)
    return {"": records}


def _get(rec, key: str) -> float:
    value = rec[key] if isinstance(rec, Mapping) else getattr(rec, key)
    return np.nan if value is None else float(value)


def plot_profile(profiles, path: str | Path, *, theory: Mapping[str, Mapping] | None = None,
                 title: str = "") -> Path:
    """Variance, mean pairwise correlation and gradient norm against layer index.

    Args:
        profiles: the list :func:`scalelab.diagnostics.propagation_profile` returns (records
            or their JSON dicts), or a mapping label -> such a list (one line each).
        theory: optional label -> {"variance": [...], "correlation": [...]} drawn dashed in
            the colour of the run with the same label (the infinite-width prediction).
    """
    runs = _as_runs(profiles)
    theory = theory or {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    keys = (("variance", "variance q (per unit)"), ("correlation", "mean pairwise correlation"),
            ("grad_norm", "gradient norm at the layer's output"))
    for label, recs in runs.items():
        idx = np.arange(len(recs))
        colour = None
        for ax, (key, _) in zip(axes, keys, strict=True):
            (line,) = ax.plot(idx, [_get(r, key) for r in recs], "o-", ms=3, label=label or None,
                              color=colour)
            colour = line.get_color()
            if key in theory.get(label, {}):
                pred = np.asarray(theory[label][key], dtype=float)
                ax.plot(np.arange(len(pred)), pred, "--", color=colour, lw=1)
    for ax, (key, ylabel) in zip(axes, keys, strict=True):
        ax.set_xlabel("layer index (forward order)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if key != "correlation":
            ax.set_yscale("log")
    if theory:
        axes[0].plot([], [], "k--", lw=1, label="infinite-width theory")
    if len(runs) > 1 or theory:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return savefig(fig, path)


def plot_alignment(alignments, path: str | Path, *, title: str = "",
                   labels: Sequence[str] | None = None) -> Path:
    """Layer alignment against layer index, the peak of each curve marked.

    Args:
        alignments: the list :func:`scalelab.diagnostics.layer_alignment` returns, or a
            mapping label -> list (one curve each, e.g. one per network depth).
        labels: optional tick labels (module names) for a single curve.
    """
    runs = _as_runs(alignments)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, values in runs.items():
        v = np.asarray(values, dtype=float)
        idx = np.arange(1, v.size + 1)
        (line,) = ax.plot(idx, v, "o-", ms=3, label=label or None)
        if np.any(np.isfinite(v)):
            k = int(np.nanargmax(v))
            ax.plot(idx[k], v[k], "*", ms=12, color=line.get_color())
    if labels is not None and len(runs) == 1:
        ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=45, fontsize=7)
    ax.set_xlabel("layer (modules with parameters, forward order)")
    ax.set_ylabel("centred tangent-kernel / label alignment")
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return savefig(fig, path)


def plot_output_field(field, path: str | Path, *, title: str = "network output") -> Path:
    """One output field (from :func:`scalelab.diagnostics.output_field`) as an image; a
    mapping label -> field draws them side by side."""
    fields = dict(field) if isinstance(field, Mapping) else {title: field}
    return plot_output_fields(fields, path)


def _log2_axis(ax, which: str, ticks) -> None:
    getattr(ax, f"set_{which}scale")("log", base=2)
    getattr(ax, f"set_{which}ticks")(list(ticks), [str(t) for t in ticks])
    getattr(ax, f"{which}axis").set_minor_locator(plt.NullLocator())


def plot_width_depth_commute(result: Mapping, path: str | Path) -> Path:
    """Fluctuation and mean bias of Monte Carlo Gram matrices over (width, depth), the width
    bias per cell, and a QQ plot.

    Args:
        result: the ``width-depth-commute`` result: ``widths``, ``depths``, ``cells`` (one
            dict per (width, depth) with ``fluctuation``, ``total_bias`` and ``width_bias``,
            each bias ``{"sq", "sq_se", "dist", "resolved"}``), ``euler_error`` (n = infinity,
            per depth), ``ks_normal`` and ``qq`` ({"normal": [...], "sample": [...]}).
    """
    widths, depths = list(result["widths"]), list(result["depths"])
    at = {(c["width"], c["depth"]): c for c in result["cells"]}
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    cmap = plt.get_cmap("viridis")
    ax = axes[0]
    for j, L in enumerate(depths):
        ax.plot(widths, [at[(n, L)]["fluctuation"] for n in widths], "o-", ms=3,
                color=cmap(j / max(1, len(depths) - 1)), label=f"L = {L}")
    f0 = at[(widths[0], depths[-1])]["fluctuation"]
    ax.plot(widths, [f0 * np.sqrt(widths[0] / n) for n in widths], "k:", lw=1,
            label=r"$\propto n^{-1/2}$")
    ax.set_yscale("log")
    _log2_axis(ax, "x", widths)
    ax.set_xlabel("width n")
    ax.set_ylabel(r"per-net fluctuation $\|G - \bar G\|_{rms} / \|K_\infty\|$")
    ax.set_title("fluctuation of one net's Gram matrix", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(depths, result["euler_error"], "s-", color="k", label="n = infinity (exact K_L)")
    for i, n in enumerate(widths):
        cs = [at[(n, L)] for L in depths]
        d = np.array([c["total_bias"]["dist"] for c in cs])
        # s.e. of the distance from the s.e. of its square: se(d) ~ se(d^2) / (2 d)
        se = np.array([c["total_bias"]["sq_se"] for c in cs])
        err = np.where(d > 0, se / (2 * np.maximum(d, 1e-12)), np.sqrt(se))
        ok = np.array([c["total_bias"]["resolved"] for c in cs])
        color = cmap(i / max(1, len(widths) - 1))
        xs = np.array(depths) * (1 + 0.04 * (i - (len(widths) - 1) / 2))
        ax.errorbar(xs[ok], d[ok], yerr=err[ok], fmt="o", ms=4, capsize=2, color=color,
                    label=f"n = {n} (Monte Carlo mean)")
        noise = np.sqrt(Z_PLOT * se)
        ax.plot(xs, noise, "_", ms=8, color=color, alpha=0.6)
    ax.plot([], [], "_", color="gray", ms=8, label="resolution (3 s.e.), per width")
    ax.set_yscale("log")
    _log2_axis(ax, "x", depths)
    ax.set_xlabel("depth L")
    ax.set_ylabel(r"mean-Gram bias $\|\bar G - K_\infty\| / \|K_\infty\|$ (debiased)")
    ax.set_title("mean bias against depth (resolved cells)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[2]
    z = np.array([[at[(n, L)]["width_bias"]["sq"] / at[(n, L)]["width_bias"]["sq_se"]
                   for L in depths] for n in widths])
    lim = max(3.5, float(np.nanmax(np.abs(z))))
    im = ax.imshow(z, origin="lower", aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim)
    for i in range(len(widths)):
        for j in range(len(depths)):
            ax.text(j, i, f"{z[i, j]:.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(depths)), depths)
    ax.set_yticks(range(len(widths)), widths)
    ax.set_xlabel("depth L")
    ax.set_ylabel("width n")
    ax.set_title(r"width bias $\|\bar G - K_L\|^2$ in standard errors (pass: <= 3)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="debiased squared distance / its s.e.")
    ax = axes[3]
    qq = result["qq"]
    ax.plot(qq["normal"], qq["sample"], ".", ms=3)
    lim = max(abs(min(qq["normal"])), abs(max(qq["normal"])))
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=1)
    ax.set_xlabel("N(0, 1) quantile")
    ax.set_ylabel("standardised coordinate of $Y_L$")
    ax.set_title(f"n = {widths[-1]}, L = {depths[-1]}: KS = {result['ks_normal']:.3f}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    return savefig(fig, path)


Z_PLOT = 3.0


def plot_finite_width_depth(result: Mapping, path: str | Path) -> Path:
    """Histograms of a pre-activation coordinate and of the post-activation norm at fixed
    width across depths, and the Gaussian deficit against depth for each width.

    Args:
        result: the ``finite-width-depth`` result: ``widths``, ``depths``, ``cells`` (one dict
            per (width, depth) with ``deficit`` and ``deficit_ci``), ``histograms``
            ("width,depth" -> {"coord": densities, "norm": densities}), ``coord_bins`` and
            ``norm_bins`` ([lo, hi, bins]).
    """
    widths, depths = result["widths"], result["depths"]
    small, wide = widths[0], widths[-1]
    hist = result["histograms"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    for ax, key, bins in ((axes[0], "coord", result["coord_bins"]),
                          (axes[1], "norm", result["norm_bins"])):
        edges = np.linspace(bins[0], bins[1], bins[2] + 1)
        mid = (edges[:-1] + edges[1:]) / 2
        for j, L in enumerate(depths):
            ax.step(mid, hist[f"{small},{L}"][key], where="mid", lw=1.2,
                    color=plt.cm.viridis(j / max(1, len(depths) - 1)),
                    label=f"n = {small}, L = {L}")
        ax.step(mid, hist[f"{wide},{depths[-1]}"][key], where="mid", color="C3", ls="--",
                label=f"n = {wide}, L = {depths[-1]}")
        ax.grid(alpha=0.3)
    axes[0].plot(np.linspace(-6, 6, 300), np.exp(-np.linspace(-6, 6, 300) ** 2 / 2)
                 / np.sqrt(2 * np.pi), "k:", label="N(0, 1)")
    axes[0].set_yscale("log")
    axes[0].set_ylim(1e-4, 1)
    axes[0].set_xlabel("standardised coordinate of $Y_L$")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel(r"$\|relu(Y_L)\| / \sqrt{n}$, divided by its mean")
    axes[1].set_ylabel("density")
    axes[1].legend(fontsize=7)
    axes[1].set_title("post-activation norm", fontsize=9)
    ax = axes[2]
    for n in widths:
        cs = [c for c in result["cells"] if c["width"] == n]
        k = np.array([c["deficit"] for c in cs])
        ci = np.array([c["deficit_ci"] for c in cs])
        ax.errorbar([c["depth"] for c in cs], k, yerr=[k - ci[:, 0], ci[:, 1] - k], fmt="o-",
                    ms=3, capsize=2, label=f"width {n}")
    ax.axhline(0.0, color="k", lw=1, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth L")
    ax.set_ylabel(r"Gaussian deficit $\sqrt{2/\pi} - E|y| / rms(y)$ (0: Gaussian)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return savefig(fig, path)
