"""Reproduction ``data-pruning``: score-based pruning against random pruning at high
compression, and calibration by random exploration (arXiv 2302.06960).

Per seed: EL2N scores (a small MLP, a few epochs, averaged over inits) on real MNIST
digits; for each keep fraction, a fresh MLP is trained for a fixed number of steps on the
subset kept by random pruning, by EL2N (keep the hardest) and by EL2N calibrated with random
exploration (a share ``alpha`` of the budget drawn at random), and scored on the held-out
digits. The claim is judged as written (every keep <= 30%), over seeds; the crossover keep
fraction, where EL2N stops losing to random, is reported.
"""

from __future__ import annotations

import math

import numpy as np

from .._progress import track
from ._common import seeds_for, spread
from .registry import Context, Experiment, Outcome, register

ALPHA = 0.5
TOL = 0.01  # accuracy differences below one point count as ties
HIGH = 0.3  # "high compression": keep <= 30%
MIN_SEEDS = 3
STRATEGIES = ("random", "el2n", "calibrated")

CRITERION = (
    "Over >= 3 seeds (each with its own EL2N scores, subsets and initialisations), at every "
    "keep fraction <= 0.3 of the grid: (a) EL2N's mean test accuracy is below random "
    "pruning's by more than 1 point and by more than two standard errors of the seed-paired "
    "difference, and (b) the calibrated selection (random exploration, alpha = 0.5) recovers "
    "at least half of that loss (its mean gap to random at most half of EL2N's). The "
    "crossover keep fraction (where the mean EL2N - random difference changes sign, "
    "interpolated linearly) is reported, not judged.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(n_train=1500, keeps=(0.05, 0.1, 0.3), seeds=1, steps=120,
                    score_epochs=6, score_runs=2)
    return dict(n_train=None, keeps=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), seeds=4,
                steps=300, score_epochs=10, score_runs=3)


def _subset_accuracy(data, idx: np.ndarray, steps: int, seed: int) -> float:
    import torch

    from ..data import ArrayDataset
    from ..train import train_classifier

    sub = ArrayDataset(data.x_train[idx], data.y_train[idx], data.x_test, data.y_test,
                       data.num_classes, data.name)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(data.input_dim, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, data.num_classes))
    return train_classifier(model, sub, steps=steps, lr=1e-3, batch_size=64, optimizer="adam",
                            seed=seed).test_accuracy


RULES = {"random": dict(method="random"), "el2n": dict(method="top"),
         "calibrated": dict(method="top", calibration="random-exploration", alpha=ALPHA)}


def pruning_runs(data, scores: np.ndarray, keeps, seed: int, steps: int) -> list[dict]:
    """Test accuracy per (keep fraction, strategy) for one seed (subsets and init)."""
    from ..prune.data import select_subset

    records = []
    for keep in keeps:
        for name, rule in RULES.items():
            idx = select_subset(scores, keep, seed=seed, **rule)
            records.append({"seed": seed, "keep": keep, "strategy": name, "kept": len(idx),
                            "accuracy": _subset_accuracy(data, idx, steps, seed)})
    return records


