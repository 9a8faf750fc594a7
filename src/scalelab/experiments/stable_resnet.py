"""Reproduction ``stable-resnet``: plain vs Stable ResNet scalings across depth.

arXiv 2010.12859: with ``y_l = y_{l-1} + lambda_l W_l relu(y_{l-1})`` and He-initialised
``W_l`` (sigma_w^2 = 2), a plain ResNet (lambda = 1) multiplies the output variance by
``(1 + sigma_w^2/2)^L = 2^L`` and its gradients explode alike; Stable ResNet's scalings
(lambda = 1/sqrt(L), or square-summable lambda_l = l^-alpha) keep both bounded, by
``exp(sigma_w^2/2)`` and ``prod_l (1 + sigma_w^2 l^(-2 alpha)/2)``.

What runs: (1) random residual MLPs of growing depth on real MNIST inputs (float64, so 2^512
still fits): variance ratio ``q_L/q_0`` and squared-gradient ratio at ``y_0`` for a random
output direction; (2) deep residual MLPs (depth >= 64) trained with SGD on real MNIST
digits under each scaling.

Verdict: see ``CRITERION``.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._common import seeds_for, spread
from .registry import Context, Experiment, Outcome, register

SIGMA_W2 = 2.0  # He initialisation of the ReLU branch
MODES = ("standard", "stable", "decreasing")
MIN_SEEDS = 3

CRITERION = (
    "On every one of >= 3 seeds: (V) the plain ResNet's output-variance ratio q_L/q_0 grows "
    "by more than 1e3 from the shallowest to the deepest net while the stable (1/sqrt(L)) "
    "and decreasing (1/l) ratios stay within twice their infinite-depth limits (e and "
    "prod_l (1 + l^-2)) at every depth; (G) the same for the squared-gradient ratio at y_0; "
    "(T) at every training depth (>= 64 blocks) the stable and decreasing nets train (mean "
    "of the last 10 losses below half the first, test accuracy > 0.5) while the plain one "
    "diverges or ends with a higher loss than the stable one.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(depths=(4, 16, 64, 256), width=64, batch=64, seeds=1, train_depths=(64,),
                    train_width=64, steps=150)
    return dict(depths=(4, 8, 16, 32, 64, 128, 256, 512), width=256, batch=128, seeds=3,
                train_depths=(64, 256), train_width=64, steps=300)


def theory_ratio(mode: str, depth: int, sigma_w2: float = SIGMA_W2, alpha: float = 1.0) -> float:
    """Infinite-width variance ratio ``prod_l (1 + lambda_l^2 sigma_w^2 / 2)`` (ReLU branch)."""
    from ..nn import branch_scales

    return math.prod(1 + s * s * sigma_w2 / 2 for s in branch_scales(depth, mode, alpha=alpha))


def depth_scaling(x, depths, modes=MODES, *, width: int, seeds) -> list[dict]:
    """Measured variance and squared-gradient ratios of random residual MLPs, per (mode, depth):
    the geometric mean over seeds, and each seed's value in ``per_seed``."""
    import torch

    from ..nn import ResidualMLP

    records = []
    x = x.double()
    limits = {"standard": None, "stable": math.exp(SIGMA_W2 / 2),
              "decreasing": theory_ratio("decreasing", 10**6)}
    for mode in modes:
        for depth in track(depths, f"stable-resnet {mode}"):
            var, grad = [], []
            for seed in seeds:
                torch.manual_seed(seed)
                m = ResidualMLP(x.shape[1], width, depth, 1, mode=mode).double()
                y0 = m.input(x).detach().requires_grad_(True)
                y = y0
                for block in m.blocks:
                    y = block(y)
                g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed))
                (y * g).sum().backward()
                var.append(float(y.detach().pow(2).mean() / y0.detach().pow(2).mean()))
                grad.append(float(y0.grad.pow(2).mean() / g.pow(2).mean()))
            records.append({"mode": mode, "depth": depth,
                            "variance_ratio": math.exp(sum(map(math.log, var)) / len(var)),
                            "grad_ratio": math.exp(sum(map(math.log, grad)) / len(grad)),
                            "theory": theory_ratio(mode, depth), "limit": limits.get(mode),
                            "per_seed": {s: {"variance_ratio": v, "grad_ratio": g}
                                         for s, v, g in zip(seeds, var, grad, strict=True)}})
    return records


