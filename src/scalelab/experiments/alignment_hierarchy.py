"""Reproduction ``alignment-hierarchy``: after training, the alignment of each layer's tangent
kernel with the labels rises then falls across layers, peaking at a hidden layer
(Lou, Mingard, Nam, Hayou, arXiv 2110.11749; docs/diagnostics.md).

ReLU MLPs of several depths (6 to 48 hidden layers), initialised on the Edge of Chaos (for
ReLU: He init, sigma_w^2 = 2, sigma_b = 0), are trained on real digits with
:func:`scalelab.train.train_classifier` (Adam), several seeds per depth;
:func:`scalelab.diagnostics.layer_alignment` then measures, on training examples, the
centred alignment ``A_l`` of every Linear layer (weight and bias together, the readout
included). The rise-then-fall is judged on the seed-averaged curve of each depth. The
Equilibrium Hypothesis puts the peak where forward and backward information loss balance;
for fully connected nets a secondary summary of the paper places it at a layer of order
``L^(3/5)`` (indicative): the peak layer's growth exponent is fitted with a 95% confidence
interval and reported against 0.6, not judged.
"""

from __future__ import annotations

import numpy as np

from .._progress import track
from ._common import loglog_fit, seeds_for, spread
from .registry import Context, Experiment, Outcome, register

ACT = "relu"
MARGIN = 0.01
TRAINED = 0.8
MIN_SEEDS = 5
EQUILIBRIUM_EXPONENT = 0.6

CRITERION = (
    "ReLU MLPs (EOC = He init) at every depth, >= 5 seeds each, trained with Adam: the nets "
    "train (no divergence; mean test accuracy over seeds > 0.8 at every depth), and at every "
    "depth the seed-averaged alignment curve has its maximum at a hidden layer (not the "
    "first layer nor the readout) exceeding both ends by at least 0.01. The peak layer's "
    "growth exponent in L (log-log fit of every seed's peak layer against L + 1 layers, with "
    "a 95% confidence interval) is reported against the indicative L^(3/5), not judged.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(dataset="sklearn-digits", depths=(6, 12), width=48, steps=300, lr=1e-3,
                    examples=128, seeds=2)
    return dict(dataset="mnist", depths=(6, 12, 24, 48), width=64, steps=1500, lr=3e-4,
                examples=256, seeds=5)


def rise_and_fall(values, margin: float = MARGIN) -> bool:
    """The curve peaks strictly inside, above both ends by at least ``margin``."""
    v = np.asarray(values, dtype=float)
    if not np.any(np.isfinite(v)):
        return False
    p = int(np.nanargmax(v))
    return bool(0 < p < v.size - 1 and v[p] - v[0] > margin and v[p] - v[-1] > margin)


def _peak(values) -> int | None:
    """1-based index of the largest finite value (None if there is none)."""
    v = np.asarray(values, dtype=float)
    return int(np.nanargmax(v)) + 1 if np.any(np.isfinite(v)) else None


