"""Reproduction ``lora-init``: Init[A] (A random, B = 0) against Init[B] (A = 0, B random).

arXiv 2406.08447: both start from B A = 0, yet Init[A] tolerates larger learning rates
(max stable lr Theta(n^-1/2) against Theta(n^-1) for Init[B], derived for Adam-type
updates) and learns more efficiently, at the cost of internal instability (its features
A x grow with width), while Init[B] is stabler but undertrains B.

What runs: the toy teacher-student of :mod:`._lora_toy_common` (square n x n layer, rank-1
adapter), one shared learning rate for A and B swept on a log grid (>= 4 points a decade),
both inits from the same random draw, full batch for a fixed number of steps, with Adam
(judged) and plain gradient descent (reported), at several widths and seeds.

Definitions (interpretation, see docs/reproductions_lora.md):
- max stable lr: the largest grid lr up to which every lr ends finite and at most 2% above
  the initial loss (with Adam, whose steps are bounded, instability shows as a loss left
  oscillating above where it started; with GD it is divergence). Taken on the seed-averaged
  (log10) losses for the verdict, and per seed for the spread;
- best lr / best loss: the grid lr with the lowest final train loss, and that loss;
- feature size: the rms of A x over the training inputs after training, at the max stable lr.
  The sign-update argument behind the paper's exponents (an Adam step moves A x by ~ eta n)
  gives A x ~ n^(1/2) for Init[A] at eta ~ n^(-1/2) (the internal instability) and
  A x = Theta(1) for Init[B] at eta ~ n^(-1).
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._common import loglog_fit, seeds_for, spread
from ._lora_toy_common import INITS, log_grid, seed_mean_log_loss
from .registry import Context, Experiment, Outcome, register

OPTIMIZER_STEPS = {"sgd": 50, "adam": 100}
JUDGED = "adam"
#: Init[B] "never learned" when its best loss stays above 90% of the initial loss
NO_LEARNING_LOG10 = math.log10(0.9)
#: a run is "stable" when it ends finite and at most 2% above its initial loss
STABLE_LOG10 = math.log10(1.02)
#: predicted log-log slopes against width (arXiv 2406.08447; feature slopes: module docstring)
LR_SLOPE = {"A": -0.5, "B": -1.0}
FEATURE_SLOPE = {"A": 0.5, "B": 0.0}
#: half the gap between the two lr predictions: the widest tolerance that still tells them apart
SLOPE_TOL = 0.25

CRITERION = (
    f"Adam (judged; gradient descent is reported, not judged). On the seed-averaged losses, the "
    f"log-log least-squares slope of the max stable lr against width is within {SLOPE_TOL} of "
    f"-1/2 for Init[A] and within {SLOPE_TOL} of -1 for Init[B]; the slope of the feature size "
    f"rms(A x) at the max stable lr is within {SLOPE_TOL} of +1/2 for Init[A] (internal "
    f"instability) and within {SLOPE_TOL} of 0 for Init[B]; Init[A]'s max stable lr is larger "
    "than Init[B]'s at the largest width and not smaller at any width (a tie on the grid is "
    "allowed: the claim is asymptotic); and Init[A]'s best final loss is lower at every width. "
    "Grid: >= 4 lrs a decade.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(widths=(64, 256, 1024), lrs=log_grid(-4, 1, 4), seeds=2)
    return dict(widths=(64, 128, 256, 512, 1024, 2048, 4096), lrs=log_grid(-6, 2, 4), seeds=3)


def max_stable_index(log10_loss) -> int | None:
    """Index of the largest lr up to which every lr ends finite and at most 2% above its
    initial loss (``log10_loss`` = log10(final / initial loss), lrs ascending); None when
    even the smallest lr is unstable."""
    best = None
    for k, v in enumerate(log10_loss):
        if not (math.isfinite(v) and v <= STABLE_LOG10):
            break
        best = k
    return best


def max_stable_lr(lrs, log10_loss) -> float:
    """Largest lr up to which every lr ends finite and at most 2% above its initial loss.

    ``lrs`` ascending, ``log10_loss`` = log10(final / initial loss); nan when even the
    smallest lr is unstable.
    """
    k = max_stable_index(log10_loss)
    return math.nan if k is None else lrs[k]


def _at(values, k: int | None) -> float:
    return math.nan if k is None else float(values[k])


def lora_init_sweep(widths, lrs, *, steps: int, seeds, optimizer: str = "sgd",
                    rank: int = 1) -> list[dict]:
    """Final loss and feature size against one shared lr for Init[A] and Init[B]; one record
    per (width, init), with the seed-averaged curves and each seed's own summary numbers."""
    records = []
    for width in track(widths, f"lora-init ({optimizer}) widths"):
        for init in INITS:
            res = seed_mean_log_loss(width, lrs, lrs, seeds=seeds, steps=steps, init=init,
                                     optimizer=optimizer, rank=rank)
            train = np.array(res["train"])
            k = int(np.argmin(train))
            ks = max_stable_index(res["train"])
            per_seed = []
            for seed, one in zip(seeds, res["per_seed"], strict=True):
                ks1 = max_stable_index(one["train"])
                per_seed.append({
                    "seed": int(seed), "max_stable_lr": math.nan if ks1 is None else lrs[ks1],
                    "best_log10_loss": float(np.min(one["train"])),
                    "log10_feature_at_max_stable": _at(one["feature"], ks1)})
            records.append({
                "width": int(width), "init": init, "optimizer": optimizer, "steps": steps,
                "lrs": list(lrs), "train_log10_loss": res["train"],
                "test_log10_loss": res["test"], "log10_feature_rms": res["feature"],
                "best_lr": lrs[k], "best_log10_loss": float(train[k]),
                "best_test_log10_loss": res["test"][k],
                "max_stable_lr": math.nan if ks is None else lrs[ks],
                "log10_feature_at_max_stable": _at(res["feature"], ks),
                "learned": bool(train[k] < NO_LEARNING_LOG10), "per_seed": per_seed,
            })
    return records


