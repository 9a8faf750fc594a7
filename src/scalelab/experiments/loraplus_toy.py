"""Reproduction ``loraplus-toy``: the best eta_B / eta_A of a toy LoRA layer grows with width.

LoRA+ (arXiv 2402.12354), Section 3: on a linear layer with a LoRA adapter, one shared
learning rate for A and B is inefficient at large width — efficient learning needs
eta_A to shrink and eta_B to grow with the width n, so the best ratio eta_B / eta_A grows.

What runs: the toy teacher-student of :mod:`._lora_toy_common` (a square n x n layer, rank-1
adapter, Init[A]), trained full batch for a fixed number of steps at every (eta_A, eta_B)
of a log grid (both axes share one grid, so the diagonal eta_A = eta_B is the shared-lr
LoRA baseline), at widths 64 ... 4096; losses are geometric means over seeds.

Interpretation and choices (stated in the report too):
- The judged sweep uses plain gradient descent, the optimizer of the paper's Section-3 toy
  analysis. The same scaling argument applied to this toy (half MSE averaged over the n
  outputs) predicts eta_A ~ 1/n and eta_B ~ n, so a best ratio ~ n^2 under GD; the paper's
  Theta(n) is its Adam result. Only the sign of the trend is judged.
- Full mode also runs the sweep with Adam and reports it, not judged: in this linear toy Adam
  is invariant under (B, A, eta_B, eta_A) -> (cB, A/c, c eta_B, eta_A/c) except through A's
  random init, so its loss is nearly flat along eta_A * eta_B = const and the grid's
  best ratio is poorly determined.
- "Best" = lowest train loss averaged (in log10) over the run's steps, i.e. the fastest
  training. Near GD's stability edge the loss at one fixed step is erratic (a cell may
  overshoot and come back), so the final loss alone gives a noisy argmin; final train and
  test losses are recorded for every cell and the final-loss verdict numbers are reported
  too. Diverged cells (non-finite loss) count as infinitely bad.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._lora_toy_common import log_grid, loglog_slope, seed_mean_log_loss
from ._registry import Context, Experiment, Outcome, register

#: the shared lr must be at least this many decades worse than the best pair (2x the loss)
MIN_GAP_DECADES = math.log10(2.0)


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(widths=(64, 256, 1024, 4096), lrs=log_grid(-3, 4, 2), steps=20, seeds=3,
                    adam=None)
    adam = dict(widths=(64, 256, 1024, 4096), lrs=log_grid(-6, 1, 2), steps=40, seeds=3)
    return dict(widths=(64, 128, 256, 512, 1024, 2048, 4096), lrs=log_grid(-3, 4, 2),
                steps=20, seeds=4, adam=adam)


def loraplus_sweep(widths, lrs, *, steps: int, seeds, optimizer: str = "sgd",
                   rank: int = 1) -> list[dict]:
    """Losses over the (eta_A, eta_B) grid ``lrs x lrs`` at each width, one record each.

    Grids are indexed ``[i][j]`` at eta_A = lrs[i], eta_B = lrs[j] and hold seed-averaged
    log10(loss / initial loss): ``avg_log10_loss`` (train loss averaged over the steps — the
    score that picks the best cell), ``train_log10_loss`` and ``test_log10_loss`` (final).
    Each record names the best cell, the best cell on the diagonal eta_A = eta_B (one shared
    learning rate) and their gap in decades, by the averaged score and by the final loss.
    """
    g = len(lrs)
    lr_a = [a for a in lrs for _ in lrs]
    lr_b = [b for _ in lrs for b in lrs]
    records = []
    for width in track(widths, f"loraplus-toy ({optimizer}) widths"):
        res = seed_mean_log_loss(width, lr_a, lr_b, seeds=seeds, steps=steps,
                                 optimizer=optimizer, rank=rank)
        avg, train, test = (np.array(res[k]).reshape(g, g) for k in ("avg", "train", "test"))
        i, j = np.unravel_index(int(np.argmin(avg)), avg.shape)
        k = int(np.argmin(np.diag(avg)))
        fi, fj = np.unravel_index(int(np.argmin(train)), train.shape)
        near = np.argwhere(avg <= avg[i, j] + MIN_GAP_DECADES)
        records.append({
            "width": int(width), "optimizer": optimizer, "steps": steps, "lrs": list(lrs),
            "avg_log10_loss": avg.tolist(), "train_log10_loss": train.tolist(),
            "test_log10_loss": test.tolist(),
            "best_lr_a": lrs[i], "best_lr_b": lrs[j], "best_ratio": lrs[j] / lrs[i],
            "best_avg_log10_loss": float(avg[i, j]), "best_train_log10_loss": float(train[i, j]),
            "best_test_log10_loss": float(test[i, j]),
            "near_best_ratio": float(10 ** np.mean([math.log10(lrs[q] / lrs[p]) for p, q in near])),
            "shared_lr": lrs[k], "shared_avg_log10_loss": float(avg[k, k]),
            "shared_train_log10_loss": float(train[k, k]),
            "shared_test_log10_loss": float(test[k, k]),
            "gap_decades": float(avg[k, k] - avg[i, j]),
            "final_best_ratio": lrs[fj] / lrs[fi],
            "final_gap_decades": float(np.min(np.diag(train)) - train[fi, fj]),
            "diverged_fraction": float(np.mean(~np.isfinite(avg))),
        })
    return records


def summarize(records: list[dict]) -> dict:
    """Log-log slopes of the best ratio / eta_A / eta_B against width, and the verdict parts.

    The shared-lr gap is averaged over the large widths (those at or above the geometric
    middle of the sweep): one width's gap moves by about a decade from seed to seed.
    """
    w = [r["width"] for r in records]
    first, last = records[0], records[-1]
    middle = math.sqrt(min(w) * max(w))
    large = [r for r in records if r["width"] >= middle]
    out = {
        "ratio_slope": loglog_slope(w, [r["best_ratio"] for r in records]),
        "near_best_ratio_slope": loglog_slope(w, [r["near_best_ratio"] for r in records]),
        "final_ratio_slope": loglog_slope(w, [r["final_best_ratio"] for r in records]),
        "lr_a_slope": loglog_slope(w, [r["best_lr_a"] for r in records]),
        "lr_b_slope": loglog_slope(w, [r["best_lr_b"] for r in records]),
        "ratio_grows": bool(last["best_ratio"] > first["best_ratio"]),
        "large_widths": [r["width"] for r in large],
        "gap_large_widths_decades": float(np.mean([r["gap_decades"] for r in large])),
        "final_gap_large_widths_decades": float(np.mean([r["final_gap_decades"] for r in large])),
        "gap_at_largest_width_decades": last["gap_decades"],
    }
    out["shared_lr_worse_at_large_width"] = bool(out["gap_large_widths_decades"]
                                                 >= MIN_GAP_DECADES)
    out["holds"] = bool(out["ratio_slope"] > 0 and out["ratio_grows"]
                        and out["shared_lr_worse_at_large_width"])
    return out


def _describe(records: list[dict], summary: dict) -> str:
    rows = "; ".join(
        f"n={r['width']}: eta_A={r['best_lr_a']:.3g}, eta_B={r['best_lr_b']:.3g} (ratio "
        f"{r['best_ratio']:.3g}; run-averaged loss 10^{r['best_avg_log10_loss']:.2f} vs "
        f"10^{r['shared_avg_log10_loss']:.2f} at the best shared lr {r['shared_lr']:.3g}; final "
        f"train/test 10^{r['best_train_log10_loss']:.1f}/10^{r['best_test_log10_loss']:.1f} vs "
        f"10^{r['shared_train_log10_loss']:.1f}/10^{r['shared_test_log10_loss']:.1f})"
        for r in records)
    gap = summary["gap_large_widths_decades"]
    return (f"Best pairs — {rows}. Log-log slope of the best ratio against width: "
            f"{summary['ratio_slope']:.2f} (eta_A: {summary['lr_a_slope']:.2f}, eta_B: "
            f"{summary['lr_b_slope']:.2f}). At widths {summary['large_widths']} the best shared "
            f"lr's run-averaged loss is on average {gap:.2f} decades (x{10 ** gap:.3g}) above "
            f"the best pair's ({summary['gap_at_largest_width_decades']:.2f} at the largest). "
            f"Picking by the final train loss instead: ratio slope "
            f"{summary['final_ratio_slope']:.2f}, shared-lr gap "
            f"{summary['final_gap_large_widths_decades']:.2f} decades.")


def _run(ctx: Context) -> Outcome:
    from ..plots import plot_loraplus_heatmaps, plot_loraplus_ratio_vs_width

    sz = _sizes(ctx.quick)
    seeds = [ctx.seed + s for s in range(sz["seeds"])]
    gd = loraplus_sweep(sz["widths"], sz["lrs"], steps=sz["steps"], seeds=seeds)
    gd_sum = summarize(gd)
    figures = ["best_ratio_vs_width.png", "loss_heatmaps.png"]
    result = {"sgd": {"records": gd, "summary": gd_sum}}
    observed = "Gradient descent (judged): " + _describe(gd, gd_sum)
    adam_txt = ""
    curves = [gd]
    if sz["adam"]:
        ad = sz["adam"]
        adam = loraplus_sweep(ad["widths"], ad["lrs"], steps=ad["steps"],
                              seeds=[ctx.seed + s for s in range(ad["seeds"])], optimizer="adam")
        adam_sum = summarize(adam)
        result["adam"] = {"records": adam, "summary": adam_sum}
        curves.append(adam)
        plot_loraplus_heatmaps(adam, ctx.path("loss_heatmaps_adam.png"))
        figures.append("loss_heatmaps_adam.png")
        observed += "\n\nAdam (reported, not judged): " + _describe(adam, adam_sum)
        adam_txt = (f" Adam sweep: widths {list(ad['widths'])}, {ad['steps']} steps, "
                    f"{ad['seeds']} seeds, grid 1e-6..1e1.")
    plot_loraplus_ratio_vs_width([r for rs in curves for r in rs], ctx.path(figures[0]))
    plot_loraplus_heatmaps(gd, ctx.path(figures[1]))
    lrs = sz["lrs"]
    ran = (f"Toy LoRA teacher-student: square n x n layer, rank-1 adapter, Init[A], 64 training "
           f"points in an 8-dim input subspace. Full-batch gradient descent for {sz['steps']} "
           f"steps at every (eta_A, eta_B) on a {len(lrs)} x {len(lrs)} log grid "
           f"({lrs[0]:.0e} .. {lrs[-1]:.0e}), widths {list(sz['widths'])}, losses averaged "
           f"(geometrically) over {sz['seeds']} seeds.{adam_txt} The best cell is the one with "
           f"the lowest train loss averaged (in log10) over the run. Verdict: slope of the best "
           f"ratio > 0, larger at the largest width than at the smallest, and the best shared "
           f"lr at least 2x worse than the best pair on average over the widths >= "
           f"sqrt(smallest x largest).")
    return Outcome(result=result, figures=figures, ran=ran, observed=observed,
                   claim_holds=gd_sum["holds"])


EXPERIMENT = register(Experiment(
    name="loraplus-toy",
    description="LoRA+ toy model: the best eta_B/eta_A grows with width; one shared lr is worse",
    paper="arXiv:2402.12354",
    claim=("With LoRA at large width, one learning rate for A and B is inefficient: the best "
           "ratio eta_B / eta_A grows with the width n (Theta(n) for Adam), and a single "
           "shared learning rate trains worse than the best (eta_A, eta_B) pair."),
    run=_run,
))