def run(ctx: Context) -> Outcome:
    import torch

    from ..data import load_digits
    from ..diagnostics import layer_alignment
    from ..nn import reference_mlp
    from ..plots import plot_alignment
    from ..train import train_classifier

    s = _sizes(ctx.quick)
    data = load_digits(s["dataset"], seed=ctx.seed)
    x, y = data.x_train[:s["examples"]], data.y_train[:s["examples"]]
    seeds = seeds_for(ctx, s["seeds"])
    runs = []
    jobs = [(d, seed) for d in s["depths"] for seed in seeds]
    for depth, seed in track(jobs, "training MLPs", total=len(jobs)):
        torch.manual_seed(seed * 1000 + depth)
        model = reference_mlp(data.input_dim, s["width"], depth, data.num_classes, ACT, "eoc")
        before = layer_alignment(model, x, y)
        curve = train_classifier(model, data, steps=s["steps"], lr=s["lr"], batch_size=64,
                                 optimizer="adam", seed=seed)
        after = layer_alignment(model, x, y)
        runs.append(dict(depth=depth, seed=seed, layers=depth + 1,
                         test_accuracy=curve.test_accuracy, diverged=curve.diverged,
                         alignment_init=before, alignment=after, peak_layer=_peak(after),
                         rise_and_fall=rise_and_fall(after)))
    per_depth = []
    for depth in s["depths"]:
        rs = [r for r in runs if r["depth"] == depth]
        mean = np.nanmean(np.array([r["alignment"] for r in rs], dtype=float), axis=0)
        mean_init = np.nanmean(np.array([r["alignment_init"] for r in rs], dtype=float), axis=0)
        accs = [r["test_accuracy"] for r in rs]
        per_depth.append(dict(depth=depth, layers=depth + 1, mean_alignment=mean.tolist(),
                              mean_alignment_init=mean_init.tolist(), peak_layer=_peak(mean),
                              rise_and_fall=rise_and_fall(mean),
                              rise_above_first=float(np.nanmax(mean) - mean[0]),
                              fall_below_peak=float(np.nanmax(mean) - mean[-1]),
                              mean_test_accuracy=float(np.nanmean(accs)),
                              diverged=any(r["diverged"] for r in rs),
                              seeds_rise_and_fall=sum(r["rise_and_fall"] for r in rs)))
    ok = [r for r in runs if r["peak_layer"] is not None]
    fit = loglog_fit([r["layers"] for r in ok], [r["peak_layer"] for r in ok])
    fit_mean = loglog_fit([d["layers"] for d in per_depth], [d["peak_layer"] or np.nan
                                                             for d in per_depth])
    trained = all(not d["diverged"] and d["mean_test_accuracy"] > TRAINED for d in per_depth)
    holds = bool(trained and all(d["rise_and_fall"] for d in per_depth))
    result = dict(dataset=s["dataset"], activation=ACT, init="eoc (He for ReLU)",
                  width=s["width"], steps=s["steps"], lr=s["lr"], optimizer="adam",
                  examples=s["examples"], runs=runs, per_depth=per_depth, peak_fit=fit,
                  peak_fit_seed_mean_curves=fit_mean, equilibrium_exponent=EQUILIBRIUM_EXPONENT,
                  trained=trained, criterion=CRITERION)
    plot_alignment({f"{d['depth']} hidden layers (acc {d['mean_test_accuracy']:.2f})":
                    d["mean_alignment"] for d in per_depth},
                   ctx.path("alignment_after_training.png"),
                   title=f"{ACT} MLPs on {s['dataset']} after training, mean of {len(seeds)} "
                         "seeds (stars: peaks)")
    plot_alignment({f"{d['depth']} hidden layers": d["mean_alignment_init"] for d in per_depth},
                   ctx.path("alignment_at_init.png"),
                   title=f"the same MLPs at initialisation (mean of {len(seeds)} seeds)")
    ran = (f"{ACT} MLPs (EOC init = He, width {s['width']}) with {list(s['depths'])} hidden "
           f"layers, seeds {seeds}, trained {s['steps']} Adam steps (lr {s['lr']:g}, batch 64) "
           f"on {s['dataset']}; centred tangent-kernel/label alignment of every Linear layer "
           f"(readout included) on {s['examples']} training examples, before and after "
           "training; curves averaged over seeds per depth.")
    per = "; ".join(
        f"{d['depth']} hidden: mean-curve peak at layer {d['peak_layer']} of {d['layers']} "
        f"(rise {d['rise_above_first']:+.3f} over the first layer, fall {d['fall_below_peak']:.3f}"
        f" to the readout; {d['seeds_rise_and_fall']}/{len(seeds)} seeds rise and fall alone; "
        f"per-seed peaks {[r['peak_layer'] for r in runs if r['depth'] == d['depth']]}; mean "
        f"test acc {d['mean_test_accuracy']:.3f})" for d in per_depth)
    ci = fit["ci95"]
    growth = (f"peak layer grows like L^{fit['slope']:.2f} (95% CI "
              f"[{fit['slope'] - ci:.2f}, {fit['slope'] + ci:.2f}], {fit['n']} nets; the "
              f"seed-averaged curves' peaks give L^{fit_mean['slope']:.2f}); the indicative "
              f"Equilibrium-Hypothesis value 0.6 is "
              + ("inside" if abs(fit["slope"] - EQUILIBRIUM_EXPONENT) <= ci else "outside")
              + " that interval" if np.isfinite(ci) else
              f"peak layer exponent {fit['slope']:.2f} (too few points for an interval)")
    observed = (f"{per}. Rise-then-fall of the seed-averaged curve at "
                f"{sum(d['rise_and_fall'] for d in per_depth)} of {len(per_depth)} depths; "
                f"{growth}." + ("" if trained else " The nets did not all train (mean test "
                                "accuracy <= 0.8 or a divergence at some depth)."))
    spreads = {}
    for d in per_depth:
        rs = [r for r in runs if r["depth"] == d["depth"]]
        spreads[f"peak layer, {d['depth']} hidden"] = spread([r["peak_layer"] or np.nan
                                                              for r in rs], seeds)
        spreads[f"peak - max(first, readout), {d['depth']} hidden"] = spread(
            [np.nanmax(r["alignment"]) - max(r["alignment"][0], r["alignment"][-1])
             for r in rs], seeds)
    return Outcome(result=result, figures=["alignment_after_training.png",
                                           "alignment_at_init.png"],
                   ran=ran, observed=observed, claim_holds=holds, seeds=seeds, spread=spreads)


register(Experiment(
    name="alignment-hierarchy",
    description="Layer tangent-kernel/label alignment of trained MLPs rises then falls across "
                "layers, peaking at a hidden layer",
    paper="arXiv 2110.11749",
    claim="After training, the alignment between each layer's tangent kernel and the labels "
          "follows an ascent-descent pattern across layers, with its maximum at a hidden layer "
          "(not the first layer nor the readout); for fully connected nets the peak sits at a "
          "layer of order L^(3/5) (secondary source, indicative).",
    run=run,
    criterion=CRITERION,
    min_seeds=MIN_SEEDS,
))
