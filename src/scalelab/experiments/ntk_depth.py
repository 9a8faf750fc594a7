"""Reproduction ``ntk-depth``: the infinite-width NTK at large depth ("the curse of depth in
the kernel regime"; arXiv 1905.13654, PMLR 163 (2022)).

1. Decay: the distance of the normalised NTK to its depth limit vs depth for tanh in the
   ordered phase, on the EOC and in the chaotic phase, ReLU on its EOC, and the 1/sqrt(L)
   ReLU ResNet (against its infinite-depth NTK) — log-linear vs log-log fits. Reported
   besides: the off-diagonal spread (0 = inputs forgotten) of both ResNets, the 1/sqrt(L) one
   and an unscaled one (alpha_l = 1).
2. The curse of depth on real data: infinite-width NTK regression (a linear solve) on the
   packaged MNIST digits, test accuracy vs depth 2..200, for erf (tanh's closed-form twin:
   quadrature would take hours at these sizes) in the three phases, ReLU on the EOC and the
   1/sqrt(L) ReLU ResNet, over several digit samples.
3. Theory vs finite nets: empirical NTKs (torch.func) of random NTK-parametrised MLPs at
   widths 256..2048 against ``ntk_kernel``, over several seeds: error vs width.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import loglog_fit, seeds_for, spread
from .ntk_setup import chance, digit_inputs, digit_split, kernel_regression_accuracy
from .registry import Context, Experiment, Outcome, register

CLAIM = ("In the infinite-width (kernel) regime the normalised NTK of a deep MLP converges with "
         "depth to a trivial kernel that forgets its inputs: exponentially fast in the ordered "
         "and chaotic phases, only polynomially on the Edge of Chaos; 1/sqrt(L)-scaled ResNets "
         "converge polynomially. Kernel-regime training on real data therefore collapses to "
         "chance within a few depth scales xi_c off the EOC, while EOC nets and scaled ResNets "
         "degrade slowly; and the empirical NTK of random finite nets approaches the "
         "infinite-width NTK as 1/sqrt(width).")
CRITERION = (
    "All three parts must hold. (1) Decay: for tanh in the ordered (sigma_w=1.0) and chaotic "
    "(sigma_w=2.0) phases at sigma_b=0.3 the log-linear fit of the distance vs depth has a "
    "higher R^2 than the log-log fit; for tanh on the EOC (sigma_b=0.3), ReLU on the EOC and "
    "the 1/sqrt(L) ReLU ResNet (distance to its infinite-depth NTK) the log-log fit has the "
    "higher R^2. (2) Regression (erf at sigma_b=0.3 with sigma_w = 0.8x / 1x / 1.6x its EOC "
    "value; ReLU EOC; 1/sqrt(L) ReLU ResNet), on every digit sample: the ordered and chaotic "
    "MLPs reach chance (test accuracy <= majority-class rate + 0.05, a failed solve counting "
    "as chance) at some depth L_c <= 5 xi_c; the EOC MLPs and the ResNet keep >= 80% of their "
    "best accuracy at the largest depth. (3) Width: the log-log slope of the seed-mean "
    "relative Frobenius error of the empirical NTK vs width lies in [-0.75, -0.25] (1/sqrt: "
    "-0.5) for ReLU and tanh EOC MLPs.")

TANH_SB = 0.3
TANH_PHASES = (("ordered", 1.0), ("edge", None), ("chaotic", 2.0))
ERF_SB = 0.3
ERF_PHASES = (("ordered", 0.8), ("edge", 1.0), ("chaotic", 1.6))  # x the EOC sigma_w
COLLAPSE_MARGIN, COLLAPSE_XI, KEEP = 0.05, 5.0, 0.8


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(n_profile=4, tanh_depth=32, relu_depth=256, res_depth=64, n_train=80,
                    n_test=80, reg_depths=(2, 4, 8, 16, 32, 64), reg_seeds=2,
                    widths=(64, 256, 1024), width_acts=("relu",), width_seeds=4, n_width=4)
    return dict(n_profile=6, tanh_depth=300, relu_depth=2048, res_depth=512, n_train=500,
                n_test=250, reg_depths=(2, 3, 5, 8, 12, 20, 30, 50, 80, 120, 200),
                reg_seeds=3, widths=(256, 512, 1024, 2048), width_acts=("relu", "tanh"),
                width_seeds=8, n_width=6)


def _geom(top: int, k: int = 14) -> list[int]:
    return sorted({int(round(v)) for v in np.geomspace(2, top, k)})


def _fit_record(p) -> dict:
    f = p.fit
    return dict(rate=f.rate, exponent=f.exponent, r2_exponential=f.r2_exponential,
                r2_power=f.r2_power, better=f.better, n_points=f.n_points)


def _decay(s: dict, seed: int) -> dict:
    """Part 1: depth profiles (deterministic given the digits)."""
    from .._progress import track
    from ..theory import (
        chi1,
        correlation_fixed_point,
        depth_scales,
        edge_of_chaos,
        fixed_point,
        normalised_kernel,
        ntk_depth_profile,
        resnet_ntk,
        resnet_ntk_depth_profile,
    )

    X = digit_inputs(s["n_profile"], seed)
    out, profiles = {}, {}
    eoc = edge_of_chaos("tanh", TANH_SB).sigma_w
    for name, sw in track(TANH_PHASES, "ntk-depth: tanh profiles"):
        sw = eoc if sw is None else sw
        p = ntk_depth_profile("tanh", sw, TANH_SB, [1] + _geom(s["tanh_depth"]), X)
        xi_c = depth_scales("tanh", sw, TANH_SB)[1]
        q = fixed_point("tanh", sw, TANH_SB).q
        c1 = float(chi1("tanh", sw, TANH_SB, q))
        # predicted exponential rates: ordered -ln chi1 (= 1/xi_c); chaotic ln chi1 - ln Kdot(c*)
        pred = (-math.log(c1) if name == "ordered" else
                math.log(c1) - math.log(correlation_fixed_point("tanh", sw, TANH_SB, q)[1])
                if name == "chaotic" else None)
        label = f"tanh {name} (sigma_w={sw:.3g})"
        profiles[label] = p
        out[label] = dict(phase=p.phase, sigma_w=sw, sigma_b=TANH_SB, xi_c=xi_c, chi1=c1,
                          predicted_rate=pred, limit=p.limit, depths=p.depths,
                          distance=p.distance, spread=p.spread, condition=p.condition,
                          fit=_fit_record(p))
    p = ntk_depth_profile("relu", math.sqrt(2), 0.0, [1] + _geom(s["relu_depth"]), X)
    profiles["relu EOC"] = p
    out["relu EOC"] = dict(phase=p.phase, sigma_w=math.sqrt(2), sigma_b=0.0, limit=p.limit,
                           depths=p.depths, distance=p.distance, spread=p.spread,
                           condition=p.condition, fit=_fit_record(p))
    depths = _geom(s["res_depth"], 10)
    p = resnet_ntk_depth_profile("relu", depths, X, progress=lambda it, n: track(
        it, "ntk-depth: ResNet profile", total=n))
    profiles["relu ResNet 1/sqrt(L)"] = p
    out["relu ResNet 1/sqrt(L)"] = dict(phase="resnet", depths=p.depths, distance=p.distance,
                                        spread=p.spread, condition=p.condition,
                                        fit=_fit_record(p))
    unscaled = []
    for L in depths:  # alpha_l = 1: the spread (forgetting) only; its limit is not derived
        Tn = normalised_kernel(resnet_ntk("relu", L, X, scales=[1.0] * L))
        off = Tn[~np.eye(len(X), dtype=bool)]
        unscaled.append(float(off.max() - off.min()))
    out["relu ResNet alpha=1 (spread only)"] = dict(depths=depths, spread=unscaled,
                                                     spread_loglog=loglog_fit(depths, unscaled))
    return dict(n_inputs=len(X), curves=out), profiles


def _regression_nets():
    from ..theory import depth_scales, edge_of_chaos

    eoc = edge_of_chaos("erf", ERF_SB).sigma_w
    nets = [(f"erf {name} (sigma_w={k * eoc:.3g})", "erf", k * eoc, ERF_SB, name,
             depth_scales("erf", k * eoc, ERF_SB)[1]) for name, k in ERF_PHASES]
    nets.append(("relu EOC", "relu", math.sqrt(2), 0.0, "edge", math.inf))
    nets.append(("relu ResNet 1/sqrt(L)", "relu", None, None, "resnet", math.inf))
    return nets


def _regression(s: dict, seeds: list[int]) -> dict:
    """Part 2: NTK regression accuracy vs depth, one digit sample per seed."""
    from .._progress import track
    from ..theory import resnet_ntk
    from ..theory.kernels import mlp_layers

    depths = list(s["reg_depths"])
    nets = _regression_nets()
    acc = {n[0]: [] for n in nets}
    spr = {n[0]: [] for n in nets}
    failed = {n[0]: 0 for n in nets}
    chances = []
    for seed in seeds:
        split = digit_split(s["n_train"], s["n_test"], seed)
        chances.append(chance(split))
        for label, act, sw, sb, kind, _xi in track(nets, f"ntk-depth: regression seed {seed}"):
            if kind == "resnet":
                rows = [kernel_regression_accuracy(resnet_ntk(act, L, split.x), split)
                        for L in depths]
            else:
                rows = [kernel_regression_accuracy(T, split) for level, (_K, T) in
                        enumerate(mlp_layers(act, sw, sb, depths[-1], split.x, ntk=True), 1)
                        if level in depths]
            # a failed solve (NaN) counts as chance, as the criterion says; counted apart
            failed[label] += sum(math.isnan(r[0]) for r in rows)
            acc[label].append([chances[-1] if math.isnan(r[0]) else r[0] for r in rows])
            spr[label].append([r[1] for r in rows])
    curves = {}
    for label, act, sw, sb, kind, xi in nets:
        a = np.array(acc[label], dtype=float)  # (seeds, depths)
        curves[label] = dict(kind=kind, act=act, sigma_w=sw, sigma_b=sb, xi_c=xi,
                             depths=depths, accuracy=a, spread=np.array(spr[label]),
                             mean=a.mean(0), min=a.min(0), max=a.max(0),
                             failed_solves=failed[label])
    return dict(depths=depths, seeds=seeds, chance=chances, n_train=s["n_train"],
                n_test=s["n_test"], curves=curves)


def _collapse_depth(acc: np.ndarray, depths: list[int], chance_rate: float) -> float:
    """First depth with accuracy <= chance + margin (inf if none)."""
    hit = acc <= chance_rate + COLLAPSE_MARGIN
    return float(depths[int(np.argmax(hit))]) if hit.any() else math.inf


def _width(s: dict, seeds: list[int]) -> dict:
    """Part 3: empirical NTKs of random NTKMLPs vs ntk_kernel."""
    import torch

    from .._progress import track
    from ..diagnostics import empirical_ntk
    from ..nn import NTKMLP
    from ..theory import edge_of_chaos, ntk_kernel

    X = digit_inputs(s["n_width"], seeds[0])
    x = torch.from_numpy(X)
    out = {}
    for act in s["width_acts"]:
        sb = 0.0 if act == "relu" else 0.2
        sw = edge_of_chaos(act, sb).sigma_w
        want = ntk_kernel(act, sw, sb, 3, X)
        err = np.zeros((len(seeds), len(s["widths"])))
        cells = [(i, j) for i in range(len(seeds)) for j in range(len(s["widths"]))]
        for i, j in track(cells, f"ntk-depth: empirical NTKs ({act})"):
            torch.manual_seed(seeds[i] * 7919 + s["widths"][j])
            net = NTKMLP(X.shape[1], s["widths"][j], 3, 1, act, sigma_w=sw, sigma_b=sb,
                         dtype=torch.float64)
            K = empirical_ntk(net, x)
            err[i, j] = np.linalg.norm(K - want) / np.linalg.norm(want)
        fit = loglog_fit(s["widths"], err.mean(0))
        per_seed = [loglog_fit(s["widths"], e)["slope"] for e in err]
        out[f"{act} EOC MLP (3 layers)"] = dict(
            sigma_w=sw, sigma_b=sb, widths=list(s["widths"]), error=err, mean=err.mean(0),
            min=err.min(0), max=err.max(0), slope=fit["slope"], slope_ci95=fit["ci95"],
            slope_per_seed=per_seed)
    return dict(n_inputs=len(X), depth=3, seeds=seeds, curves=out)


def run(ctx: Context) -> Outcome:
    from ..plots import plot_ntk_depth_profile, plot_ntk_regression, plot_ntk_width_convergence

    s = _sizes(ctx.quick)
    decay, profiles = _decay(s, ctx.seed)
    reg_seeds = seeds_for(ctx, s["reg_seeds"])
    reg = _regression(s, reg_seeds)
    width = _width(s, seeds_for(ctx, s["width_seeds"]))

    # --- the criterion, part by part ---------------------------------------------------
    c = decay["curves"]
    exp_ok = {k: v["fit"]["better"] == "exponential" for k, v in c.items()
              if k.startswith("tanh") and v["phase"] in ("ordered", "chaotic")}
    pow_ok = {k: v["fit"]["better"] == "power law" for k, v in c.items()
              if "fit" in v and (v["phase"] in ("edge", "resnet"))}
    part1 = all(exp_ok.values()) and all(pow_ok.values())
    collapse, kept = {}, {}
    for label, cur in reg["curves"].items():
        if cur["kind"] in ("ordered", "chaotic"):
            lc = [_collapse_depth(a, reg["depths"], ch)
                  for a, ch in zip(cur["accuracy"], reg["chance"], strict=True)]
            collapse[label] = dict(depth=lc, in_xi_c=[v / cur["xi_c"] for v in lc],
                                   xi_c=cur["xi_c"])
        else:
            a = cur["accuracy"]
            kept[label] = (a[:, -1] / a.max(1)).tolist()
    part2 = (all(v <= COLLAPSE_XI for r in collapse.values() for v in r["in_xi_c"])
             and all(v >= KEEP for r in kept.values() for v in r))
    slopes = {k: v["slope"] for k, v in width["curves"].items()}
    part3 = all(-0.75 <= v <= -0.25 for v in slopes.values())

    figs = ["ntk_depth_decay.png", "ntk_depth_regression.png", "ntk_depth_width.png"]
    plot_ntk_depth_profile(profiles, ctx.path(figs[0]),
                           title=f"normalised NTK vs depth ({decay['n_inputs']} MNIST digits)")
    chance_rate = float(np.mean(reg["chance"]))
    plot_ntk_regression({k: v for k, v in reg["curves"].items()}, ctx.path(figs[1]),
                        chance=chance_rate, title=f"NTK regression, {reg['n_train']} train / "
                        f"{reg['n_test']} test digits, {len(reg_seeds)} samples")
    plot_ntk_width_convergence(width["curves"], ctx.path(figs[2]))

    fits = "; ".join(f"{k}: {v['fit']['better']} (rate {v['fit']['rate']:.3g}, exponent "
                     f"{v['fit']['exponent']:.3g}" + (f", predicted rate {v['predicted_rate']:.3g}"
                                                      if v.get("predicted_rate") else "") + ")"
                     for k, v in c.items() if "fit" in v)
    res_sp = c["relu ResNet 1/sqrt(L)"]["spread"]
    un = c["relu ResNet alpha=1 (spread only)"]
    coll = "; ".join(f"{k}: L_c = {r['depth']} ({', '.join(f'{v:.3g}' for v in r['in_xi_c'])} "
                     f"xi_c, xi_c = {r['xi_c']:.3g})" for k, r in collapse.items())
    keep = "; ".join(f"{k}: {', '.join(f'{v:.2f}' for v in r)}" for k, r in kept.items())
    observed = (
        f"(1) {fits}. Off-diagonal spread of the 1/sqrt(L) ResNet: {res_sp[0]:.3g} at L = "
        f"{c['relu ResNet 1/sqrt(L)']['depths'][0]} -> {res_sp[-1]:.3g} at L = "
        f"{c['relu ResNet 1/sqrt(L)']['depths'][-1]} (it converges to a non-trivial kernel); "
        f"unscaled ResNet spread {un['spread'][0]:.3g} -> {un['spread'][-1]:.3g} (log-log "
        f"slope {un['spread_loglog']['slope']:.3g}). Part 1 holds: {part1}. "
        f"(2) chance {chance_rate:.3f}; collapse: {coll}; accuracy kept at L = "
        f"{reg['depths'][-1]} (fraction of best): {keep}. Part 2 holds: {part2}. "
        f"(3) log-log slopes of error vs width: "
        + ", ".join(f"{k} {v:.3f}" for k, v in slopes.items()) + f". Part 3 holds: {part3}.")
    spreads = {f"regression accuracy at L={reg['depths'][-1]}, {k}":
               spread(v["accuracy"][:, -1], reg_seeds)
               for k, v in reg["curves"].items()}
    spreads.update({f"collapse depth / xi_c, {k}": spread(r["in_xi_c"], reg_seeds)
                    for k, r in collapse.items() if all(math.isfinite(v) for v in r["in_xi_c"])})
    spreads.update({f"width slope per seed, {k}": spread(v["slope_per_seed"], width["seeds"])
                    for k, v in width["curves"].items()})
    ran = (f"(1) NTK depth profiles on {decay['n_inputs']} MNIST digits: tanh (sigma_b="
           f"{TANH_SB}) ordered / EOC / chaotic to depth {s['tanh_depth']}, ReLU EOC to "
           f"{s['relu_depth']}, ReLU ResNets to {s['res_depth']} blocks. (2) NTK regression "
           f"({s['n_train']} train / {s['n_test']} test digits, {len(reg_seeds)} samples, jitter "
           f"1e-10 x mean diagonal) at depths {list(reg['depths'])}. (3) Empirical NTKs of "
           f"{len(width['seeds'])} random 3-layer NTKMLPs per width {list(s['widths'])} on "
           f"{width['n_inputs']} digits.")
    return Outcome(
        result=dict(decay=decay, regression=reg, width=width,
                    judged=dict(part1=part1, exponential=exp_ok, power=pow_ok, part2=part2,
                                collapse=collapse, kept=kept, part3=part3, slopes=slopes)),
        figures=figs, ran=ran, observed=observed, claim_holds=bool(part1 and part2 and part3),
        seeds=reg_seeds, spread=spreads, indicative=ctx.quick)


register(Experiment(
    name="ntk-depth",
    description="The infinite-width NTK at large depth: decay rates by phase, NTK regression on "
                "MNIST vs depth, empirical NTKs vs width",
    paper="arXiv 1905.13654; The Curse of Depth in Kernel Regime (PMLR 163, 2022)",
    claim=CLAIM,
    criterion=CRITERION,
    min_seeds=3,
    run=run,
))
