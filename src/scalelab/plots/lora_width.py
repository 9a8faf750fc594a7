"""Pictures for the ``loraplus-width`` reproduction (arXiv 2402.12354): best ratio, gain and
eval curves of LoRA and LoRA+ against the encoder's width.

The records are the per-width results of ``scalelab.experiments.loraplus_width.summarize``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import plt, savefig


def _ok(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in results if not r.get("undetermined")]


def plot_loraplus_width(results: Sequence[Mapping[str, Any]], trends: Mapping[str, Any],
                        path: str | Path) -> Path:
    """Three panels against width: the best ratio (log-log, with its fit and each seed's own
    best), the held-out gain of LoRA+ over tuned LoRA (per seed and mean, with its fit), and
    both methods' best eval loss.

    Args:
        results: per-width dicts with ``width``, ``best_ratio``, ``heldout_gain``,
            ``lora_best``, ``loraplus_best`` and ``per_seed`` rows (``own_best_ratio``,
            ``gain``, ``seed``); ``undetermined`` ones are left out.
        trends: with ``ratio_fit`` and ``gain_fit`` (``slope``, ``intercept``, ``ci95``).
        path: where to write the PNG.
    """
    rs = _ok(results)
    w = np.array([r["width"] for r in rs], float)
    fig, (ax_r, ax_g, ax_l) = plt.subplots(1, 3, figsize=(14, 4.2))
    seeds = [p["seed"] for p in rs[0]["per_seed"]] if rs else []
    offsets = np.linspace(-0.06, 0.06, max(len(seeds), 1))
    for k, s in enumerate(seeds):
        own = [r["per_seed"][k]["own_best_ratio"] for r in rs]
        ax_r.scatter(w * 2 ** offsets[k], [np.nan if v is None else v for v in own], s=14,
                     alpha=0.6, label=f"seed {s}: its own best")
        g = [r["per_seed"][k].get("gain") for r in rs]
        ax_g.scatter(w * 2 ** offsets[k], [np.nan if v is None else v for v in g], s=14,
                     alpha=0.6, label=f"held-out seed {s}")
    ax_r.loglog(w, [r["best_ratio"] for r in rs], "ko-", label="chosen on all seeds")
    fit = trends.get("ratio_fit", {})
    if rs and math.isfinite(fit.get("slope", math.nan)):
        ax_r.loglog(w, np.exp(fit["intercept"]) * w ** fit["slope"], "k--", lw=1,
                    label=f"fit: slope {fit['slope']:.2f}" + (
                        f" +- {fit['ci95']:.2f}" if math.isfinite(fit.get("ci95", math.nan))
                        else ""))
    shown = sorted({v for r in rs for v in [r["best_ratio"]]
                    + [p["own_best_ratio"] for p in r["per_seed"]] if v is not None})
    ax_r.set_yticks(shown, [f"{v:g}" for v in shown])
    ax_r.set_xlabel("width")
    ax_r.set_ylabel("best ratio lr_B / lr_A")
    ax_r.set_title("LoRA+'s best ratio")
    gains = [np.nan if r["heldout_gain"] is None else r["heldout_gain"] for r in rs]
    ax_g.semilogx(w, gains, "ko-", label="mean over held-out seeds")
    gfit = trends.get("gain_fit", {})
    if rs and math.isfinite(gfit.get("slope", math.nan)):
        ax_g.semilogx(w, gfit["intercept"] + gfit["slope"] * np.log2(w), "k--", lw=1,
                      label=f"fit: {gfit['slope']:+.4f} per doubling")
    ax_g.axhline(0.0, color="gray", lw=0.8)
    ax_g.set_xlabel("width")
    ax_g.set_ylabel("tuned LoRA best - LoRA+ best (eval loss)")
    ax_g.set_title("LoRA+'s gain (> 0: LoRA+ better)")
    ax_l.semilogx(w, [r["lora_best"] for r in rs], "o-", color="tab:blue", label="tuned LoRA")
    ax_l.semilogx(w, [r["loraplus_best"] for r in rs], "s-", color="tab:red", label="LoRA+")
    ax_l.set_xlabel("width")
    ax_l.set_ylabel("best smoothed eval loss (seed mean)")
    ax_l.set_title("Best eval loss")
    for ax in (ax_r, ax_g, ax_l):
        ax.set_xticks(w, [str(int(x)) for x in w])
        ax.minorticks_off()
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    return savefig(fig, path)


def plot_loraplus_width_curves(results: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Seed-mean smoothed eval loss of tuned LoRA and LoRA+ against step, one panel per width.

    Args:
        results: per-width dicts with ``width``, ``eval_steps``, ``mean_curves`` (``lora``,
            ``loraplus``), ``lora_lr``, ``loraplus_eta`` and ``best_ratio``.
        path: where to write the PNG.
    """
    rs = _ok(results)
    n = max(len(rs), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 0.4, 3.4), squeeze=False)
    for ax, r in zip(axes[0], rs, strict=False):
        steps = r["eval_steps"]
        ax.plot(steps, r["mean_curves"]["lora"], "o-", color="tab:blue", ms=3,
                label=f"LoRA lr {r['lora_lr']:g}")
        ax.plot(steps, r["mean_curves"]["loraplus"], "s-", color="tab:red", ms=3,
                label=f"LoRA+ eta {r['loraplus_eta']:g}, ratio {r['best_ratio']:g}")
        ax.set_title(f"width {r['width']}", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("eval loss (smoothed, seed mean)")
    fig.suptitle("Tuned LoRA vs LoRA+ on tweet sentiment, per encoder width", fontsize=10)
    return savefig(fig, path)