def curve(runs: list[dict]) -> list[dict]:
    """Mean accuracy per (keep, strategy) over seeds; the sd only with several seeds."""
    out = []
    for keep in sorted({r["keep"] for r in runs}):
        for name in STRATEGIES:
            rs = [r for r in runs if r["keep"] == keep and r["strategy"] == name]
            accs = [r["accuracy"] for r in rs]
            out.append({"keep": keep, "strategy": name, "kept": rs[0]["kept"], "n": len(accs),
                        "accuracy_mean": float(np.mean(accs)),
                        "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                        "accuracies": accs})
    return out


def crossover(gap: dict[float, float]) -> float | None:
    """The keep fraction where the mean EL2N - random difference first turns from < 0 to
    >= 0 going up the grid (linear interpolation); None if it never changes sign."""
    keeps = sorted(gap)
    for a, b in zip(keeps, keeps[1:], strict=False):
        if gap[a] < 0 <= gap[b]:
            return float(a + (b - a) * (-gap[a]) / (gap[b] - gap[a]))
    return None


def judge(records: list[dict], high: float = HIGH, tol: float = TOL) -> dict:
    """The earlier, weaker reading of the claim, from mean accuracies (``records`` with
    ``keep``, ``strategy``, ``accuracy_mean``): EL2N below random at the smallest keep
    fraction, and the calibrated subset recovering at least half of the lost accuracy
    wherever EL2N loses at keep <= ``high``. Reported beside the verdict, not judged: the
    verdict is :func:`judge_claim`'s."""
    acc = {(r["keep"], r["strategy"]): r["accuracy_mean"] for r in records}
    keeps = sorted({r["keep"] for r in records})
    gap = {k: acc[(k, "random")] - acc[(k, "el2n")] for k in keeps}
    gap_cal = {k: acc[(k, "random")] - acc[(k, "calibrated")] for k in keeps}
    losing = [k for k in keeps if k <= high and gap[k] > tol]
    below_at_extreme = gap[keeps[0]] > tol
    recovered = bool(losing) and all(gap_cal[k] <= gap[k] / 2 for k in losing)
    return {"gap_el2n": gap, "gap_calibrated": gap_cal, "el2n_below_random_at": losing,
            "el2n_below_random_at_smallest_keep": below_at_extreme,
            "calibration_recovers_half": recovered,
            "claim_holds": bool(below_at_extreme and recovered)}


def judge_claim(runs: list[dict], high: float = HIGH, tol: float = TOL) -> dict:
    """The criterion, from the per-seed runs (see ``CRITERION``)."""
    acc = {(r["seed"], r["keep"], r["strategy"]): r["accuracy"] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    keeps = sorted({r["keep"] for r in runs})
    per = {}
    for k in keeps:
        loss = np.array([acc[(s, k, "random")] - acc[(s, k, "el2n")] for s in seeds])
        loss_cal = np.array([acc[(s, k, "random")] - acc[(s, k, "calibrated")] for s in seeds])
        se = float(loss.std(ddof=1) / math.sqrt(loss.size)) if loss.size > 1 else math.nan
        below = bool(loss.mean() > tol and (math.isnan(se) or loss.mean() > 2 * se))
        per[k] = {"random_minus_el2n": loss.tolist(), "mean": float(loss.mean()), "se": se,
                  "random_minus_calibrated": loss_cal.tolist(),
                  "mean_calibrated": float(loss_cal.mean()), "el2n_below": below,
                  # where EL2N does not lose, calibration must not lose either
                  "recovers_half": bool(loss_cal.mean() <= max(float(loss.mean()), 0.0) / 2)}
    high_keeps = [k for k in keeps if k <= high]
    below_all = all(per[k]["el2n_below"] for k in high_keeps)
    recovered = all(per[k]["recovers_half"] for k in high_keeps)
    return {"seeds": seeds, "per_keep": per, "high_keeps": high_keeps,
            "el2n_below_random_at": [k for k in keeps if per[k]["el2n_below"]],
            "el2n_below_at_every_high_keep": bool(below_all),
            "calibration_recovers_half_at_every_high_keep": bool(recovered),
            "crossover_keep": crossover({k: -per[k]["mean"] for k in keeps}),
            "claim_holds": bool(below_all and recovered)}


def run(ctx: Context) -> Outcome:
    from ..data import load_digits
    from ..plots import plot_data_pruning_accuracy
    from ..prune.data import score_examples

    sz = _sizes(ctx.quick)
    data = load_digits("mnist", n_train=sz["n_train"], seed=ctx.seed)
    seeds = seeds_for(ctx, sz["seeds"])
    runs = []
    for seed in track(seeds, "data-pruning seeds"):
        scores = score_examples(data, "el2n", epochs=sz["score_epochs"], runs=sz["score_runs"],
                                seed=1000 * seed)["el2n"]
        runs += pruning_runs(data, scores, sz["keeps"], seed, sz["steps"])
    records = curve(runs)
    verdict = judge_claim(runs)
    weaker = judge(records)
    plot_data_pruning_accuracy(records, ctx.path("accuracy_vs_keep.png"), high=HIGH,
                               crossover=verdict["crossover_keep"])

    acc = {(r["keep"], r["strategy"]): r["accuracy_mean"] for r in records}
    table = "; ".join(f"keep {k:g}: random {acc[(k, 'random')]:.3f}, EL2N {acc[(k, 'el2n')]:.3f}, "
                      f"calibrated {acc[(k, 'calibrated')]:.3f}" for k in sz["keeps"])
    per = verdict["per_keep"]
    gaps = ", ".join(f"{k:g}: {per[k]['mean']:+.3f}"
                     + ("" if math.isnan(per[k]["se"]) else f" (s.e. {per[k]['se']:.3f})")
                     for k in sz["keeps"])
    lines = [f"Mean test accuracy over {len(seeds)} seed(s) — {table}.",
             f"Random - EL2N per keep: {gaps}."]
    below = verdict["el2n_below_random_at"]
    lines.append("EL2N (keep the hardest) is below random beyond the tolerance at keep "
                 + (", ".join(f"{k:g}" for k in below) if below else "no fraction") + ".")
    cross = verdict["crossover_keep"]
    lines.append(f"Crossover (EL2N stops losing to random): keep ~ {cross:.3g}." if cross is not
                 None else "No crossover on this grid (the sign of random - EL2N never turns).")
    lines.append("Calibration (alpha = 0.5) recovers at least half of the loss at every keep "
                 "<= 0.3: " + ("yes" if verdict["calibration_recovers_half_at_every_high_keep"]
                               else "no") + ".")
    lines.append("The earlier, weaker reading (EL2N below random at the smallest keep only, "
                 "recovery where it loses; reported, not judged) "
                 + ("holds." if weaker["claim_holds"] else "does not hold."))
    if not verdict["el2n_below_at_every_high_keep"]:
        fails = [k for k in verdict["high_keeps"] if not per[k]["el2n_below"]]
        lines.append("As written (below random at every keep <= 0.3) the claim does not hold "
                     f"here: at keep {', '.join(f'{k:g}' for k in fails)} EL2N is not below "
                     "random beyond seed noise; on this digit set the high-compression regime "
                     "where score-based pruning loses starts "
                     + (f"below keep ~ {cross:.2g}." if cross is not None else
                        "outside the grid."))
    ran = (f"MNIST ({len(data.y_train)} train / {len(data.y_test)} test digits), seeds {seeds}. "
           f"Per seed: EL2N from a 256-wide MLP after {sz['score_epochs']} epochs, averaged "
           f"over {sz['score_runs']} inits; per keep fraction {list(sz['keeps'])} and strategy, "
           f"a 128-wide MLP trained {sz['steps']} Adam steps (batch 64, lr 1e-3). Calibrated = "
           f"random exploration with alpha={ALPHA} (docs/data_pruning.md, interpretation).")
    spreads = {f"random - EL2N @ keep {k:g}": spread(per[k]["random_minus_el2n"], seeds)
               for k in verdict["high_keeps"]}
    spreads.update({f"random - calibrated @ keep {k:g}": spread(per[k]["random_minus_calibrated"],
                                                                seeds)
                    for k in verdict["high_keeps"]})
    return Outcome(
        result={"records": records, "runs": runs, "alpha": ALPHA, "tolerance": TOL, **verdict,
                "weaker_reading": weaker,
                "n_train": len(data.y_train), "n_test": len(data.y_test)},
        figures=["accuracy_vs_keep.png"], ran=ran, observed=" ".join(lines),
        claim_holds=verdict["claim_holds"], seeds=seeds, spread=spreads)


register(Experiment(
    name="data-pruning",
    description="Score-based (EL2N) vs random data pruning across keep fractions, and calibration",
    paper="arXiv 2302.06960",
    claim=("At high compression (keeping <= 30% of the data) score-based pruning (EL2N, keep the "
           "hardest) falls below random pruning, and calibrating it with random exploration "
           "recovers the loss."),
    run=run,
    criterion=CRITERION,
    min_seeds=MIN_SEEDS,
))
