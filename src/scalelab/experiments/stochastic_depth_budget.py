"""Reproduction ``stochastic-depth-budget``: which survival rates are best at a fixed budget?

arXiv 2106.03091: stochastic depth penalises ``(1/2) sum_l p_l (1 - p_l) g_l``; at a fixed
budget ``sum_l p_l`` the uniform mode maximises that regularisation, so the "budget
hypothesis" says uniform survival rates are best at large budgets while at small budgets a
sensitivity-aware mode (SenseMode) is better.

What runs: a Stable ResNet MLP (1/sqrt(L) branches) on a small real-digit training set (an
overfitting regime where regularisation matters), trained with Adam under uniform, linear
(Huang et al.; only for budgets above (L-1)/2) and SenseMode survival rates at several
budgets, from the same initialisation per seed; SenseMode's sensitivities are measured at
that initialisation with :func:`scalelab.nn.block_sensitivities` (METHODS.md's
interpretation: loss increase when a block alone is dropped).

Verdict: the hypothesis shows when, averaged over seeds, SenseMode beats uniform at the
smallest budget and uniform beats both others at the largest budget below L, each by more
than two standard errors of the seed-paired difference.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._registry import Context, Experiment, Outcome, register

MODES = ("uniform", "linear", "sensemode")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(depth=16, width=64, n_train=1000, steps=120, budgets=(4, 10, 14), seeds=2)
    return dict(depth=16, width=128, n_train=1000, steps=400,
                budgets=(2, 4, 6, 8, 10, 12, 14), seeds=4)


def budget_sweep(data, *, depth: int, width: int, steps: int, budgets, seeds) -> list[dict]:
    """Test accuracy per (seed, mode, budget), plus the no-drop network at budget = depth."""
    import torch

    from ..nn import ResidualMLP, block_sensitivities, survival_rates
    from ..train import train_classifier

    records = []
    for seed in track(seeds, "stochastic-depth-budget seeds"):
        torch.manual_seed(seed)
        init = ResidualMLP(data.input_dim, width, depth, 10, mode="stable")
        state = {k: v.clone() for k, v in init.state_dict().items()}
        g = torch.Generator().manual_seed(seed)
        batches = [(data.x_train[i], data.y_train[i]) for i in
                   (torch.randint(0, data.x_train.shape[0], (256,), generator=g) for _ in range(4))]
        sens = block_sensitivities(init, batches)
        runs = [("no-drop", float(depth), [1.0] * depth)]
        for budget in budgets:
            for mode in MODES:
                if mode == "linear" and budget <= (depth - 1) / 2:
                    continue  # below the linear mode's minimum budget
                runs.append((mode, float(budget),
                             survival_rates(depth, budget, mode, sensitivities=sens)))
        for mode, budget, rates in runs:
            model = ResidualMLP(data.input_dim, width, depth, 10, mode="stable",
                                drop_probs=[1.0 - p for p in rates])
            model.load_state_dict(state)
            c = train_classifier(model, data, steps=steps, lr=1e-3, optimizer="adam", seed=seed)
            records.append({"seed": seed, "mode": mode, "budget": budget, "rates": rates,
                            "sensitivities": sens, "test_accuracy": c.test_accuracy,
                            "final_train_loss": c.train_loss[-1]})
    return records


def _paired(records, budget, a: str, b: str) -> tuple[float, float]:
    """Mean and standard error over seeds of accuracy(a) - accuracy(b) at ``budget``."""
    acc = {(r["seed"], r["mode"]): r["test_accuracy"] for r in records if r["budget"] == budget}
    seeds = sorted({s for s, _ in acc})
    d = np.array([acc[(s, a)] - acc[(s, b)] for s in seeds])
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return float(d.mean()), se


def summarize(records, budgets, depth: int) -> dict:
    """Mean accuracy per (mode, budget) and the budget-hypothesis verdict."""
    table = []
    for mode in ("no-drop",) + MODES:
        for budget in sorted({r["budget"] for r in records}):
            accs = [r["test_accuracy"] for r in records if r["mode"] == mode and r["budget"] == budget]
            if accs:
                table.append({"mode": mode, "budget": budget, "accuracy": float(np.mean(accs)),
                              "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0})
    small = float(min(budgets))
    large = float(max(b for b in budgets if b > (depth - 1) / 2 and b < depth))
    sense_small = _paired(records, small, "sensemode", "uniform")
    uni_large = [_paired(records, large, "uniform", m) for m in ("linear", "sensemode")]

    def beats(diff: tuple[float, float]) -> bool:
        mean, se = diff
        return bool(mean > 0 and (math.isnan(se) or mean > 2 * se))

    return {"table": table, "small_budget": small, "large_budget": large,
            "sensemode_minus_uniform_small": sense_small,
            "uniform_minus_linear_large": uni_large[0],
            "uniform_minus_sensemode_large": uni_large[1],
            "holds": bool(beats(sense_small) and all(beats(d) for d in uni_large))}


def _run(ctx: Context) -> Outcome:
    from ..data import load_digits
    from ..plots import plot_budget_accuracy

    sz = _sizes(ctx.quick)
    data = load_digits("mnist", n_train=sz["n_train"], seed=ctx.seed)
    seeds = [ctx.seed + k for k in range(sz["seeds"])]
    records = budget_sweep(data, depth=sz["depth"], width=sz["width"], steps=sz["steps"],
                           budgets=sz["budgets"], seeds=seeds)
    summary = summarize(records, sz["budgets"], sz["depth"])
    figures = ["accuracy_vs_budget.png"]
    plot_budget_accuracy(summary["table"], ctx.path(figures[0]))
    L = sz["depth"]
    ran = (f"Stable ResNet MLP (width {sz['width']}, {L} blocks, 1/sqrt(L) branches) on "
           f"{sz['n_train']} MNIST training digits (1,000 test), Adam lr 1e-3, batch 128, "
           f"{sz['steps']} steps, {len(seeds)} seed(s), same initialisation for every mode "
           f"within a seed; budgets {list(sz['budgets'])} of {L} blocks; uniform, linear "
           f"(budgets > {(L - 1) / 2:g} only) and SenseMode (p_min 0.05, sensitivities = loss "
           "increase when a block alone is dropped, at initialisation, 4 batches of 256).")
    rows = {(r["mode"], r["budget"]): r["accuracy"] for r in summary["table"]}
    table = "; ".join(
        f"budget {b:g}: " + ", ".join(f"{m} {rows[(m, float(b))]:.3f}" for m in MODES
                                      if (m, float(b)) in rows) for b in sz["budgets"])
    s_rates = [r["rates"] for r in records if r["mode"] == "sensemode"
               and r["budget"] == summary["small_budget"]]
    m, se = summary["sensemode_minus_uniform_small"]
    ml, sel = summary["uniform_minus_linear_large"]
    ms, ses = summary["uniform_minus_sensemode_large"]
    observed = (
        f"Mean test accuracy: {table}; no stochastic depth {rows[('no-drop', float(L))]:.3f}. "
        f"At budget {summary['small_budget']:g}: SenseMode - uniform = {m:+.4f} "
        f"(s.e. {se:.4f}); SenseMode's rates spanned {min(map(min, s_rates)):.3f}.."
        f"{max(map(max, s_rates)):.3f}. At budget {summary['large_budget']:g}: uniform - "
        f"linear = {ml:+.4f} (s.e. {sel:.4f}), uniform - SenseMode = {ms:+.4f} (s.e. {ses:.4f}). "
        f"The budget hypothesis {'shows' if summary['holds'] else 'does not show'} at this "
        "scale (differences must exceed two standard errors).")
    return Outcome(result={"records": records, "summary": summary}, figures=figures, ran=ran,
                   observed=observed, claim_holds=summary["holds"])


EXPERIMENT = register(Experiment(
    name="stochastic-depth-budget",
    description="Stochastic depth: uniform vs linear vs SenseMode survival rates at fixed budgets",
    paper="arXiv:2106.03091",
    claim=("At a fixed budget (expected number of active blocks), uniform survival rates are "
           "best when the budget is large, while a sensitivity-aware mode (SenseMode) is "
           "better when the budget is small (the budget hypothesis)."),
    run=_run,
))
