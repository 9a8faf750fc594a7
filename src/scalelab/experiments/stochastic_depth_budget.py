"""Reproduction ``stochastic-depth-budget``: which survival rates are best at a fixed budget?

arXiv 2106.03091: with unscaled Bernoulli masks in training and the mean network (branch
``l`` multiplied by its survival probability ``p_l``) at test, stochastic depth adds the
penalty ``(1/2) sum_l p_l (1 - p_l) g_l`` (``g_l >= 0`` a per-block second-order
sensitivity); at a fixed budget ``sum_l p_l`` and equal ``g_l`` the uniform mode maximises
it, so the "budget hypothesis" says uniform survival rates are best at large budgets while
at small budgets a sensitivity-aware mode (SenseMode) is better.

What runs, in the paper's convention (``scale_by_keep=False`` on every block,
docs/residual.md): residual MLPs on a small real-digit training set (an overfitting regime
where regularisation matters), trained with Adam under uniform, linear (Huang et al.; only
for budgets above (L-1)/2) and SenseMode survival rates at several budgets, from the same
initialisation and the same mask stream per seed. SenseMode's sensitivities are the
curvature ``g_l`` of :func:`scalelab.nn.block_sensitivities` (non-negative), measured at
that initialisation. Two networks: blocks with branch scales ``1/l`` ("decreasing", Stable
ResNet's square-summable family), whose sensitivities differ across blocks by far more than
their seed-to-seed spread, so SenseMode is a different allocation from uniform; and the
uniform Stable ResNet (``1/sqrt(L)``), whose blocks are alike in distribution at
initialisation, so SenseMode is within a few tens of percent of uniform (a control).

Verdict: see ``CRITERION``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .._progress import track
from ._common import seeds_for, spread
from .registry import Context, Experiment, Outcome, register

MODES = ("uniform", "linear", "sensemode")
ARCHS = ("decreasing", "stable")  # the judged network first; the Stable ResNet is the control
JUDGED = "decreasing"
MIN_SEEDS = 3

CRITERION = (
    "On the network with branch scales 1/l (block sensitivities unequal), with unscaled "
    "masks in training and the mean network at test, over >= 3 seeds: the budget hypothesis "
    "holds when (S) at the smallest budget SenseMode's test accuracy beats uniform's, and (U) "
    "at the largest budget below L uniform beats both linear and SenseMode, each by more than "
    "two standard errors of the seed-paired difference. The Stable ResNet (1/sqrt(L), blocks "
    "alike at initialisation, so SenseMode is nearly uniform) is run with the same rule and "
    "reported, not judged.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(depth=8, width=32, n_train=1000, steps=150, budgets=(2, 6), seeds=2,
                    archs=("decreasing",), sens_batches=2)
    return dict(depth=16, width=128, n_train=1000, steps=300, budgets=(2, 8, 14), seeds=5,
                archs=ARCHS, sens_batches=4)


def _batches(data, seed: int, k: int, n: int = 256) -> list[tuple]:
    import torch

    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(0, data.x_train.shape[0], (n,), generator=g) for _ in range(k)]
    return [(data.x_train[i], data.y_train[i]) for i in rows]


def _model(data, arch: str, width: int, depth: int, drop_probs=0.0, scales=None):
    from ..nn import ResidualMLP

    model = ResidualMLP(data.input_dim, width, depth, 10, mode=arch, drop_probs=drop_probs,
                        scales=scales)
    for block in model.blocks:
        block.scale_by_keep = False  # the paper's convention: unscaled masks, mean network
    return model


def budget_sweep(data, *, arch: str, depth: int, width: int, steps: int, budgets, seeds,
                 sens_batches: int = 4) -> list[dict]:
    """Test accuracy per (seed, mode, budget), plus two references: the no-drop network
    (budget = depth) and the network with every branch removed ("no-blocks", budget 0: input
    and readout layers only, a linear classifier), which bound what the blocks can add."""
    import torch

    from ..nn import block_sensitivities, survival_rates
    from ..train import train_classifier

    records = []
    for seed in track(seeds, f"stochastic-depth-budget ({arch}) seeds"):
        torch.manual_seed(seed)
        init = _model(data, arch, width, depth)
        state = {k: v.clone() for k, v in init.state_dict().items()}
        sens = block_sensitivities(init, _batches(data, seed, sens_batches))
        runs = [("no-drop", float(depth), [1.0] * depth), ("no-blocks", 0.0, [0.0] * depth)]
        for budget in budgets:
            for mode in MODES:
                if mode == "linear" and budget <= (depth - 1) / 2:
                    continue  # below the linear mode's minimum budget
                runs.append((mode, float(budget),
                             survival_rates(depth, budget, mode, sensitivities=sens)))
        for mode, budget, rates in runs:
            model = (_model(data, arch, width, depth, scales=[0.0] * depth) if mode == "no-blocks"
                     else _model(data, arch, width, depth, drop_probs=[1.0 - p for p in rates]))
            model.load_state_dict(state)
            torch.manual_seed(seed)  # the same mask stream for every mode of this seed
            c = train_classifier(model, data, steps=steps, lr=1e-3, optimizer="adam", seed=seed)
            records.append({"arch": arch, "seed": seed, "mode": mode, "budget": budget,
                            "rates": rates, "sensitivities": sens,
                            "test_accuracy": c.test_accuracy,
                            "final_train_loss": c.train_loss[-1]})
    return records


def _paired(records, budget, a: str, b: str) -> dict:
    """Per-seed accuracy(a) - accuracy(b) at ``budget``: mean, standard error, values."""
    acc = {(r["seed"], r["mode"]): r["test_accuracy"] for r in records if r["budget"] == budget}
    seeds = sorted({s for s, _ in acc})
    d = np.array([acc[(s, a)] - acc[(s, b)] for s in seeds])
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return {"mean": float(d.mean()), "se": se, "values": d.tolist(), "seeds": seeds}


def _beats(diff: dict) -> bool:
    """Mean > 0 and more than two standard errors (needs >= 2 seeds)."""
    return bool(diff["mean"] > 0 and not math.isnan(diff["se"]) and diff["mean"] > 2 * diff["se"])


def sensitivity_stability(records) -> dict:
    """Spearman correlation between the seeds' block-sensitivity rankings (every pair), and
    the spread of the sensitivities across blocks (coefficient of variation per seed)."""
    from scipy.stats import spearmanr

    by_seed = {r["seed"]: r["sensitivities"] for r in records}
    pairs = [float(spearmanr(by_seed[a], by_seed[b])[0])
             for a, b in itertools.combinations(sorted(by_seed), 2)]
    cv = [float(np.std(s) / np.mean(s)) for s in by_seed.values()]
    return {"spearman_pairs": pairs, "spearman_mean": float(np.mean(pairs)) if pairs else None,
            "spearman_min": float(min(pairs)) if pairs else None,
            "cv_across_blocks": cv, "min_sensitivity": float(min(map(min, by_seed.values())))}


def summarize(records, budgets, depth: int) -> dict:
    """Mean accuracy per (mode, budget) and the two clauses of the criterion."""
    table = []
    for mode in ("no-drop", "no-blocks") + MODES:
        for budget in sorted({r["budget"] for r in records}):
            accs = [r["test_accuracy"] for r in records if r["mode"] == mode and r["budget"] == budget]
            if accs:
                table.append({"arch": records[0]["arch"], "mode": mode, "budget": budget,
                              "accuracy": float(np.mean(accs)), "n": len(accs),
                              "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None})
    small = float(min(budgets))
    large = float(max(b for b in budgets if (depth - 1) / 2 < b < depth))
    sense_small = _paired(records, small, "sensemode", "uniform")
    uni_lin = _paired(records, large, "uniform", "linear")
    uni_sense = _paired(records, large, "uniform", "sensemode")
    s_ok, u_ok = _beats(sense_small), _beats(uni_lin) and _beats(uni_sense)
    return {"table": table, "small_budget": small, "large_budget": large,
            "sensemode_minus_uniform_small": sense_small,
            "uniform_minus_linear_large": uni_lin, "uniform_minus_sensemode_large": uni_sense,
            "small_budget_clause": s_ok, "large_budget_clause": u_ok,
            "holds": bool(s_ok and u_ok), "sensitivity": sensitivity_stability(records)}


def _describe(arch: str, summ: dict, records, depth: int) -> str:
    rows = {(r["mode"], r["budget"]): r["accuracy"] for r in summ["table"]}
    budgets = sorted({r["budget"] for r in summ["table"] if r["mode"] in MODES})
    table = "; ".join(f"budget {b:g}: " + ", ".join(f"{m} {rows[(m, b)]:.3f}" for m in MODES
                                                    if (m, b) in rows) for b in budgets)
    s_rates = [r["rates"] for r in records if r["mode"] == "sensemode"
               and r["budget"] == summ["small_budget"]]
    a, b, c = (summ["sensemode_minus_uniform_small"], summ["uniform_minus_linear_large"],
               summ["uniform_minus_sensemode_large"])
    st = summ["sensitivity"]
    rho = (f"Spearman between seeds' sensitivity rankings: mean {st['spearman_mean']:.2f}, "
           f"min {st['spearman_min']:.2f}; " if st["spearman_mean"] is not None else "")
    name = {"decreasing": "1/l branches (judged)", "stable": "Stable ResNet 1/sqrt(L) (control)"}
    return (
        f"[{name[arch]}] Mean test accuracy: {table}; no stochastic depth "
        f"{rows[('no-drop', float(depth))]:.3f}; every branch removed (a linear classifier) "
        f"{rows[('no-blocks', 0.0)]:.3f}. Curvature sensitivities: {rho}spread across "
        f"blocks (cv) {np.mean(st['cv_across_blocks']):.2f}; smallest {st['min_sensitivity']:.3g} "
        f"(>= 0). SenseMode's rates at budget {summ['small_budget']:g} spanned "
        f"{min(map(min, s_rates)):.3f}..{max(map(max, s_rates)):.3f} (uniform "
        f"{summ['small_budget'] / depth:.3f}). (S) budget {summ['small_budget']:g}: SenseMode - "
        f"uniform = {a['mean']:+.4f} (s.e. {a['se']:.4f}): "
        f"{'passes' if summ['small_budget_clause'] else 'fails'}. (U) budget "
        f"{summ['large_budget']:g}: uniform - linear = {b['mean']:+.4f} (s.e. {b['se']:.4f}), "
        f"uniform - SenseMode = {c['mean']:+.4f} (s.e. {c['se']:.4f}): "
        f"{'passes' if summ['large_budget_clause'] else 'fails'}.")


def run(ctx: Context) -> Outcome:
    from ..data import load_digits
    from ..plots import plot_budget_accuracy

    sz = _sizes(ctx.quick)
    L = sz["depth"]
    data = load_digits("mnist", n_train=sz["n_train"], seed=ctx.seed)
    seeds = seeds_for(ctx, sz["seeds"])
    records, summaries = {}, {}
    for arch in sz["archs"]:
        records[arch] = budget_sweep(data, arch=arch, depth=L, width=sz["width"],
                                     steps=sz["steps"], budgets=sz["budgets"], seeds=seeds,
                                     sens_batches=sz["sens_batches"])
        summaries[arch] = summarize(records[arch], sz["budgets"], L)
    judged = summaries[JUDGED]
    figures = ["accuracy_vs_budget.png"]
    plot_budget_accuracy([row for s in summaries.values() for row in s["table"]],
                         ctx.path(figures[0]))
    ran = (f"Residual MLPs (width {sz['width']}, {L} blocks; branch scales "
           + " and ".join({"decreasing": "1/l", "stable": "1/sqrt(L)"}[a] for a in sz["archs"])
           + f") on {sz['n_train']} MNIST training digits (1,000 test), Adam lr 1e-3, batch "
           f"128, {sz['steps']} steps, seeds {seeds}, the same initialisation and mask stream "
           f"for every mode within a seed. Stochastic depth in the paper's convention: "
           f"unscaled Bernoulli masks in training, the mean network (branch x p_l) at test. "
           f"Budgets {list(sz['budgets'])} of {L} blocks; uniform, linear (budgets > "
           f"{(L - 1) / 2:g} only) and SenseMode (p_min 0.05; curvature sensitivities g_l at "
           f"initialisation, {sz['sens_batches']} batches of 256).")
    observed = " ".join(_describe(a, summaries[a], records[a], L) for a in sz["archs"])
    observed += (f" The budget hypothesis {'holds' if judged['holds'] else 'does not hold'} "
                 "on the judged network at this scale.")
    if not judged["holds"]:
        why = []
        if not judged["small_budget_clause"]:
            why.append("SenseMode is not better than uniform at the smallest budget beyond "
                       "seed noise")
        if not judged["large_budget_clause"]:
            why.append("uniform is not better than both other modes at the largest budget "
                       "beyond seed noise")
        rows = {(r["mode"], r["budget"]): r["accuracy"] for r in judged["table"]}
        room = rows[("no-drop", float(L))] - rows[("no-blocks", 0.0)]
        observed += (" Why: " + "; ".join(why) + f". On this task the residual blocks add only "
                     f"{room:+.3f} test accuracy over the linear classifier left when every "
                     "branch is removed: what a survival allocation can gain or lose through "
                     "the blocks is of that order, to be set against the standard errors of "
                     "the paired differences above.")
    spreads = {}
    for arch, summ in summaries.items():
        for key in ("sensemode_minus_uniform_small", "uniform_minus_linear_large",
                    "uniform_minus_sensemode_large"):
            d = summ[key]
            spreads[f"{arch}: {key}"] = spread(d["values"], d["seeds"])
    return Outcome(result={"records": records, "summaries": summaries, "sizes": sz,
                           "judged_arch": JUDGED, "criterion": CRITERION},
                   figures=figures, ran=ran, observed=observed, claim_holds=judged["holds"],
                   seeds=seeds, spread=spreads)


EXPERIMENT = register(Experiment(
    name="stochastic-depth-budget",
    description="Stochastic depth: uniform vs linear vs SenseMode survival rates at fixed budgets",
    paper="arXiv:2106.03091",
    claim=("At a fixed budget (expected number of active blocks), uniform survival rates are "
           "best when the budget is large, while a sensitivity-aware mode (SenseMode) is "
           "better when the budget is small (the budget hypothesis)."),
    run=run,
    criterion=CRITERION,
    min_seeds=MIN_SEEDS,
))