def _bounded(records, key: str) -> dict:
    """Growth of the plain ResNet's ratio from the shallowest to the deepest net, and the
    stable modes' worst ratio against their infinite-depth limits, on every seed."""
    seeds = sorted({s for r in records for s in r["per_seed"]})
    by = {(r["mode"], r["depth"]): r for r in records}
    depths = sorted({r["depth"] for r in records})
    lo, hi = depths[0], depths[-1]
    limits = {"stable": math.exp(SIGMA_W2 / 2), "decreasing": theory_ratio("decreasing", 10**6)}
    growth = {s: by[("standard", hi)]["per_seed"][s][key] / by[("standard", lo)]["per_seed"][s][key]
              for s in seeds}
    worst = {m: {s: max(by[(m, d)]["per_seed"][s][key] for d in depths) for s in seeds}
             for m in limits}
    holds = all(growth[s] > 1e3 for s in seeds) and all(
        worst[m][s] <= 2 * limits[m] for m in limits for s in seeds)
    return {"standard_growth": min(growth.values()), "standard_growth_per_seed": growth,
            "worst": {m: max(w.values()) for m, w in worst.items()}, "worst_per_seed": worst,
            "limits": limits, "holds": bool(holds)}


def _trains(rec: dict) -> bool:
    return bool(not rec["diverged"] and rec["final_loss"] < 0.5 * rec["initial_loss"]
                and rec["test_accuracy"] > 0.5)


def judge_training(training: list[dict]) -> dict:
    """Per (depth, seed): stable and decreasing train while the plain ResNet diverges or ends
    with a higher final loss than the stable one."""
    out = {}
    for depth in sorted({r["depth"] for r in training}):
        per_seed = {}
        for seed in sorted({r["seed"] for r in training if r["depth"] == depth}):
            t = {r["mode"]: r for r in training if r["depth"] == depth and r["seed"] == seed}
            std = t["standard"]
            plain_fails = bool(std["diverged"] or not std["final_loss"] <= t["stable"]["final_loss"])
            per_seed[seed] = bool(_trains(t["stable"]) and _trains(t["decreasing"]) and plain_fails)
        out[depth] = {"per_seed": per_seed, "holds": all(per_seed.values())}
    return out


