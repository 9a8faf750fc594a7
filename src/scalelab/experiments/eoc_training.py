"""eoc-training: deep MLPs on real digits train from the EOC, not from off-EOC inits.

arXiv 1902.06853, section 5: with depth >= 30, an MLP initialised on the Edge of Chaos
trains while ordered / chaotic initialisations stall; on the EOC, smooth activations
(tanh, ELU) train faster than ReLU.
"""

from __future__ import annotations

import math

import numpy as np

from . import Context, Experiment, Outcome, register
from ._common import seeds_for, spread

CLAIM = ("Deep MLPs (depth >= 30) initialised on the Edge of Chaos train, while the same nets "
         "initialised in the ordered or chaotic phase barely move; on the EOC, smooth "
         "activations (tanh, ELU) reach a lower training loss than ReLU.")

# label -> (torch activation name, sigma_w or None for the EOC, sigma_b or None for default)
RUNS = {
    "tanh, EOC": ("tanh", None, None),
    "tanh, ordered (sigma_w=0.5)": ("tanh", 0.5, 0.2),
    "tanh, chaotic (sigma_w=2.5)": ("tanh", 2.5, 0.2),
    "relu, EOC (He init)": ("relu", None, None),
    "relu, ordered (sigma_w=1)": ("relu", 1.0, 0.0),
    "elu, EOC": ("elu", None, None),
}


def _mlp(data, act: str, depth: int, width: int):
    from torch import nn

    from ..nn import activation_module

    layers = [nn.Linear(data.input_dim, width), activation_module(act)]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), activation_module(act)]
    layers.append(nn.Linear(width, data.num_classes))
    return nn.Sequential(*layers)


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(dataset="sklearn-digits", depth=30, width=64, steps=200, lrs=(0.01,),
                    seeds=1)
    return dict(dataset="mnist", depth=50, width=64, steps=500, lrs=(1e-3, 3e-3, 1e-2, 3e-2),
                seeds=3)


CRITERION = (
    "Each initialisation gets its own learning rate: the grid lr with the lowest final train "
    "loss (mean of the last 20 steps) averaged over seeds, a diverged seed counting as "
    "infinite. At those lrs, on the seed mean and on every seed: tanh on the EOC ends below "
    "half the loss of both off-EOC tanh inits; ReLU on the EOC (He init) ends below ReLU in "
    "the ordered phase; and the better smooth activation on the EOC (tanh or ELU, chosen on "
    "the seed mean) ends below ReLU on the EOC.")


def _train_one(data, act, sigma_w, sigma_b, depth, width, steps, lr, seed):
    import torch

    from ..nn import init_eoc_, init_gaussian_
    from ..theory import edge_of_chaos
    from ..train import train_classifier

    torch.manual_seed(seed)
    model = _mlp(data, act, depth, width)
    gen = torch.Generator().manual_seed(seed + 1)
    if sigma_w is None:
        init_eoc_(model, generator=gen)
        pt = edge_of_chaos(act)
        sigma_w, sigma_b = pt.sigma_w, pt.sigma_b
    else:
        init_gaussian_(model, sigma_w, sigma_b, generator=gen)
    curve = train_classifier(model, data, steps=steps, lr=lr, optimizer="sgd", momentum=0.9,
                             batch_size=64, seed=seed)
    loss = np.asarray(curve.train_loss, dtype=float)
    final = float(np.mean(loss[-20:])) if not curve.diverged else math.inf
    return {"sigma_w": sigma_w, "sigma_b": sigma_b, "final_train_loss": final,
            "test_accuracy": curve.test_accuracy, "diverged": curve.diverged,
            "curve": loss.tolist()}


def judge(summary: dict, seeds: list[int]) -> dict:
    """The verdict parts from ``summary`` (label -> {"best_lr", "per_seed_loss", "mean_loss"})."""
    def mean(label):
        return summary[label]["mean_loss"]

    def seed(label, k):
        return summary[label]["per_seed_loss"][k]

    tanh_off = ("tanh, ordered (sigma_w=0.5)", "tanh, chaotic (sigma_w=2.5)")
    smooth = min(("tanh, EOC", "elu, EOC"), key=mean)
    ks = range(len(seeds))

    def log_ratio(a, b):
        return math.log10(a / b) if math.isfinite(b) and b > 0 and math.isfinite(a) else (
            -math.inf if math.isfinite(a) else math.inf)

    diffs = {
        "log10_tanh_eoc_over_best_off_eoc": [
            log_ratio(seed("tanh, EOC", k), min(seed(t, k) for t in tanh_off)) for k in ks],
        "log10_relu_eoc_over_relu_ordered": [
            log_ratio(seed("relu, EOC (He init)", k), seed("relu, ordered (sigma_w=1)", k))
            for k in ks],
        "log10_best_smooth_eoc_over_relu_eoc": [
            log_ratio(seed(smooth, k), seed("relu, EOC (He init)", k)) for k in ks],
    }
    half = math.log10(0.5)
    checks = {
        "tanh_eoc_below_half_off_eoc": bool(
            mean("tanh, EOC") < 0.5 * min(mean(t) for t in tanh_off)
            and all(d < half for d in diffs["log10_tanh_eoc_over_best_off_eoc"])),
        "relu_eoc_below_relu_ordered": bool(
            mean("relu, EOC (He init)") < mean("relu, ordered (sigma_w=1)")
            and all(d < 0 for d in diffs["log10_relu_eoc_over_relu_ordered"])),
        "smooth_eoc_below_relu_eoc": bool(
            mean(smooth) < mean("relu, EOC (He init)")
            and all(d < 0 for d in diffs["log10_best_smooth_eoc_over_relu_eoc"])),
    }
    return {"checks": checks, "per_seed_log10_ratios": diffs, "best_smooth": smooth,
            "holds": all(checks.values())}


