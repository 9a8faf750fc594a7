"""Pictures for the LoRA toy reproductions: LoRA+ learning-rate grids and LoRA init sweeps.

The records are those the ``loraplus-toy`` and ``lora-init`` reproductions return
(arXiv 2402.12354 and 2406.08447); losses are log10(final / initial train loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .common import savefig


def _num(v: Any) -> float:
    """A record's number as float; None (how JSON stores inf/nan) becomes nan."""
    return math.nan if v is None else float(v)


_INIT_STYLE = {"A": ("tab:blue", "Init[A]: A random, B = 0"),
               "B": ("tab:orange", "Init[B]: A = 0, B random")}


def plot_loraplus_ratio_vs_width(records: Sequence[dict[str, Any]], path: str | Path, *,
                                 predicted: dict[str, float] | None = None) -> Path:
    """Best eta_B / eta_A (and the best eta_A, eta_B) against width, log-log, per optimizer.

    Args:
        records: dicts with ``width``, ``best_ratio``, ``best_lr_a``, ``best_lr_b`` and
            optionally ``optimizer`` (one line per optimizer).
        path: where to write the PNG.
        predicted: optimizer -> predicted slope, drawn as a dotted line through the fit's
            middle.
    """
    fig, (ax_r, ax_lr) = plt.subplots(1, 2, figsize=(10, 4.2))
    opts = list(dict.fromkeys(r.get("optimizer", "") for r in records))
    markers = ["o", "s", "^", "D"]
    for opt, mk in zip(opts, markers * len(opts), strict=False):
        rs = sorted((r for r in records if r.get("optimizer", "") == opt), key=lambda r: r["width"])
        w = np.array([r["width"] for r in rs], float)
        ratio = np.array([r["best_ratio"] for r in rs], float)
        slope = np.polyfit(np.log(w), np.log(ratio), 1) if len(w) > 1 else None
        lab = f"{opt}: " if opt else ""
        line, = ax_r.loglog(w, ratio, mk + "-", label=f"{lab}best ratio")
        if slope is not None:
            ax_r.loglog(w, np.exp(np.polyval(slope, np.log(w))), "--", color=line.get_color(),
                        lw=1, label=f"{lab}fit, slope {slope[0]:.2f}")
            if predicted and opt in predicted:
                mid = np.exp(np.mean(np.log(w)))
                y_mid = np.exp(np.polyval(slope, np.log(mid)))
                ax_r.loglog(w, y_mid * (w / mid) ** predicted[opt], ":", color=line.get_color(),
                            lw=1.5, label=f"{lab}predicted slope {predicted[opt]:g}")
        ax_lr.loglog(w, [r["best_lr_a"] for r in rs], mk + "-", color="tab:blue",
                     label=f"{lab}best eta_A")
        ax_lr.loglog(w, [r["best_lr_b"] for r in rs], mk + "--", color="tab:red",
                     label=f"{lab}best eta_B")
    ax_r.axhline(1.0, color="gray", lw=0.8)
    ax_r.set_xlabel("width n")
    ax_r.set_ylabel("best eta_B / eta_A")
    ax_r.set_title("Best eta_B / eta_A against width")
    ax_lr.set_xlabel("width n")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("Best eta_A and eta_B")
    for ax in (ax_r, ax_lr):
        ax.legend(fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
    return savefig(fig, path)


def plot_loraplus_heatmaps(records: Sequence[dict[str, Any]], path: str | Path, *,
                           key: str = "avg_log10_loss") -> Path:
    """A log10 loss over (eta_A, eta_B), one panel per width, on one shared colour scale.

    Args:
        records: dicts with ``width``, ``lrs`` (the grid of both axes), the grid ``key``
            (``[i][j]`` at eta_A = lrs[i], eta_B = lrs[j]; inf/None where the run diverged),
            ``best_lr_a``, ``best_lr_b``, ``shared_lr``, optionally ``optimizer`` and
            ``eligible`` (a boolean grid: its boundary is drawn as a white line).
        path: where to write the PNG.
        key: which grid to draw, e.g. ``"avg_log10_loss"`` (train loss averaged over the
            run, the default) or ``"train_log10_loss"`` / ``"test_log10_loss"`` (final).
    """
    n = len(records)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 1.4, 3.2 * rows + 0.6),
                             squeeze=False, layout="constrained")
    grids = [np.array(r[key], float) for r in records]  # None (JSON inf) -> nan
    finite = np.concatenate([z[np.isfinite(z)] for z in grids]) if grids else np.zeros(0)
    # colours stop at 10x the initial loss: near-divergent cells would swamp the scale
    vmin, vmax = (min(finite.min(), -1.0), 1.0) if finite.size else (-1.0, 1.0)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgray")
    im = None
    for ax, r, z in zip(axes.flat, records, grids, strict=False):
        lg = np.log10(np.asarray(r["lrs"], float))
        z = np.ma.masked_invalid(z.T)  # z rows eta_A -> image rows eta_B, columns eta_A
        step = lg[1] - lg[0] if len(lg) > 1 else 1.0
        ext = (lg[0] - step / 2, lg[-1] + step / 2, lg[0] - step / 2, lg[-1] + step / 2)
        im = ax.imshow(z, origin="lower", extent=ext, cmap=cmap, vmin=vmin, vmax=vmax,
                       aspect="auto")
        ax.plot([lg[0], lg[-1]], [lg[0], lg[-1]], "w--", lw=1)
        if r.get("eligible") is not None and len(lg) > 1:
            ok = np.asarray(r["eligible"], float).T
            ax.contour(lg, lg, ok, levels=[0.5], colors="white", linewidths=1.2)
        if _finite(r.get("best_lr_a")) and _finite(r.get("best_lr_b")):
            ax.plot(math.log10(r["best_lr_a"]), math.log10(r["best_lr_b"]), "r*", ms=11,
                    label="best pair")
        if _finite(r.get("shared_lr")):
            ax.plot(math.log10(r["shared_lr"]), math.log10(r["shared_lr"]), "wo", ms=6,
                    mfc="none", label="best shared lr")
        opt = f" ({r['optimizer']})" if r.get("optimizer") else ""
        ax.set_title(f"n = {r['width']}{opt}", fontsize=9)
        ax.set_xlabel("log10 eta_A")
        ax.set_ylabel("log10 eta_B")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if any(r.get("eligible") is not None for r in records):
        handles.append(plt.Line2D([], [], color="white", lw=1.2))
        labels.append("edge of the eligible region")
    axes.flat[0].legend(handles, labels, fontsize=7, loc="lower left", facecolor="0.85")
    if im is not None:
        what = {"avg_log10_loss": "train loss averaged over the run",
                "train_log10_loss": "final train loss",
                "test_log10_loss": "final test loss"}.get(key, key)
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9, extend="max",
                     label=f"log10({what} / initial)\ngray = diverged")
    opts = sorted({r.get("optimizer", "") for r in records} - {""})
    fig.suptitle("LoRA toy" + (f" ({', '.join(opts)})" if opts else "")
                 + ": loss over (eta_A, eta_B); dashed = one shared lr", fontsize=11)
    # not savefig(): its tight_layout clashes with the constrained layout the shared colorbar
    # needs; bbox_inches="tight" keeps the colour-bar label and the title inside the PNG
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(float(v)) and float(v) > 0


