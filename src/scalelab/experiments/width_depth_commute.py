"""Reproduction ``width-depth-commute``: residual networks reach the same kernel whichever of
width and depth goes to infinity first (arXiv 2302.00453).

Monte Carlo: the Gram matrix ``Y_L Y_L^T / n`` of the residual stream of random
``ResidualMLP`` s (``Y_0 = W_in x``, ``Y_l = Y_{l-1} + W_l relu(Y_{l-1}) / sqrt(L)``,
``W ~ N(0, 1/n)``) over a grid of widths ``n`` and depths ``L``, against the depth-limit ODE
kernel ``resnet_kernel(infinite=True)``. Depth first: at the largest ``L`` (standing in for
L = infinity) the error falls with ``n``. Width first: at ``n = infinity`` (the exact
finite-L kernel ``resnet_kernel(depth=L)``) it falls like 1/L. Both go to the same limit, and
the coordinates of ``Y_L`` are Gaussian there (QQ plot, Kolmogorov-Smirnov distance).
"""

from __future__ import annotations

import numpy as np

from .._progress import track
from ._registry import Context, Experiment, Outcome, register

ACT = "relu"
D_IN = 16


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(widths=(32, 128, 512), depths=(2, 8, 32), reps=3, n_inputs=4)
    return dict(widths=(32, 64, 128, 256, 512, 1024, 2048), depths=(2, 4, 8, 16, 32, 64),
                reps=6, n_inputs=4)


def _inputs(n: int, seed: int) -> np.ndarray:
    """n inputs in R^16 with ||x||^2 = d (q_0 = 1) and varied angles."""
    x = np.random.default_rng(seed).normal(size=(n, D_IN))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(D_IN)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def monte_carlo(widths, depths, reps: int, X: np.ndarray, seed: int, limit: np.ndarray):
    """Relative Frobenius error of each net's Gram matrix to ``limit``, per (n, L), and the
    standardised coordinates of Y_L(x_0) at the largest (n, L)."""
    import torch

    from ..nn import ResidualMLP

    x = torch.tensor(X, dtype=torch.float32)
    err = np.zeros((len(widths), len(depths)))
    coords = None
    cells = [(i, j) for i in range(len(widths)) for j in range(len(depths))]
    for i, j in track(cells, "width x depth Monte Carlo"):
        n, L = widths[i], depths[j]
        errs, zs = [], []
        for r in range(reps):
            torch.manual_seed(seed * 100_003 + n * 1009 + L * 7 + r)
            net = ResidualMLP(D_IN, n, L, 1, mode="stable", act=ACT, sigma_w=1.0)
            with torch.no_grad():
                y = net.features(x).double().numpy()  # (inputs, n)
            errs.append(_rel(y @ y.T / n, limit))
            zs.append(y[0] / np.sqrt(np.mean(y[0] ** 2)))  # one net's coordinates, scaled
        err[i, j] = float(np.mean(errs))
        if (i, j) == cells[-1]:
            coords = np.concatenate(zs)
    return err, coords


def _qq(z: np.ndarray, k: int = 199) -> dict:
    """k sample quantiles of z against the N(0, 1) quantiles at the same levels."""
    from scipy import stats

    levels = (np.arange(1, k + 1) - 0.5) / k
    return dict(normal=stats.norm.ppf(levels).tolist(), sample=np.quantile(z, levels).tolist())


def _slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def run(ctx: Context) -> Outcome:
    from scipy import stats

    from ..plots import plot_width_depth_commute
    from ..theory import resnet_kernel

    s = _sizes(ctx.quick)
    widths, depths = s["widths"], s["depths"]
    X = _inputs(s["n_inputs"], ctx.seed)
    limit = resnet_kernel(ACT, None, X, infinite=True)
    err, coords = monte_carlo(widths, depths, s["reps"], X, ctx.seed, limit)
    euler = [_rel(resnet_kernel(ACT, L, X), limit) for L in depths]  # n = infinity
    ks = float(stats.kstest(coords, "norm").statistic)
    kurt = float(stats.kurtosis(coords))
    depth_first = err[:, -1]  # L = L_max, n growing
    slope_n = _slope(widths, depth_first)
    slope_l = _slope(depths, euler)
    corner = float(err[-1, -1])
    holds = bool(slope_n < -0.3 and depth_first[-1] < 0.5 * depth_first[0]
                 and -1.2 < slope_l < -0.8 and corner <= 1.25 * float(err.min())
                 and ks < 0.05)
    result = dict(activation=ACT, widths=list(widths), depths=list(depths), reps=s["reps"],
                  inputs=X.tolist(), limit_kernel=limit.tolist(), error=err.tolist(),
                  euler_error=euler, depth_first_slope_in_n=slope_n,
                  width_first_slope_in_L=slope_l, corner_error=corner, ks_normal=ks,
                  excess_kurtosis=kurt, samples_normality=int(coords.size),
                  qq=_qq(coords))
    plot_width_depth_commute(result, ctx.path("width_depth_commute.png"))
    ran = (f"ReLU ResidualMLPs (1/sqrt(L) branches, W ~ N(0, 1/n)), widths {list(widths)} x "
           f"depths {list(depths)}, {s['reps']} nets per cell, {len(X)} inputs in R^{D_IN}: "
           f"relative Frobenius error of Y_L Y_L^T / n to the depth-limit ODE kernel.")
    observed = (f"Depth first (L = {depths[-1]}): error falls from {depth_first[0]:.3f} at "
                f"n = {widths[0]} to {depth_first[-1]:.3f} at n = {widths[-1]} (slope "
                f"{slope_n:.2f} in log n; 1/sqrt(n) is -0.5). Width first (n = infinity, "
                f"exact finite-L kernel): error {euler[0]:.4f} -> {euler[-1]:.4f}, slope "
                f"{slope_l:.2f} in log L (Euler: -1). The largest (n, L) has error {corner:.3f} "
                f"(grid minimum {err.min():.3f}). Coordinates of Y_L there: KS distance to "
                f"N(0, 1) {ks:.3f}, excess kurtosis {kurt:.3f} ({coords.size} samples).")
    return Outcome(result=result, figures=["width_depth_commute.png"], ran=ran,
                   observed=observed, claim_holds=holds)


register(Experiment(
    name="width-depth-commute",
    description="Residual-net covariance over a width x depth grid vs the depth-limit ODE "
                "kernel: same limit in either order",
    paper="arXiv 2302.00453",
    claim="For 1/sqrt(L)-scaled ResNets the covariance of the residual stream converges to the "
          "same kernel (the ODE dq/dt = E[phi(U) phi(V)]) whether width or depth goes to "
          "infinity first, and the pre-activations are Gaussian in that limit.",
    run=run,
))
