"""Reproduction ``width-depth-commute``: residual networks reach the same kernel whichever of
width and depth goes to infinity first (arXiv 2302.00453).

Monte Carlo over a grid of widths ``n`` and depths ``L``: many independent random ReLU
ResNets per cell, ``Y_0 = W_in x`` (``W_in ~ N(0, 1/d)``), ``Y_l = Y_{l-1} + W_l
relu(Y_{l-1}) / sqrt(L)`` (``W_l ~ N(0, 1/n)``, no bias) — the residual stream of
:class:`scalelab.nn.ResidualMLP` with ``mode="stable", sigma_w=1`` — simulated in batches
(the same distribution, drawn directly). Each net's Gram matrix ``G = Y_L Y_L^T / n`` of a
few inputs splits into

- the *fluctuation* ``F(n, L)``: the rms distance of one net's ``G`` from the cell's mean,
  relative to ``||K_inf||`` (expected ~ n^-1/2), and
- the *mean bias*: the distance of the cell's mean Gram matrix ``G_bar`` from a kernel,
  debiased for the Monte Carlo noise of the mean (``||G_bar - K||^2 - S^2 / R``, ``S^2`` the
  sample variance summed over entries, ``R`` nets), with a bootstrap standard error over
  nets. Against the depth-limit ODE kernel ``K_inf = resnet_kernel(infinite=True)`` it is
  the total bias ``B(n, L)``; against the exact finite-L infinite-width kernel
  ``K_L = resnet_kernel(depth=L)`` it is the width bias ``W(n, L)``.

Width first (n -> inf at fixed L, then L -> inf): the mean Gram matrix at every width must
be ``K_L`` (no width bias resolved) and its measured distance to ``K_inf`` falls like 1/L —
a Monte Carlo measurement set against the Euler error ``||K_L - K_inf||``. Depth first
(L -> inf at fixed n, then n -> inf): at the largest ``L`` the mean Gram matrix at every
width sits at ``K_L``'s distance from ``K_inf`` while the fluctuation falls like n^-1/2, not
growing with depth. The coordinates of ``Y_L`` are Gaussian there (QQ plot, KS distance).
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._common import loglog_fit, spread
from .registry import Context, Experiment, Outcome, register

ACT = "relu"
D_IN = 16
Z = 3.0  # standard errors
BOOT = 200

CRITERION = (
    "Over every (width n, depth L) cell of the grid, R independent nets per cell: "
    "(F) the per-net fluctuation of the Gram matrix falls like n^-1/2 at every depth (log-log "
    "slope in n within [-0.6, -0.4]) and does not grow with depth (at every width, largest / "
    "smallest over depths <= 1.5); (W) width bias: at every cell the debiased squared distance "
    "of the mean Gram matrix to the exact finite-L kernel K_L is within 3 bootstrap standard "
    "errors of 0; (B) width first: over the cells where the debiased distance B(n, L) of the "
    "mean Gram matrix to the depth-limit kernel K_inf exceeds 3 standard errors (at least 3 "
    "depths), the log-log fit of B against L has slope within [-1.25, -0.75] (1/L); depth "
    "first: at the largest L, B at every width is within 3 standard errors of the n = inf "
    "value ||K_L - K_inf||; (G) the coordinates of Y_L at the largest (n, L) have KS distance "
    "to N(0, 1) below 0.05.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(widths=(32, 64, 128), depths=(2, 8, 32), reps={32: 256, 64: 128, 128: 64},
                    n_inputs=4)
    return dict(widths=(32, 64, 128, 256, 512), depths=(2, 4, 8, 16, 32, 64),
                reps={32: 16384, 64: 4096, 128: 256, 256: 128, 512: 64}, n_inputs=4)


def _inputs(n: int, seed: int) -> np.ndarray:
    """n inputs in R^16 with ||x||^2 = d (q_0 = 1) and varied angles."""
    x = np.random.default_rng(seed).normal(size=(n, D_IN))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(D_IN)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def simulate(X: np.ndarray, width: int, depth: int, reps: int, seed: int,
             chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Gram matrices ``(reps, N, N)`` of ``reps`` independent random ResNets and the last
    net's ``Y_L(x_0)`` coordinates per net ``(reps, width)`` (float32 draws, float64 Grams)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(X, dtype=torch.float32)
    grams, first = [], []
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        y = x[None] @ (torch.randn(r, X.shape[1], width, generator=g) / math.sqrt(X.shape[1]))
        for _ in range(depth):  # y: (r, N, width)
            w = torch.randn(r, width, width, generator=g) / math.sqrt(width)
            y = y + torch.relu(y) @ w.transpose(1, 2) / math.sqrt(depth)
        y = y.double()
        grams.append((y @ y.transpose(1, 2) / width).numpy())
        first.append(y[:, 0, :].numpy())
    return np.concatenate(grams), np.concatenate(first)


def _sq_bias(grams: np.ndarray, target: np.ndarray) -> float:
    """Unbiased estimate of ||E G - target||^2: ||G_bar - target||^2 - S^2 / R."""
    r = grams.shape[0]
    mean = grams.mean(0)
    s2 = float(((grams - mean) ** 2).sum()) / (r - 1)
    return float(((mean - target) ** 2).sum()) - s2 / r


def bias_stats(grams: np.ndarray, target: np.ndarray, norm: float, rng) -> dict:
    """Debiased squared distance of the mean Gram matrix to ``target`` (relative to
    ``norm^2``), its bootstrap standard error over nets, and the distance itself."""
    sq = _sq_bias(grams, target) / norm**2
    r = grams.shape[0]
    boot = [_sq_bias(grams[rng.integers(0, r, r)], target) / norm**2 for _ in range(BOOT)]
    se = float(np.std(boot, ddof=1))
    return {"sq": sq, "sq_se": se, "dist": math.sqrt(max(sq, 0.0)),
            "resolved": bool(sq > Z * se)}


def _qq(z: np.ndarray, k: int = 199) -> dict:
    """k sample quantiles of z against the N(0, 1) quantiles at the same levels."""
    from scipy import stats

    levels = (np.arange(1, k + 1) - 0.5) / k
    return dict(normal=stats.norm.ppf(levels).tolist(), sample=np.quantile(z, levels).tolist())


def judge(cells: list[dict], widths, depths, euler: dict, ks: float) -> dict:
    at = {(c["width"], c["depth"]): c for c in cells}
    fl_slopes = {L: loglog_fit(widths, [at[(n, L)]["fluctuation"] for n in widths])["slope"]
                 for L in depths}
    fl_ratio = {n: max(at[(n, L)]["fluctuation"] for L in depths)
                / min(at[(n, L)]["fluctuation"] for L in depths) for n in widths}
    f_ok = all(-0.6 <= v <= -0.4 for v in fl_slopes.values()) and all(
        v <= 1.5 for v in fl_ratio.values())
    w_z = {f"{c['width']},{c['depth']}": c["width_bias"]["sq"] / c["width_bias"]["sq_se"]
           for c in cells}
    w_ok = all(c["width_bias"]["sq"] <= Z * c["width_bias"]["sq_se"] for c in cells)
    resolved = [c for c in cells if c["total_bias"]["resolved"]]
    fit = loglog_fit([c["depth"] for c in resolved], [c["total_bias"]["dist"] for c in resolved])
    b_depths = sorted({c["depth"] for c in resolved})
    width_first = bool(len(b_depths) >= 3 and -1.25 <= fit["slope"] <= -0.75)
    L = depths[-1]
    target = euler[L] ** 2
    deep = {n: (at[(n, L)]["total_bias"]["sq"] - target) / at[(n, L)]["total_bias"]["sq_se"]
            for n in widths}
    depth_first = all(abs(z) <= Z for z in deep.values())
    return {"fluctuation_slope_in_n": fl_slopes, "fluctuation_depth_ratio": fl_ratio,
            "fluctuation_ok": bool(f_ok), "width_bias_z": w_z, "width_bias_ok": bool(w_ok),
            "bias_fit_in_L": fit, "bias_resolved_depths": b_depths,
            "width_first_ok": width_first, "deepest_bias_z": deep,
            "depth_first_ok": bool(depth_first), "ks_ok": bool(ks < 0.05),
            "holds": bool(f_ok and w_ok and width_first and depth_first and ks < 0.05)}


def run(ctx: Context) -> Outcome:
    from scipy import stats

    from ..plots import plot_width_depth_commute
    from ..theory import resnet_kernel

    s = _sizes(ctx.quick)
    widths, depths = s["widths"], s["depths"]
    X = _inputs(s["n_inputs"], ctx.seed)
    limit = resnet_kernel(ACT, None, X, infinite=True)
    norm = float(np.linalg.norm(limit))
    finite = {L: resnet_kernel(ACT, L, X) for L in depths}  # n = infinity, exact
    euler = {L: _rel(finite[L], limit) for L in depths}
    rng = np.random.default_rng(ctx.seed)
    cells, coords = [], None
    grid = [(n, L) for n in widths for L in depths]
    for n, L in track(grid, "width x depth Monte Carlo"):
        grams, first = simulate(X, n, L, s["reps"][n], ctx.seed * 100_003 + n * 1009 + L * 7)
        mean = grams.mean(0)
        fluct = math.sqrt(float(((grams - mean) ** 2).sum()) / (grams.shape[0] - 1)) / norm
        cells.append(dict(width=n, depth=L, reps=int(grams.shape[0]), fluctuation=fluct,
                          total_bias=bias_stats(grams, limit, norm, rng),
                          width_bias=bias_stats(grams, finite[L], norm, rng),
                          euler_error=euler[L]))
        if (n, L) == grid[-1]:
            coords = (first / np.sqrt(np.mean(first**2, axis=1, keepdims=True))).ravel()
    ks = float(stats.kstest(coords, "norm").statistic)
    kurt = float(stats.kurtosis(coords))
    verdict = judge(cells, widths, depths, euler, ks)
    result = dict(activation=ACT, widths=list(widths), depths=list(depths), reps=s["reps"],
                  inputs=X.tolist(), limit_kernel=limit.tolist(), cells=cells,
                  euler_error=[euler[L] for L in depths], ks_normal=ks, excess_kurtosis=kurt,
                  samples_normality=int(coords.size), qq=_qq(coords), criterion=CRITERION,
                  **verdict)
    plot_width_depth_commute(result, ctx.path("width_depth_commute.png"))
    ran = (f"ReLU ResNets (1/sqrt(L) branches, W ~ N(0, 1/n)), widths {list(widths)} x "
           f"depths {list(depths)}, nets per cell by width {s['reps']}, {len(X)} inputs in "
           f"R^{D_IN}: per-net fluctuation of G = Y_L Y_L^T / n, and the debiased distance "
           f"of the cells' mean Gram matrix to K_L (exact finite-L kernel) and to the "
           f"depth-limit ODE kernel K_inf (bootstrap s.e. over nets, {BOOT} resamples). Seed "
           f"{ctx.seed}.")
    fit = verdict["bias_fit_in_L"]
    at = {(c["width"], c["depth"]): c for c in cells}
    fl = ", ".join(f"L={L}: {v:.2f}" for L, v in verdict["fluctuation_slope_in_n"].items())
    worst_w = max(verdict["width_bias_z"].values())
    observed = (
        f"(F) Fluctuation slope in log n per depth: {fl} (n^-1/2: -0.5); it ranges "
        f"{min(c['fluctuation'] for c in cells):.3f}..{max(c['fluctuation'] for c in cells):.3f}"
        f", largest/smallest over depths at one width at most "
        f"{max(verdict['fluctuation_depth_ratio'].values()):.2f}. (W) Width bias (squared, "
        f"in s.e.): largest z = {worst_w:.1f} (pass <= {Z:g}). (B) Mean bias to K_inf resolved "
        f"(> {Z:g} s.e.) at depths {verdict['bias_resolved_depths']}: log-log slope in L "
        f"{fit['slope']:.2f} (95% CI +-{fit['ci95']:.2f}, {fit['n']} cells; Euler: -1); the "
        f"n = inf values ||K_L - K_inf|| are "
        + ", ".join(f"{euler[L]:.4f}" for L in depths)
        + f" for L = {list(depths)}. At L = {depths[-1]}: B by width "
        + ", ".join(f"n={n}: {at[(n, depths[-1])]['total_bias']['dist']:.4f}" for n in widths)
        + f" (n = inf: {euler[depths[-1]]:.4f}; deviations in s.e. "
        + ", ".join(f"{z:+.1f}" for z in verdict["deepest_bias_z"].values())
        + f"). (G) Coordinates of Y_L at n = {widths[-1]}, L = {depths[-1]}: KS distance to "
        f"N(0, 1) {ks:.3f}, excess kurtosis {kurt:.3f} ({coords.size} samples). Clauses: F "
        f"{'pass' if verdict['fluctuation_ok'] else 'fail'}, W "
        f"{'pass' if verdict['width_bias_ok'] else 'fail'}, width first "
        f"{'pass' if verdict['width_first_ok'] else 'fail'}, depth first "
        f"{'pass' if verdict['depth_first_ok'] else 'fail'}, G "
        f"{'pass' if verdict['ks_ok'] else 'fail'}.")
    # one seed: each number rests on R independent nets per cell (bootstrap s.e. above)
    judged = {"bias slope in L (resolved cells)": fit["slope"],
              "largest width-bias z": worst_w,
              "largest |deepest-L bias - n=inf| in s.e.": max(
                  abs(z) for z in verdict["deepest_bias_z"].values())}
    judged.update({f"fluctuation slope in n, L={L}": v
                   for L, v in verdict["fluctuation_slope_in_n"].items()})
    spreads = {k: spread([v], [ctx.seed]) for k, v in judged.items() if math.isfinite(v)}
    return Outcome(result=result, figures=["width_depth_commute.png"], ran=ran,
                   observed=observed, claim_holds=verdict["holds"], seeds=[ctx.seed],
                   spread=spreads, indicative=ctx.quick)


register(Experiment(
    name="width-depth-commute",
    description="Residual-net covariance over a width x depth grid vs the depth-limit ODE "
                "kernel: same limit in either order",
    paper="arXiv 2302.00453",
    claim="For 1/sqrt(L)-scaled ResNets the covariance of the residual stream converges to the "
          "same kernel (the ODE dq/dt = E[phi(U) phi(V)]) whether width or depth goes to "
          "infinity first, and the pre-activations are Gaussian in that limit.",
    run=run,
    criterion=CRITERION,
    min_seeds=1,
))