def plot_lora_init_loss_vs_lr(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Final train loss against the shared lr for Init[A] and Init[B]; one panel per width
    (columns) and optimizer (rows).

    Args:
        records: dicts with ``width``, ``init`` ("A"/"B"), ``optimizer``, ``lrs``,
            ``train_log10_loss`` (inf = diverged, left out) and ``best_lr``.
        path: where to write the PNG.
    """
    widths = sorted({r["width"] for r in records})
    opts = list(dict.fromkeys(r["optimizer"] for r in records))
    fig, axes = plt.subplots(len(opts), len(widths), figsize=(2.9 * len(widths) + 0.6,
                             2.7 * len(opts) + 0.4), squeeze=False, sharey="row")
    for r in records:
        ax = axes[opts.index(r["optimizer"]), widths.index(r["width"])]
        color, label = _INIT_STYLE[r["init"]]
        y = np.array(r["train_log10_loss"], float)
        y[~np.isfinite(y)] = np.nan
        ax.semilogx(r["lrs"], y, ".-", color=color, label=label)
        k = int(np.argmin(np.where(np.isnan(y), np.inf, y)))
        ax.semilogx([r["lrs"][k]], [y[k]], "*", color=color, ms=10)
        ax.axhline(0.0, color="gray", lw=0.6)
        ax.set_title(f"{r['optimizer']}, n = {r['width']}", fontsize=9)
        ax.set_xlabel("shared learning rate")
    for i in range(len(opts)):
        axes[i, 0].set_ylabel("log10(final / initial loss)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("LoRA init: loss after training against lr (star = best; gaps = diverged)")
    return savefig(fig, path)


def plot_lora_init_max_lr(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Max stable and best learning rate against width for both inits, log-log, with the
    paper's n^-1/2 and n^-1 reference slopes.

    Args:
        records: dicts with ``width``, ``init``, ``optimizer``, ``max_stable_lr``, ``best_lr``.
        path: where to write the PNG.
    """
    opts = list(dict.fromkeys(r["optimizer"] for r in records))
    fig, axes = plt.subplots(1, len(opts), figsize=(5.0 * len(opts), 4.0), squeeze=False)
    for ax, opt in zip(axes[0], opts, strict=True):
        for init, (color, label) in _INIT_STYLE.items():
            rs = sorted((r for r in records if r["optimizer"] == opt and r["init"] == init),
                        key=lambda r: r["width"])
            w = [r["width"] for r in rs]
            ax.loglog(w, [_num(r["max_stable_lr"]) for r in rs], "o-", color=color,
                      label=f"{label}: max stable")
            ax.loglog(w, [r["best_lr"] for r in rs], "x:", color=color, label="   best")
        w = np.array(sorted({r["width"] for r in records}), float)
        ref = [_num(r["max_stable_lr"]) for r in records if r["optimizer"] == opt
               and r["width"] == w[0] and math.isfinite(_num(r["max_stable_lr"]))]
        if ref:
            y0 = max(ref)
            ax.loglog(w, y0 * (w / w[0]) ** -0.5, "k--", lw=0.8, label="n^-1/2")
            ax.loglog(w, y0 * (w / w[0]) ** -1.0, "k-.", lw=0.8, label="n^-1")
        ax.set_xlabel("width n")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{opt}: largest stable / best lr")
        ax.legend(fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
    return savefig(fig, path)


def plot_lora_init_features(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Feature size rms(A x) after training at the max stable lr against width, both inits,
    log-log, with the n^(1/2) (Init[A]) and n^0 (Init[B]) reference slopes; one panel per
    optimizer.

    Args:
        records: dicts with ``width``, ``init``, ``optimizer``,
            ``log10_feature_at_max_stable`` and optionally ``per_seed`` (a list of dicts with
            the same key: drawn as faint points).
        path: where to write the PNG.
    """
    opts = list(dict.fromkeys(r["optimizer"] for r in records))
    fig, axes = plt.subplots(1, len(opts), figsize=(5.0 * len(opts), 4.0), squeeze=False)
    for ax, opt in zip(axes[0], opts, strict=True):
        for init, (color, label) in _INIT_STYLE.items():
            rs = sorted((r for r in records if r["optimizer"] == opt and r["init"] == init),
                        key=lambda r: r["width"])
            w = np.array([r["width"] for r in rs], float)
            y = np.array([10 ** _num(r["log10_feature_at_max_stable"]) for r in rs])
            ax.loglog(w, y, "o-", color=color, label=f"{label} (seed mean)")
            for r in rs:
                pts = [10 ** _num(p["log10_feature_at_max_stable"]) for p in r.get("per_seed", [])]
                ax.loglog([r["width"]] * len(pts), pts, ".", color=color, alpha=0.4, ms=4)
            ok = np.isfinite(y)
            if ok.any():
                ref = 0.5 if init == "A" else 0.0
                w0, y0 = w[ok][0], y[ok][0]
                ax.loglog(w, y0 * (w / w0) ** ref, "--" if init == "A" else "-.", color=color,
                          lw=0.8, label=f"n^{ref:g} reference")
        ax.set_xlabel("width n")
        ax.set_ylabel("rms(A x) after training, at the max stable lr")
        ax.set_title(f"{opt}: feature size at the largest stable lr", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(True, which="major", alpha=0.3)
    return savefig(fig, path)


def _smooth3(values: Sequence[Any]) -> list[float]:
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - 1):i + 2] if v is not None]
        out.append(sum(window) / len(window) if values[i] is not None and window else math.nan)
    return out


def plot_speedup_protocol(result: dict[str, Any], path: str | Path) -> Path:
    """The LoRA+ speed-up protocol: stage 1's best smoothed eval loss per configuration, and
    per evaluation seed the smoothed eval curves of the chosen LoRA and LoRA+ runs with
    LoRA's best (the target) and each run's raw evaluations.

    Args:
        result: ``{"tuning": [{"config", "best_smoothed"}], "evaluation": [{"seed",
            "lora_curve", "loraplus_curve", "lora_best_smoothed", "speedup"}], "best_lora",
            "best_loraplus"}`` as ``loraplus-finetune``'s full mode returns it.
        path: where to write the PNG.
    """
    evals = result["evaluation"]
    fig, axes = plt.subplots(1, 1 + len(evals), figsize=(5.2 + 4.2 * len(evals), 4.6),
                             squeeze=False, gridspec_kw={"width_ratios": [1.3] + [1] * len(evals)})
    ax = axes[0, 0]
    rows = sorted(result["tuning"], key=lambda r: -(r["best_smoothed"] or math.inf))
    names = [r["config"] for r in rows]
    vals = [_num(r["best_smoothed"]) for r in rows]
    chosen = {result.get("best_lora"), result.get("best_loraplus")}
    colors = [("tab:blue" if n.startswith("LoRA lr") else "tab:orange") for n in names]
    ax.barh(range(len(rows)), vals, color=colors,
            edgecolor=["black" if n in chosen else "none" for n in names], linewidth=1.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=6)
    finite = [v for v in vals if math.isfinite(v)]
    if finite:
        ax.set_xlim(min(finite) - 0.02, max(finite) + 0.02)
    ax.set_xlabel("best smoothed eval loss (tuning seed)")
    ax.set_title(f"stage 1, seed {result.get('tune_seed', '')}: tuning\n(outlined: chosen)",
                 fontsize=9)
    for ax, r in zip(axes[0, 1:], evals, strict=True):
        for key, color, label in (("lora_curve", "tab:blue", result.get("best_lora", "LoRA")),
                                  ("loraplus_curve", "tab:orange",
                                   result.get("best_loraplus", "LoRA+"))):
            c = r[key]
            ax.plot(c["steps"], _smooth3(c["eval_loss"]), "-", color=color, label=label)
            ax.plot(c["steps"], [_num(v) for v in c["eval_loss"]], ".", color=color, alpha=0.4)
        if r.get("lora_best_smoothed") is not None:
            ax.axhline(r["lora_best_smoothed"], color="gray", ls="--", lw=1,
                       label="target: LoRA's best smoothed")
        ax.set_xlabel("step")
        ax.set_ylabel("eval loss (line: 3-point smoothed; dots: raw)")
        ax.set_title(f"stage 2, seed {r['seed']}: speed-up {r['speedup']:.2f}x", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return savefig(fig, path)
