"""Reproduction ``lora-init``: Init[A] (A random, B = 0) against Init[B] (A = 0, B random).

arXiv 2406.08447: both start from B A = 0, yet Init[A] tolerates larger learning rates
(max stable lr Theta(n^-1/2) against Theta(n^-1) for Init[B], derived for Adam-type
updates) and learns more efficiently, while Init[B] is stabler but undertrains B.

What runs: the toy teacher-student of :mod:`._lora_toy_common` (square n x n layer, rank-1
adapter), one shared learning rate for A and B swept on a log grid, both inits from the
same random draw, full batch for a fixed number of steps, with plain gradient descent and
with Adam, at several widths; losses are geometric means over seeds.

Definitions (interpretation):
- best lr: the grid lr with the lowest final train loss;
- max stable lr: the largest grid lr up to which every lr ends finite and at most 2% above
  the initial loss (with GD, instability is divergence; with Adam, whose steps are bounded,
  it shows as a loss that oscillates above where it started);
- verdict (the paper's claim), for both optimizers: Init[A]'s best loss is lower at every
  width, its max stable lr is larger at the largest width and falls more slowly with width
  (larger log-log slope). Whether Init[A]'s *best* lr is also the larger one is reported
  per width but not judged: where Init[B] learns nothing its "best" lr is the argmin of a
  flat curve.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._lora_toy_common import INITS, log_grid, loglog_slope, seed_mean_log_loss
from ._registry import Context, Experiment, Outcome, register

OPTIMIZER_STEPS = {"sgd": 50, "adam": 100}
#: Init[B] "never learned" when its best loss stays above 90% of the initial loss
NO_LEARNING_LOG10 = math.log10(0.9)
#: a run is "stable" when it ends finite and at most 2% above its initial loss
STABLE_LOG10 = math.log10(1.02)


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(widths=(64, 256, 1024, 4096), lrs=log_grid(-6, 2, 2), seeds=2)
    return dict(widths=(64, 128, 256, 512, 1024, 2048, 4096), lrs=log_grid(-6, 2, 4), seeds=3)


def max_stable_lr(lrs, log10_loss) -> float:
    """Largest lr up to which every lr ends finite and at most 2% above its initial loss.

    ``lrs`` ascending, ``log10_loss`` = log10(final / initial loss); nan when even the
    smallest lr is unstable.
    """
    best = math.nan
    for lr, v in zip(lrs, log10_loss, strict=True):
        if not (math.isfinite(v) and v <= STABLE_LOG10):
            break
        best = lr
    return best


def lora_init_sweep(widths, lrs, *, steps: int, seeds, optimizer: str = "sgd",
                    rank: int = 1) -> list[dict]:
    """Final loss against one shared lr for Init[A] and Init[B]; one record per (width, init)."""
    records = []
    for width in track(widths, f"lora-init ({optimizer}) widths"):
        for init in INITS:
            res = seed_mean_log_loss(width, lrs, lrs, seeds=seeds, steps=steps, init=init,
                                     optimizer=optimizer, rank=rank)
            train = np.array(res["train"])
            k = int(np.argmin(train))
            records.append({
                "width": int(width), "init": init, "optimizer": optimizer, "steps": steps,
                "lrs": list(lrs), "train_log10_loss": res["train"],
                "test_log10_loss": res["test"], "best_lr": lrs[k],
                "best_log10_loss": float(train[k]), "best_test_log10_loss": res["test"][k],
                "max_stable_lr": max_stable_lr(lrs, res["train"]),
                "learned": bool(train[k] < NO_LEARNING_LOG10),
            })
    return records


def summarize(records: list[dict]) -> dict:
    """Per-width comparison, slopes of the max stable / best lr against width, and the verdict."""
    widths = sorted({r["width"] for r in records})
    by = {(r["width"], r["init"]): r for r in records}
    per_width = []
    for w in widths:
        a, b = by[(w, "A")], by[(w, "B")]
        per_width.append({
            "width": w, "best_lr_A": a["best_lr"], "best_lr_B": b["best_lr"],
            "best_log10_loss_A": a["best_log10_loss"], "best_log10_loss_B": b["best_log10_loss"],
            "max_stable_lr_A": a["max_stable_lr"], "max_stable_lr_B": b["max_stable_lr"],
            "B_learned": b["learned"],
            "best_lr_larger_A": bool(a["best_lr"] > b["best_lr"]),
            "best_loss_lower_A": bool(a["best_log10_loss"] < b["best_log10_loss"]),
            "max_stable_larger_A": bool(a["max_stable_lr"] > b["max_stable_lr"]),
        })
    slopes = {f"{key}_slope_{i}": loglog_slope(widths, [by[(w, i)][key] for w in widths])
              for key in ("max_stable_lr", "best_lr") for i in INITS}
    holds = (all(p["best_loss_lower_A"] for p in per_width)
             and per_width[-1]["max_stable_larger_A"]
             and slopes["max_stable_lr_slope_A"] > slopes["max_stable_lr_slope_B"])
    return {"per_width": per_width, **slopes, "holds": bool(holds)}


def _describe(opt: str, s: dict) -> str:
    rows = "; ".join(
        f"n={p['width']}: best lr A {p['best_lr_A']:.3g} / B {p['best_lr_B']:.3g}, best loss "
        f"A 10^{p['best_log10_loss_A']:.1f} / B 10^{p['best_log10_loss_B']:.1f}, max stable lr "
        f"A {p['max_stable_lr_A']:.3g} / B {p['max_stable_lr_B']:.3g}"
        + ("" if p["B_learned"] else " (Init[B] never got below 90% of its initial loss)")
        for p in s["per_width"])
    n_lr = sum(p["best_lr_larger_A"] for p in s["per_width"])
    n_loss = sum(p["best_loss_lower_A"] for p in s["per_width"])
    n = len(s["per_width"])
    learned = [p for p in s["per_width"] if p["B_learned"]]
    where = (f"Where Init[B] learned at all, Init[A]'s best lr is the larger at "
             f"{sum(p['best_lr_larger_A'] for p in learned)}/{len(learned)} widths; elsewhere "
             "Init[B]'s best lr is just the argmin of a flat curve. " if learned
             else "Init[B] learned at no width, so its best lr is the argmin of a flat curve. ")
    return (f"{opt}: {rows}. Init[A]'s best lr is larger at {n_lr}/{n} widths and its best "
            f"loss lower at {n_loss}/{n}. {where}Log-log slope of the max stable lr against width: "
            f"Init[A] {s['max_stable_lr_slope_A']:.2f}, Init[B] {s['max_stable_lr_slope_B']:.2f} "
            f"(best lr: A {s['best_lr_slope_A']:.2f}, B {s['best_lr_slope_B']:.2f}). "
            f"Verdict for {opt}: the claim {'holds' if s['holds'] else 'fails'}.")


def _run(ctx: Context) -> Outcome:
    from ..plots import plot_lora_init_loss_vs_lr, plot_lora_init_max_lr

    sz = _sizes(ctx.quick)
    seeds = [ctx.seed + s for s in range(sz["seeds"])]
    result, records, texts = {}, [], []
    for opt, steps in OPTIMIZER_STEPS.items():
        recs = lora_init_sweep(sz["widths"], sz["lrs"], steps=steps, seeds=seeds, optimizer=opt)
        summ = summarize(recs)
        result[opt] = {"records": recs, "summary": summ}
        records += recs
        texts.append(_describe({"sgd": "Gradient descent", "adam": "Adam"}[opt], summ))
    figures = ["loss_vs_lr.png", "max_stable_lr.png"]
    plot_lora_init_loss_vs_lr(records, ctx.path(figures[0]))
    plot_lora_init_max_lr(records, ctx.path(figures[1]))
    lrs = sz["lrs"]
    ran = (f"Toy LoRA teacher-student: square n x n layer, rank-1 adapter, 64 training points "
           f"in an 8-dim input subspace; Init[A] (A ~ N(0, 1/n), B = 0) and Init[B] (A = 0, "
           f"B ~ N(0, 1)) from the same draw; one shared lr on a {len(lrs)}-point log grid "
           f"({lrs[0]:.0e} .. {lrs[-1]:.0e}); full-batch gradient descent for "
           f"{OPTIMIZER_STEPS['sgd']} steps and Adam for {OPTIMIZER_STEPS['adam']} steps; widths "
           f"{list(sz['widths'])}; losses averaged (geometrically) over {sz['seeds']} seeds. "
           "Verdict, for both optimizers: Init[A]'s best loss lower at every width, its max "
           "stable lr larger at the largest width, and falling more slowly with width "
           "(larger log-log slope).")
    holds = all(result[o]["summary"]["holds"] for o in OPTIMIZER_STEPS)
    return Outcome(result=result, figures=figures, ran=ran, observed="\n\n".join(texts),
                   claim_holds=bool(holds))


EXPERIMENT = register(Experiment(
    name="lora-init",
    description="LoRA init: Init[A] (B=0) vs Init[B] (A=0) — loss after training against lr",
    paper="arXiv:2406.08447",
    claim=("Init[A] (A random, B = 0) allows larger learning rates than Init[B] (A = 0, "
           "B random) — max stable lr Theta(n^-1/2) against Theta(n^-1) — and reaches a lower "
           "loss at its best learning rate."),
    run=_run,
))