def run(ctx: Context) -> Outcome:
    from .._progress import track
    from ..data import load_digits
    from ..plots import plot_loss_vs_lr, plot_training_losses

    sz = _sizes(ctx.quick)
    seeds = seeds_for(ctx, sz["seeds"])
    depth, width, steps, lrs = sz["depth"], sz["width"], sz["steps"], sz["lrs"]
    data = load_digits(sz["dataset"], seed=ctx.seed)
    jobs = [(label, lr) for label in RUNS for lr in lrs]
    grid: dict = {}
    for label, lr in track(jobs, "eoc-training", total=len(jobs)):
        act, sigma_w, sigma_b = RUNS[label]
        grid[(label, lr)] = [_train_one(data, act, sigma_w, sigma_b, depth, width, steps, lr, s)
                             for s in seeds]
    summary, curves, sweep = {}, {}, []
    for label in RUNS:
        means = {}
        for lr in lrs:
            losses = [r["final_train_loss"] for r in grid[(label, lr)]]
            means[lr] = float(np.mean(losses)) if all(map(math.isfinite, losses)) else math.inf
            sweep.append({"label": label, "lr": lr, "mean_loss": means[lr],
                          "seed_losses": losses})
        best = min(lrs, key=lambda lr: means[lr])
        runs = grid[(label, best)]
        summary[label] = {
            "activation": RUNS[label][0], "sigma_w": runs[0]["sigma_w"],
            "sigma_b": runs[0]["sigma_b"], "best_lr": best, "best_lr_at_grid_edge":
            bool(len(lrs) > 1 and best in (lrs[0], lrs[-1])), "mean_loss": means[best],
            "per_seed_loss": [r["final_train_loss"] for r in runs],
            "test_accuracy": [r["test_accuracy"] for r in runs],
            "diverged": [r["diverged"] for r in runs],
        }
        curves[f"{label} (lr {best:g})"] = runs[0]["curve"]
    verdict = judge(summary, seeds)
    figs = ["eoc_training_losses.png"]
    plot_training_losses(curves, ctx.path(figs[0]), title=(
        f"{sz['dataset']}: MLP depth {depth}, width {width}, SGD momentum 0.9, each init at its "
        f"best lr (seed {seeds[0]})"))
    if len(lrs) > 1:
        figs.append("loss_vs_lr.png")
        plot_loss_vs_lr(sweep, ctx.path(figs[1]), title=(
            f"{sz['dataset']}, depth {depth}: final train loss vs lr (mean, range over "
            f"{len(seeds)} seeds)"))

    def fmt(v):
        return "inf" if not math.isfinite(v) else f"{v:.3f}"

    observed = "; ".join(
        f"{k}: best lr {v['best_lr']:g}{' (grid edge)' if v['best_lr_at_grid_edge'] else ''}, "
        f"loss {fmt(v['mean_loss'])} (per seed {', '.join(fmt(x) for x in v['per_seed_loss'])}),"
        f" test acc {', '.join('-' if a is None else f'{a:.3f}' for a in v['test_accuracy'])}"
        for k, v in summary.items())
    sp = {k: spread(v, seeds) for k, v in verdict["per_seed_log10_ratios"].items()}
    return Outcome(
        result={"dataset": sz["dataset"], "depth": depth, "width": width, "steps": steps,
                "lrs": list(lrs), "runs": summary, "sweep": sweep, "verdict": verdict},
        figures=figs,
        ran=(f"MLPs of depth {depth}, width {width} on {sz['dataset']} "
             f"({data.x_train.shape[0]} training images), SGD (momentum 0.9, batch 64) for "
             f"{steps} steps at lrs {', '.join(f'{lr:g}' for lr in lrs)}, seeds {seeds}, from "
             f"EOC and off-EOC initialisations; final loss = mean of the last 20 steps."),
        observed=(f"{observed}. Checks: "
                  + ", ".join(f"{k} {v}" for k, v in verdict["checks"].items())
                  + f" (best smooth activation: {verdict['best_smooth']})."),
        claim_holds=bool(verdict["holds"]), seeds=seeds, spread=sp,
        indicative=ctx.quick,
    )


register(Experiment(
    name="eoc-training",
    description="Deep MLPs on real digits: EOC init vs ordered/chaotic, ReLU vs smooth",
    paper="arXiv 1902.06853",
    claim=CLAIM,
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
