"""Reproduction ``loraplus-toy``: the best eta_B / eta_A of a toy LoRA layer grows with width.

LoRA+ (arXiv 2402.12354), Section 3: on a linear layer with a LoRA adapter, one shared
learning rate for A and B is inefficient at large width — efficient learning needs
eta_A to shrink and eta_B to grow with the width n, so the best ratio eta_B / eta_A grows.

What runs: the toy teacher-student of :mod:`._lora_toy_common` (a square n x n layer, rank-1
adapter, Init[A]), trained full batch for a fixed number of steps at every (eta_A, eta_B)
of a log grid (both axes share one grid, so the diagonal eta_A = eta_B is the shared-lr
LoRA baseline), at widths 64 ... 4096, with gradient descent and with Adam, each judged
against its own predicted slope; losses are geometric means over seeds.

Predicted slopes of log(best ratio) against log(n) (derivation in docs/reproductions_lora.md):
- Adam: 1 — the paper's eta_B / eta_A = Theta(n) (Adam's steps do not see the gradients'
  scale: eta_B = Theta(1), and eta_A = Theta(1/n) keeps the features A x Theta(1));
- gradient descent: 2 — this toy's own analysis. The loss is averaged over the n outputs,
  which puts a 1/n in B's gradient, so GD needs eta_B = Theta(n) (eta_A = Theta(1/n) as
  before). With a scalar output (the paper's f(x) = (W* + b a^T) x) the same argument gives 1.

Rules (interpretation, fixed before the numbers):
- "Best" = lowest train loss averaged (in log10) over the run's steps, i.e. the fastest
  training (the final loss is recorded too, and the final-loss slope is reported).
- A cell *fails* when it diverged, ends above its initial loss, or its features blew up —
  final rms(A x) above ``FEATURE_MAX`` = 10 (at init and in the teacher A x is ~1): the
  paper's stability condition that the features stay Theta(1). Without it Adam's loss in this
  linear toy is nearly flat along eta_A * eta_B = const (Adam is invariant under
  (B, A, eta_B, eta_A) -> (cB, A/c, c eta_B, eta_A/c) except through A's init), and its
  unconstrained argmin drifts to the grid's corner; that argmin is reported too.
- Edge cells are not eligible: a cell counts only if it and its 8 in-grid neighbours did not
  fail, so the best pair sits at least one grid step inside the stable region. A best cell on
  the grid's border means the grid was too small: that optimizer's verdict fails.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._common import loglog_fit, seeds_for, spread
from ._lora_toy_common import log_grid, loglog_slope, seed_mean_log_loss
from .registry import Context, Experiment, Outcome, register

#: the shared lr must be at least this many decades worse than the best pair (2x the loss)
MIN_GAP_DECADES = math.log10(2.0)
#: features rms(A x) above this count as blown up (they start, and the teacher's are, ~1)
FEATURE_MAX = 10.0
#: predicted slope of log best ratio vs log n per optimizer (module docstring)
PREDICTED_SLOPE = {"sgd": 2.0, "adam": 1.0}
#: half the gap between the two candidate predictions (1 and 2)
SLOPE_TOL = 0.5

CRITERION = (
    "For each optimizer separately (both must hold): the log-log least-squares slope of the "
    "best eta_B / eta_A against width, on the seed-averaged grids, is within "
    f"{SLOPE_TOL} of its prediction — 1 for Adam (the paper's Theta(n)), 2 for gradient descent "
    "(this toy's own analysis: the loss averages over the n outputs); no width's best cell lies "
    "on the grid's border; and the best shared lr's run-averaged loss is at least 2x the best "
    "pair's, on average over the widths >= sqrt(smallest x largest). Best = lowest train "
    "loss averaged over the run among eligible cells: a cell is eligible when neither it nor "
    "any of its 8 grid neighbours diverged, ended above its initial loss or let rms(A x) "
    f"exceed {FEATURE_MAX:g}.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(sgd=dict(widths=(64, 256, 1024), lrs=log_grid(-3, 4, 2), steps=20, seeds=2),
                    adam=dict(widths=(64, 256, 1024), lrs=log_grid(-6, 1, 2), steps=40,
                              seeds=2))
    widths = (64, 128, 256, 512, 1024, 2048, 4096)
    return dict(sgd=dict(widths=widths, lrs=log_grid(-3, 4, 2), steps=20, seeds=4),
                adam=dict(widths=widths, lrs=log_grid(-6, 1, 2), steps=40, seeds=3))


def failed_cells(avg, train, feature) -> np.ndarray:
    """Boolean grid: diverged, ended above the initial loss, or features above FEATURE_MAX.

    ``avg``, ``train``: log10 run-averaged and final loss / initial; ``feature``: log10 final
    rms(A x) (all g x g).
    """
    avg, train, feature = (np.asarray(v, float) for v in (avg, train, feature))
    bad = ~(np.isfinite(avg) & np.isfinite(train) & np.isfinite(feature))
    with np.errstate(invalid="ignore"):
        bad |= train > 0.0
        bad |= feature > math.log10(FEATURE_MAX)
    return bad


def eligible_cells(failed: np.ndarray) -> np.ndarray:
    """Cells that did not fail and none of whose 8 in-grid neighbours failed."""
    g0, g1 = failed.shape
    padded = np.zeros((g0 + 2, g1 + 2), bool)
    padded[1:-1, 1:-1] = failed
    near = np.zeros_like(failed)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            near |= padded[1 + di:1 + di + g0, 1 + dj:1 + dj + g1]
    return ~near


def pick(avg, train, feature, lrs) -> dict:
    """The best eligible cell and the best eligible diagonal (shared-lr) cell of one grid."""
    avg = np.asarray(avg, float)
    g = avg.shape[0]
    ok = eligible_cells(failed_cells(avg, train, feature))
    score = np.where(ok, avg, np.inf)
    out: dict = {"eligible_fraction": float(ok.mean())}
    if not np.isfinite(score).any():
        return {**out, "best": None, "shared": None}
    i, j = np.unravel_index(int(np.argmin(score)), score.shape)
    out["best"] = (int(i), int(j))
    out["on_border"] = bool(i in (0, g - 1) or j in (0, g - 1))
    diag = np.diag(score)
    out["shared"] = int(np.argmin(diag)) if np.isfinite(diag).any() else None
    out["gap_decades"] = (float(diag[out["shared"]] - score[i, j]) if out["shared"] is not None
                          else math.inf)
    out["ratio"] = lrs[j] / lrs[i]
    return out


def loraplus_sweep(widths, lrs, *, steps: int, seeds, optimizer: str = "sgd",
                   rank: int = 1) -> list[dict]:
    """Losses over the (eta_A, eta_B) grid ``lrs x lrs`` at each width, one record each.

    Grids are indexed ``[i][j]`` at eta_A = lrs[i], eta_B = lrs[j] and hold seed-averaged
    log10(loss / initial loss): ``avg_log10_loss`` (train loss averaged over the steps — the
    score that picks the best cell), ``train_log10_loss`` and ``test_log10_loss`` (final), and
    ``feature_log10_rms`` (log10 final rms(A x)). Each record names the best eligible cell and
    the best eligible diagonal cell (one shared learning rate; see :func:`pick`), their gap in
    decades, the unconstrained argmin and the final-loss argmin, and the same choice made on
    each seed's own grids (``per_seed``).
    """
    g = len(lrs)
    lr_a = [a for a in lrs for _ in lrs]
    lr_b = [b for _ in lrs for b in lrs]
    records = []
    for width in track(widths, f"loraplus-toy ({optimizer}) widths"):
        res = seed_mean_log_loss(width, lr_a, lr_b, seeds=seeds, steps=steps,
                                 optimizer=optimizer, rank=rank)
        avg, train, test, feat = (np.array(res[k]).reshape(g, g)
                                  for k in ("avg", "train", "test", "feature"))
        p = pick(avg, train, feat, lrs)
        if p["best"] is None:
            raise RuntimeError(f"loraplus-toy: no eligible cell at width {width} ({optimizer})")
        (i, j), k = p["best"], p["shared"]
        shared = ({"shared_lr": lrs[k], "shared_avg_log10_loss": float(avg[k, k]),
                   "shared_train_log10_loss": float(train[k, k]),
                   "shared_test_log10_loss": float(test[k, k])} if k is not None else
                  dict.fromkeys(("shared_lr", "shared_avg_log10_loss", "shared_train_log10_loss",
                                 "shared_test_log10_loss"), math.nan))
        ui, uj = np.unravel_index(int(np.nanargmin(np.where(np.isfinite(avg), avg, np.nan))),
                                  avg.shape)
        fi, fj = np.unravel_index(int(np.nanargmin(np.where(np.isfinite(train), train, np.nan))),
                                  train.shape)
        per_seed = []
        for seed, one in zip(seeds, res["per_seed"], strict=True):
            q = pick(*(np.array(one[key]).reshape(g, g) for key in ("avg", "train", "feature")),
                     lrs)
            per_seed.append({"seed": int(seed),
                             "best_ratio": q.get("ratio", math.nan),
                             "gap_decades": q.get("gap_decades", math.nan)})
        records.append({
            "width": int(width), "optimizer": optimizer, "steps": steps, "lrs": list(lrs),
            "avg_log10_loss": avg.tolist(), "train_log10_loss": train.tolist(),
            "test_log10_loss": test.tolist(), "feature_log10_rms": feat.tolist(),
            "eligible": eligible_cells(failed_cells(avg, train, feat)).tolist(),
            "best_lr_a": lrs[i], "best_lr_b": lrs[j], "best_ratio": lrs[j] / lrs[i],
            "best_on_border": p["on_border"], "eligible_fraction": p["eligible_fraction"],
            "best_avg_log10_loss": float(avg[i, j]), "best_train_log10_loss": float(train[i, j]),
            "best_test_log10_loss": float(test[i, j]),
            "best_feature_log10_rms": float(feat[i, j]),
            **shared, "gap_decades": p["gap_decades"],
            "unconstrained_best_ratio": lrs[uj] / lrs[ui],
            "unconstrained_best_lr_a": lrs[ui], "unconstrained_best_lr_b": lrs[uj],
            "final_best_ratio": lrs[fj] / lrs[fi],
            "diverged_fraction": float(np.mean(~np.isfinite(avg))),
            "per_seed": per_seed,
        })
    return records


def summarize(records: list[dict]) -> dict:
    """Log-log slopes of the best ratio / eta_A / eta_B against width, and the verdict parts.

    The shared-lr gap is averaged over the large widths (those at or above the geometric
    middle of the sweep): one width's gap moves by about a decade from seed to seed.
    """
    opt = records[0]["optimizer"]
    w = [r["width"] for r in records]
    middle = math.sqrt(min(w) * max(w))
    large = [r for r in records if r["width"] >= middle]
    fit = loglog_fit(w, [r["best_ratio"] for r in records])
    out = {
        "optimizer": opt, "predicted_slope": PREDICTED_SLOPE[opt],
        "ratio_slope": fit["slope"], "ratio_slope_ci95": fit["ci95"],
        "unconstrained_ratio_slope": loglog_slope(w, [r["unconstrained_best_ratio"]
                                                      for r in records]),
        "final_ratio_slope": loglog_slope(w, [r["final_best_ratio"] for r in records]),
        "lr_a_slope": loglog_slope(w, [r["best_lr_a"] for r in records]),
        "lr_b_slope": loglog_slope(w, [r["best_lr_b"] for r in records]),
        "large_widths": [r["width"] for r in large],
        "gap_large_widths_decades": float(np.mean([r["gap_decades"] for r in large])),
        "gap_at_largest_width_decades": records[-1]["gap_decades"],
        "best_on_border_widths": [r["width"] for r in records if r["best_on_border"]],
    }
    seeds = [p["seed"] for p in records[0]["per_seed"]]
    seed_slopes = [loglog_fit(w, [r["per_seed"][s]["best_ratio"] for r in records])["slope"]
                   for s in range(len(seeds))]
    seed_gaps = [float(np.mean([r["per_seed"][s]["gap_decades"] for r in large]))
                 for s in range(len(seeds))]
    out["seeds"] = seeds
    out["spread"] = {f"{opt}_ratio_slope": spread(seed_slopes, seeds),
                     f"{opt}_shared_lr_gap_decades": spread(seed_gaps, seeds)}
    out["checks"] = {
        "slope_within_tolerance": bool(abs(out["ratio_slope"] - PREDICTED_SLOPE[opt])
                                       <= SLOPE_TOL),
        "no_best_on_grid_border": not out["best_on_border_widths"],
        "shared_lr_worse_at_large_width": bool(out["gap_large_widths_decades"]
                                               >= MIN_GAP_DECADES),
    }
    out["holds"] = bool(all(out["checks"].values()))
    return out


def _describe(records: list[dict], summary: dict) -> str:
    rows = "; ".join(
        f"n={r['width']}: eta_A={r['best_lr_a']:.3g}, eta_B={r['best_lr_b']:.3g} (ratio "
        f"{r['best_ratio']:.3g}; run-averaged loss 10^{r['best_avg_log10_loss']:.2f} vs "
        f"10^{r['shared_avg_log10_loss']:.2f} at the best shared lr {r['shared_lr']:.3g}; final "
        f"train/test 10^{r['best_train_log10_loss']:.1f}/10^{r['best_test_log10_loss']:.1f} vs "
        f"10^{r['shared_train_log10_loss']:.1f}/10^{r['shared_test_log10_loss']:.1f}; "
        f"rms(Ax) 10^{r['best_feature_log10_rms']:.2f})"
        for r in records)
    gap = summary["gap_large_widths_decades"]
    sp = summary["spread"]
    opt = summary["optimizer"]
    ci = summary["ratio_slope_ci95"]
    return (f"Best eligible pairs — {rows}. Log-log slope of the best ratio against width: "
            f"{summary['ratio_slope']:.2f}" + (f" ± {ci:.2f} (95% CI)" if math.isfinite(ci)
                                                else "")
            + f", predicted {summary['predicted_slope']:g} ± {SLOPE_TOL} (per seed "
            f"{sp[f'{opt}_ratio_slope']['min']:.2f} .. {sp[f'{opt}_ratio_slope']['max']:.2f}; "
            f"eta_A: {summary['lr_a_slope']:.2f}, eta_B: {summary['lr_b_slope']:.2f}). At widths "
            f"{summary['large_widths']} the best shared lr's run-averaged loss is on average "
            f"{gap:.2f} decades (x{10 ** gap:.3g}) above the best pair's "
            f"({summary['gap_at_largest_width_decades']:.2f} at the largest; per seed "
            f"{sp[f'{opt}_shared_lr_gap_decades']['min']:.2f} .. "
            f"{sp[f'{opt}_shared_lr_gap_decades']['max']:.2f}). Best cell on the grid border at "
            f"widths {summary['best_on_border_widths'] or 'none'}. Without the eligibility rule "
            f"(plain argmin) the ratio slope would be {summary['unconstrained_ratio_slope']:.2f}; "
            f"picking by the final train loss, {summary['final_ratio_slope']:.2f}. Checks: "
            + ", ".join(f"{k} {v}" for k, v in summary["checks"].items())
            + f" -> {'holds' if summary['holds'] else 'fails'}.")


def run(ctx: Context) -> Outcome:
    from ..plots import plot_loraplus_heatmaps, plot_loraplus_ratio_vs_width

    sz = _sizes(ctx.quick)
    result, curves, texts, ran = {}, [], [], []
    names = {"sgd": "Gradient descent", "adam": "Adam"}
    seed_lists = []
    spreads: dict = {}
    figures = ["best_ratio_vs_width.png"]
    for opt in ("sgd", "adam"):
        cfg = sz[opt]
        seeds = seeds_for(ctx, cfg["seeds"])
        recs = loraplus_sweep(cfg["widths"], cfg["lrs"], steps=cfg["steps"], seeds=seeds,
                              optimizer=opt)
        summ = summarize(recs)
        result[opt] = {"records": recs, "summary": summ}
        curves += recs
        spreads.update(summ["spread"])
        seed_lists.append(seeds)
        name = "loss_heatmaps.png" if opt == "sgd" else "loss_heatmaps_adam.png"
        plot_loraplus_heatmaps(recs, ctx.path(name))
        figures.append(name)
        texts.append(f"{names[opt]} (predicted slope {PREDICTED_SLOPE[opt]:g}): "
                     + _describe(recs, summ))
        lrs = cfg["lrs"]
        ran.append(f"{names[opt]}: {cfg['steps']} full-batch steps at every (eta_A, eta_B) on "
                   f"a {len(lrs)} x {len(lrs)} log grid ({lrs[0]:.0e} .. {lrs[-1]:.0e}, 2 a "
                   f"decade), widths {list(cfg['widths'])}, seeds {seeds} (log10 losses "
                   f"averaged over them).")
    plot_loraplus_ratio_vs_width(curves, ctx.path(figures[0]), predicted=PREDICTED_SLOPE)
    holds = all(result[o]["summary"]["holds"] for o in ("sgd", "adam"))
    ran_txt = ("Toy LoRA teacher-student: square n x n layer, rank-1 adapter, Init[A], 64 "
               "training points in an 8-dim input subspace. " + " ".join(ran))
    return Outcome(result=result, figures=figures, ran=ran_txt, observed="\n\n".join(texts),
                   claim_holds=bool(holds), seeds=min(seed_lists, key=len), spread=spreads,
                   indicative=ctx.quick)


EXPERIMENT = register(Experiment(
    name="loraplus-toy",
    description="LoRA+ toy model: the best eta_B/eta_A grows with width; one shared lr is worse",
    paper="arXiv:2402.12354",
    claim=("With LoRA at large width, one learning rate for A and B is inefficient: the best "
           "ratio eta_B / eta_A grows with the width n (Theta(n) for Adam), and a single "
           "shared learning rate trains worse than the best (eta_A, eta_B) pair."),
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