def run(ctx: Context) -> Outcome:
    import torch

    from ..data import load_digits
    from ..nn import ResidualMLP
    from ..plots import plot_deep_training, plot_depth_scaling
    from ..train import train_classifier

    sz = _sizes(ctx.quick)
    data = load_digits("mnist", seed=ctx.seed)
    seeds = seeds_for(ctx, sz["seeds"])
    records = depth_scaling(data.x_test[: sz["batch"]], sz["depths"], width=sz["width"],
                            seeds=seeds)
    var_check, grad_check = _bounded(records, "variance_ratio"), _bounded(records, "grad_ratio")
    training = []
    jobs = [(d, m, s) for d in sz["train_depths"] for s in seeds for m in MODES]
    for depth, mode, seed in track(jobs, "stable-resnet training", total=len(jobs)):
        torch.manual_seed(seed)
        model = ResidualMLP(data.input_dim, sz["train_width"], depth, 10, mode=mode)
        c = train_classifier(model, data, steps=sz["steps"], lr=0.05, optimizer="sgd", seed=seed)
        last = c.train_loss[-10:]
        final = math.nan if c.diverged else sum(last) / len(last)
        training.append({"mode": mode, "depth": depth, "seed": seed,
                         "initial_loss": c.train_loss[0], "final_loss": final,
                         "test_accuracy": c.test_accuracy, "diverged": c.diverged,
                         "diverged_at": len(c.train_loss) if c.diverged else None,
                         "curve": c.train_loss})
    ok = judge_training(training)
    figures = ["depth_scaling.png", "training_curves.png"]
    plot_depth_scaling(records, ctx.path(figures[0]))
    plot_deep_training(training, ctx.path(figures[1]),
                       title=f"residual MLPs on MNIST (SGD, lr 0.05, width {sz['train_width']})")
    ran = (f"(1) Random ReLU residual MLPs (width {sz['width']}, He-initialised branches "
           f"W relu(y), float64) at depths {list(sz['depths'])} on {sz['batch']} real MNIST "
           f"test images, seeds {seeds}: output-variance ratio q_L/q_0 and squared-"
           f"gradient ratio at y_0 for a random output direction, under standard (1), stable "
           f"(1/sqrt(L)) and decreasing (1/l) branch scales. (2) Residual MLPs of width "
           f"{sz['train_width']} and depth {list(sz['train_depths'])} trained on 4,000 MNIST "
           f"digits, SGD lr 0.05, batch 128, {sz['steps']} steps, tested on 1,000, seeds "
           f"{seeds}.")

    def show(rs):
        if any(r["diverged"] for r in rs):
            return "diverged (" + ", ".join(f"step {r['diverged_at']}" for r in rs
                                            if r["diverged"]) + ")"
        return (f"loss {np.mean([r['initial_loss'] for r in rs]):.3g} -> "
                f"{np.mean([r['final_loss'] for r in rs]):.3g}, test acc "
                + ", ".join(f"{r['test_accuracy']:.3f}" for r in rs))

    tr = "; ".join(f"{m} L={d}: " + show([r for r in training if r["mode"] == m and r["depth"] == d])
                   for d in sz["train_depths"] for m in MODES)
    observed = (
        f"Variance ratio of the plain ResNet grew by at least {var_check['standard_growth']:.3g}x "
        f"from depth {sz['depths'][0]} to {sz['depths'][-1]} on every seed (theory 2^L); worst "
        f"ratio over depths and seeds: stable {var_check['worst']['stable']:.3g} (limit e = "
        f"{math.e:.3g}), decreasing {var_check['worst']['decreasing']:.3g} (limit "
        f"{var_check['limits']['decreasing']:.3g}). Gradients: plain grew at least "
        f"{grad_check['standard_growth']:.3g}x; worst stable {grad_check['worst']['stable']:.3g}, "
        f"decreasing {grad_check['worst']['decreasing']:.3g}. Training: {tr}. Training clause "
        "per depth: " + ", ".join(f"L={d} {'passes' if v['holds'] else 'fails'} "
                                  f"({sum(v['per_seed'].values())}/{len(v['per_seed'])} seeds)"
                                  for d, v in ok.items()) + ".")
    holds = var_check["holds"] and grad_check["holds"] and all(v["holds"] for v in ok.values())
    spreads = {
        "log10 plain variance growth": spread([math.log10(var_check["standard_growth_per_seed"][s])
                                               for s in seeds], seeds),
        "stable worst variance ratio / e": spread(
            [var_check["worst_per_seed"]["stable"][s] / math.e for s in seeds], seeds),
        "decreasing worst variance ratio / limit": spread(
            [var_check["worst_per_seed"]["decreasing"][s] / var_check["limits"]["decreasing"]
             for s in seeds], seeds),
    }
    for d in sz["train_depths"]:
        for m in ("stable", "decreasing"):
            rs = [r for r in training if r["mode"] == m and r["depth"] == d]
            spreads[f"{m} test accuracy, L={d}"] = spread([r["test_accuracy"] for r in rs],
                                                         [r["seed"] for r in rs])
    return Outcome(result={"depth_scaling": records, "variance_check": var_check,
                           "gradient_check": grad_check, "training": training,
                           "training_ok": ok, "criterion": CRITERION},
                   figures=figures, ran=ran, observed=observed, claim_holds=bool(holds),
                   seeds=seeds, spread=spreads)


EXPERIMENT = register(Experiment(
    name="stable-resnet",
    description="Stable ResNet: variance/gradients vs depth and training of deep residual MLPs",
    paper="arXiv:2010.12859",
    claim=("A plain ResNet's output variance and gradients explode with depth (2^L for a "
           "He-initialised ReLU branch) while Stable ResNet's scalings (1/sqrt(L), or "
           "square-summable l^-alpha) keep them bounded, so deep (L >= 64) Stable ResNets "
           "train where plain ones fail."),
    run=run,
    criterion=CRITERION,
    min_seeds=MIN_SEEDS,
))