def _slopes(widths, values) -> dict:
    fit = loglog_fit(widths, values)
    return {"slope": fit["slope"], "ci95": fit["ci95"]}


def summarize(records: list[dict]) -> dict:
    """Per-width comparison, log-log slopes (seed-averaged and per seed) and the verdict parts."""
    widths = sorted({r["width"] for r in records})
    by = {(r["width"], r["init"]): r for r in records}
    per_width = []
    for w in widths:
        a, b = by[(w, "A")], by[(w, "B")]
        per_width.append({
            "width": w, "best_lr_A": a["best_lr"], "best_lr_B": b["best_lr"],
            "best_log10_loss_A": a["best_log10_loss"], "best_log10_loss_B": b["best_log10_loss"],
            "max_stable_lr_A": a["max_stable_lr"], "max_stable_lr_B": b["max_stable_lr"],
            "log10_feature_A": a["log10_feature_at_max_stable"],
            "log10_feature_B": b["log10_feature_at_max_stable"],
            "B_learned": b["learned"],
            "best_lr_larger_A": bool(a["best_lr"] > b["best_lr"]),
            "best_loss_lower_A": bool(a["best_log10_loss"] < b["best_log10_loss"]),
            "max_stable_larger_A": bool(a["max_stable_lr"] > b["max_stable_lr"]),
        })
    out: dict = {"per_width": per_width}
    for i in INITS:
        rs = [by[(w, i)] for w in widths]
        out[f"max_stable_lr_slope_{i}"] = _slopes(widths, [r["max_stable_lr"] for r in rs])
        out[f"feature_slope_{i}"] = _slopes(
            widths, [10 ** r["log10_feature_at_max_stable"] for r in rs])
        out[f"best_lr_slope_{i}"] = _slopes(widths, [r["best_lr"] for r in rs])
    # the same numbers seed by seed: the spread of every judged quantity
    seeds = [p["seed"] for p in records[0]["per_seed"]]
    per_seed: dict[str, list[float]] = {}
    for s_idx in range(len(seeds)):
        def col(init, key, s_idx=s_idx):
            return [by[(w, init)]["per_seed"][s_idx][key] for w in widths]
        for i in INITS:
            per_seed.setdefault(f"max_stable_lr_slope_{i}", []).append(
                loglog_fit(widths, col(i, "max_stable_lr"))["slope"])
            per_seed.setdefault(f"feature_slope_{i}", []).append(
                loglog_fit(widths, [10 ** v for v in col(i, "log10_feature_at_max_stable")])
                ["slope"])
        ratios = [math.log10(a / b) for a, b in zip(col("A", "max_stable_lr"),
                                                    col("B", "max_stable_lr"), strict=True)]
        per_seed.setdefault("log10_max_stable_lr_A_over_B_at_largest_width", []).append(ratios[-1])
        per_seed.setdefault("min_over_widths_log10_max_stable_lr_A_over_B", []).append(min(ratios))
        per_seed.setdefault("min_over_widths_best_log10_loss_B_minus_A", []).append(
            min(b - a for a, b in zip(col("A", "best_log10_loss"), col("B", "best_log10_loss"),
                                      strict=True)))
    out["seeds"] = seeds
    out["spread"] = {k: spread(v, seeds) for k, v in per_seed.items()}
    checks = {}
    for i in INITS:
        checks[f"lr_slope_{i}"] = bool(
            abs(out[f"max_stable_lr_slope_{i}"]["slope"] - LR_SLOPE[i]) <= SLOPE_TOL)
        checks[f"feature_slope_{i}"] = bool(
            abs(out[f"feature_slope_{i}"]["slope"] - FEATURE_SLOPE[i]) <= SLOPE_TOL)
    checks["max_stable_larger_A_at_largest_width"] = per_width[-1]["max_stable_larger_A"]
    checks["max_stable_not_smaller_A_any_width"] = all(
        not p["max_stable_lr_A"] < p["max_stable_lr_B"] for p in per_width)
    checks["best_loss_lower_A_every_width"] = all(p["best_loss_lower_A"] for p in per_width)
    out["checks"] = checks
    out["holds"] = bool(all(checks.values()))
    return out


