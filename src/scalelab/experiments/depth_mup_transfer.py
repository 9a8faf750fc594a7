"""Reproduction ``depth-mup-transfer``: does the best learning rate move with depth?

arXiv 2310.02244 (Depth-µP): with block multiplier ``a/sqrt(L)`` and Adam block learning
rate ``lr/sqrt(L)`` (eps ``eps/sqrt(L)``), the optimal learning rate tuned on a shallow
network stays optimal for deep ones; under the standard parametrisation it drifts.

What runs: residual MLPs ``y + lambda W relu(y)`` of several depths on real MNIST digits,
Adam over a log grid of learning rates, under two parametrisations that start from the
same function in distribution:

- SP (standard parametrisation, as in GPT-2-style practice): multiplier 1, block weights
  initialised at ``N(0, 2/(n L))`` so the network is stable at init, one global Adam lr;
- Depth-µP: multiplier ``1/sqrt(L)``, block weights ``N(0, 2/n)``, parameter groups from
  :func:`scalelab.nn.depth_mup_param_groups` (base depth 1).

The loss is the mean training loss of the last steps, averaged geometrically over seeds
(a diverged seed makes the point diverged). Each depth's optimum is the grid argmin refined
by a parabola through it and its two neighbours (in log10 lr). Drift = the change of the
optimal log10 lr across the depth range predicted by a least-squares line in log2(depth).
Verdict (thresholds fixed in decades, not tuned per run): on the seed-averaged losses,
Depth-µP's |drift| <= 0.2 decades (a factor 1.6) and SP's |drift| >= 0.3 decades (a factor
2); and on every seed's own losses SP's |drift| exceeds Depth-µP's.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._common import seeds_for, spread
from .registry import Context, Experiment, Outcome, register

PARAMS = ("SP", "Depth-muP")
STAYS, DRIFTS = 0.2, 0.3  # decades of optimal lr across the depth range
CRITERION = (
    f"On the seed-averaged (geometric mean) losses, the drift of the optimal log10 lr across "
    f"the depth range (least-squares line in log2 depth; optimum = grid argmin refined by a "
    f"parabola) is at most {STAYS} decades in magnitude under Depth-muP and at least {DRIFTS} "
    f"decades under SP; and on every seed's own losses SP's |drift| exceeds Depth-muP's.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(depths=(2, 8, 32), log10_lrs=np.arange(-3.5, -1.99, 0.5), width=64,
                    steps=60, tail=10, seeds=1)
    return dict(depths=(2, 4, 8, 16, 32, 64), log10_lrs=np.arange(-3.5, -1.99, 0.25),
                width=64, steps=150, tail=20, seeds=3)


def optimum(log10_lrs, losses) -> float:
    """log10 of the best lr: grid argmin, refined by a parabola through its neighbours.

    Non-finite losses count as +inf; nan when every loss is non-finite.
    """
    x = np.asarray(log10_lrs, float)
    y = np.array([v if v is not None and math.isfinite(v) else np.inf for v in losses])
    if not np.isfinite(y).any():
        return math.nan
    k = int(np.argmin(y))
    if 0 < k < len(y) - 1 and np.isfinite(y[k - 1:k + 2]).all():
        ly = np.log(y[k - 1:k + 2])
        denom = ly[0] - 2 * ly[1] + ly[2]
        if denom > 0:
            step = x[k + 1] - x[k]
            return float(x[k] + 0.5 * step * (ly[0] - ly[2]) / denom)
    return float(x[k])


def lr_sweep(data, depths, log10_lrs, *, width: int, steps: int, tail: int,
             seeds) -> list[dict]:
    """Final training loss for every (parametrisation, depth, lr), averaged over seeds."""
    import torch

    from ..nn import ResidualMLP, depth_mup_param_groups
    from ..train import train_classifier

    records = []
    for param in PARAMS:
        for depth in track(depths, f"depth-mup-transfer {param}"):
            for e in log10_lrs:
                lr = float(10.0 ** e)
                per_seed = []
                for seed in seeds:
                    torch.manual_seed(seed)
                    if param == "SP":
                        model = ResidualMLP(data.input_dim, width, depth, 10,
                                            scales=[1.0] * depth, sigma_w=math.sqrt(2.0 / depth))
                        groups = None
                    else:
                        model = ResidualMLP(data.input_dim, width, depth, 10, mode="depth_mup")
                        groups = depth_mup_param_groups(model, lr=lr, depth=depth)
                    c = train_classifier(model, data, steps=steps, lr=lr, optimizer="adam",
                                         param_groups=groups, seed=seed)
                    per_seed.append(math.nan if c.diverged else float(np.mean(c.train_loss[-tail:])))
                loss = float(np.exp(np.mean(np.log(per_seed))))
                records.append({"param": param, "depth": depth, "lr": lr, "log10_lr": float(e),
                                "loss": loss if math.isfinite(loss) else math.nan,
                                "seed_losses": per_seed})
    return records


def _drift(records, param: str, key) -> tuple[dict, float, float]:
    """Optimum per depth (from ``key(row)`` losses), slope per doubling and drift (decades)."""
    opt = {}
    for depth in sorted({r["depth"] for r in records}):
        rows = sorted((r for r in records if r["param"] == param and r["depth"] == depth),
                      key=lambda r: r["log10_lr"])
        opt[depth] = optimum([r["log10_lr"] for r in rows], [key(r) for r in rows])
    pts = [(math.log2(d), v) for d, v in opt.items() if math.isfinite(v)]
    if len(pts) < 2:
        return opt, math.nan, math.nan
    x, y = np.array(pts).T
    slope = float(np.polyfit(x, y, 1)[0])
    return opt, slope, slope * float(x.max() - x.min())


def summarize(records) -> dict:
    """Per-parametrisation optimum per depth, drift across depth (seed mean and per seed), and
    the verdict."""
    out: dict = {}
    n_seeds = len(records[0]["seed_losses"])
    for param in PARAMS:
        opt, slope, drift = _drift(records, param, lambda r: r["loss"])
        per_seed = [_drift(records, param, lambda r, k=k: r["seed_losses"][k])[2]
                    for k in range(n_seeds)]
        out[param] = {"optimal_log10_lr": opt, "slope_per_doubling": slope,
                      "drift_log10": drift, "drift_log10_per_seed": per_seed}
    d_sp, d_mup = abs(out["SP"]["drift_log10"]), abs(out["Depth-muP"]["drift_log10"])
    seed_gap = [abs(a) - abs(b) for a, b in zip(out["SP"]["drift_log10_per_seed"],
                                                 out["Depth-muP"]["drift_log10_per_seed"],
                                                 strict=True)]
    out["abs_drift_sp_minus_mup_per_seed"] = seed_gap
    out["checks"] = {"depth_mup_stays": bool(d_mup <= STAYS), "sp_drifts": bool(d_sp >= DRIFTS),
                     "sp_drifts_more_on_every_seed": bool(all(g > 0 for g in seed_gap))}
    out["holds"] = bool(all(out["checks"].values()))
    return out


def run(ctx: Context) -> Outcome:
    from ..data import load_digits
    from ..plots import plot_lr_transfer

    sz = _sizes(ctx.quick)
    data = load_digits("mnist", seed=ctx.seed)
    seeds = seeds_for(ctx, sz["seeds"])
    records = lr_sweep(data, sz["depths"], sz["log10_lrs"], width=sz["width"],
                       steps=sz["steps"], tail=sz["tail"], seeds=seeds)
    summary = summarize(records)
    figures = ["loss_vs_lr.png"]
    plot_lr_transfer(records, ctx.path(figures[0]),
                     optima={p: summary[p]["optimal_log10_lr"] for p in PARAMS})
    lrs = sz["log10_lrs"]
    step = float(lrs[1] - lrs[0])
    ran = (f"Residual MLPs (width {sz['width']}, ReLU, depths {list(sz['depths'])}) on 4,000 "
           f"MNIST digits, Adam, batch 128, {sz['steps']} steps, learning rates "
           f"10^{lrs[0]:.2f} .. 10^{lrs[-1]:.2f} every {step:.2f} decade; loss = mean train "
           f"loss of the last {sz['tail']} steps, geometric mean over {sz['seeds']} seed(s). "
           "SP: multiplier 1, block init N(0, 2/(nL)), global lr. Depth-muP: multiplier "
           "1/sqrt(L), block lr lr/sqrt(L), block Adam eps 1e-8/sqrt(L).")
    parts = []
    for param in PARAMS:
        sm = summary[param]
        best = ", ".join(f"L={d}: {10 ** v:.2g}" if math.isfinite(v) else f"L={d}: none"
                         for d, v in sm["optimal_log10_lr"].items())
        per = ", ".join(f"{v:+.2f}" for v in sm["drift_log10_per_seed"])
        parts.append(f"{param}: best lr {best} (drift {sm['drift_log10']:+.2f} decades across "
                     f"the depths; per seed {per})")
    verdict = ("stays put under Depth-muP and drifts under SP" if summary["holds"] else
               "does not separate the two parametrisations as claimed at this size")
    observed = (f"{'; '.join(parts)}. With 'stays' = |drift| <= {STAYS} and 'drifts' = "
                f"|drift| >= {DRIFTS} decades, the optimum {verdict}. Checks: "
                + ", ".join(f"{k} {v}" for k, v in summary["checks"].items()) + ".")
    sp = {f"drift_log10_{p}": spread(summary[p]["drift_log10_per_seed"], seeds)
          for p in PARAMS}
    sp["abs_drift_SP_minus_Depth-muP"] = spread(summary["abs_drift_sp_minus_mup_per_seed"],
                                                seeds)
    return Outcome(result={"records": records, "summary": summary}, figures=figures, ran=ran,
                   observed=observed, claim_holds=summary["holds"], seeds=seeds, spread=sp,
                   indicative=ctx.quick)


EXPERIMENT = register(Experiment(
    name="depth-mup-transfer",
    description="Depth-muP: best Adam learning rate vs depth for residual MLPs, SP vs Depth-muP",
    paper="arXiv:2310.02244",
    claim=("Under Depth-muP (block multiplier 1/sqrt(L), Adam block lr / sqrt(L)) the optimal "
           "learning rate stays put as depth grows; under the standard parametrisation it "
           "drifts."),
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