def _fmt_slope(s: dict) -> str:
    ci = s["ci95"]
    return f"{s['slope']:+.2f}" + (f" ± {ci:.2f}" if math.isfinite(ci) else "")


def _describe(opt: str, s: dict, judged: bool) -> str:
    rows = "; ".join(
        f"n={p['width']}: max stable lr A {p['max_stable_lr_A']:.3g} / B "
        f"{p['max_stable_lr_B']:.3g}, best loss A 10^{p['best_log10_loss_A']:.1f} / B "
        f"10^{p['best_log10_loss_B']:.1f}, best lr A {p['best_lr_A']:.3g} / B "
        f"{p['best_lr_B']:.3g}, rms(Ax) at max stable lr A 10^{p['log10_feature_A']:.2f} / B "
        f"10^{p['log10_feature_B']:.2f}"
        + ("" if p["B_learned"] else " (Init[B] never got below 90% of its initial loss)")
        for p in s["per_width"])
    sp = s["spread"]
    slopes = (
        f"Log-log slopes against width (seed-averaged, ± 95% CI; per-seed range in brackets): "
        f"max stable lr Init[A] {_fmt_slope(s['max_stable_lr_slope_A'])} "
        f"[{sp['max_stable_lr_slope_A']['min']:+.2f}, {sp['max_stable_lr_slope_A']['max']:+.2f}]"
        f" (predicted -0.5), Init[B] {_fmt_slope(s['max_stable_lr_slope_B'])} "
        f"[{sp['max_stable_lr_slope_B']['min']:+.2f}, {sp['max_stable_lr_slope_B']['max']:+.2f}]"
        f" (predicted -1); feature size Init[A] {_fmt_slope(s['feature_slope_A'])} "
        f"[{sp['feature_slope_A']['min']:+.2f}, {sp['feature_slope_A']['max']:+.2f}] (predicted "
        f"+0.5), Init[B] {_fmt_slope(s['feature_slope_B'])} "
        f"[{sp['feature_slope_B']['min']:+.2f}, {sp['feature_slope_B']['max']:+.2f}] (predicted "
        f"0); best lr Init[A] {_fmt_slope(s['best_lr_slope_A'])}, Init[B] "
        f"{_fmt_slope(s['best_lr_slope_B'])}.")
    n = len(s["per_width"])
    n_lr = sum(p["best_lr_larger_A"] for p in s["per_width"])
    tail = (f"Checks: {', '.join(f'{k} {v}' for k, v in s['checks'].items())}. Verdict for "
            f"{opt}: the claim {'holds' if s['holds'] else 'fails'}." if judged else
            f"Reported, not judged (the paper's exponents are derived for Adam-type updates); "
            f"the checks would read: {', '.join(f'{k} {v}' for k, v in s['checks'].items())}.")
    return (f"{opt}: {rows}. {slopes} Init[A]'s best lr is the larger at {n_lr}/{n} widths "
            f"(not judged: where Init[B] barely learns its best lr is the argmin of a flat "
            f"curve). {tail}")


def run(ctx: Context) -> Outcome:
    from ..plots import plot_lora_init_features, plot_lora_init_loss_vs_lr, plot_lora_init_max_lr

    sz = _sizes(ctx.quick)
    seeds = seeds_for(ctx, sz["seeds"])
    result, records, texts = {}, [], []
    for opt in ("adam", "sgd"):
        steps = OPTIMIZER_STEPS[opt]
        recs = lora_init_sweep(sz["widths"], sz["lrs"], steps=steps, seeds=seeds, optimizer=opt)
        summ = summarize(recs)
        result[opt] = {"records": recs, "summary": summ}
        records += recs
        texts.append(_describe({"sgd": "Gradient descent", "adam": "Adam"}[opt], summ,
                               opt == JUDGED))
    figures = ["loss_vs_lr.png", "max_stable_lr.png", "feature_growth.png"]
    plot_lora_init_loss_vs_lr(records, ctx.path(figures[0]))
    plot_lora_init_max_lr(records, ctx.path(figures[1]))
    plot_lora_init_features(records, ctx.path(figures[2]))
    lrs = sz["lrs"]
    ran = (f"Toy LoRA teacher-student: square n x n layer, rank-1 adapter, 64 training points "
           f"in an 8-dim input subspace; Init[A] (A ~ N(0, 1/n), B = 0) and Init[B] (A = 0, "
           f"B ~ N(0, 1)) from the same draw; one shared lr on a {len(lrs)}-point log grid "
           f"({lrs[0]:.0e} .. {lrs[-1]:.0e}, 4 a decade); full-batch Adam for "
           f"{OPTIMIZER_STEPS['adam']} steps (judged) and gradient descent for "
           f"{OPTIMIZER_STEPS['sgd']} steps (reported); widths {list(sz['widths'])}; seeds "
           f"{seeds}, losses averaged in log10 over them.")
    judged = result[JUDGED]["summary"]
    return Outcome(result=result, figures=figures, ran=ran, observed="\n\n".join(texts),
                   claim_holds=judged["holds"], seeds=seeds, spread=judged["spread"],
                   indicative=ctx.quick)


EXPERIMENT = register(Experiment(
    name="lora-init",
    description="LoRA init: Init[A] (B=0) vs Init[B] (A=0) — max stable lr and features vs width",
    paper="arXiv:2406.08447",
    claim=("Init[A] (A random, B = 0) allows larger learning rates than Init[B] (A = 0, "
           "B random) — max stable lr Theta(n^-1/2) against Theta(n^-1) under Adam-type "
           "updates — and reaches a lower loss, at the cost of internal instability (its "
           "features A x grow with width) while Init[B] keeps them Theta(1)."),
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
