"""Reproduction ``stochastic-pruning``: fine-tuning stochastic masks beats the deterministic
mask it starts from, at equal sparsity, also after thresholding.

arXiv 2110.11804 (Hayou, He, Dziugaite): a stochastic mask keeps weight i with its own
probability p_i; training the p_i on the expected loss, starting from a magnitude, SNIP or
random mask of a trained network, lowers the test error, and thresholding the top p_i gives a
deterministic mask at the same sparsity that still beats the start.

What runs: a ReLU MLP (784-300-100-10 on the 5,000 real MNIST digits in full mode, 64-100-10
on sklearn's digits in quick mode) is trained dense with Adam; at each sparsity and for each
start method, the start mask is computed on the trained weights, the keep-probabilities are
fine-tuned (weights frozen; Concrete estimator, temperature 0.5; expected density projected
to the target after every step), and the thresholded mask is evaluated. Test errors of the
start mask, of the stochastic network (mean over sampled networks) and of the thresholded
mask are recorded per seed.
"""

from __future__ import annotations

from .._progress import track
from ._common import seeds_for, sized, spread
from .registry import Context, Experiment, Outcome, register
from .stochastic_setup import (
    START_METHODS,
    MaskProtocol,
    digits_mlp,
    error,
    finetune_masks,
    masked_error,
    start_masks,
    stochastic_error,
    train_dense,
)

CRITERION = ("For every (start method, sparsity) cell: the thresholded fine-tuned mask's test "
             "error is below its start mask's test error on average over the seeds AND on a "
             "strict majority of the seeds. The claim holds when every cell passes; cells are "
             "reported one by one.")


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(dataset="sklearn-digits", hidden=(100,), sparsities=(0.9, 0.95),
                    dense_steps=300, seeds=2, networks=200,
                    proto=MaskProtocol(steps=150, batch_size=128))
    return dict(dataset="mnist", hidden=(300, 100), sparsities=(0.9, 0.95, 0.98),
                dense_steps=1000, seeds=3, networks=500,
                proto=MaskProtocol(steps=500, batch_size=128))


def _one_seed(sz: dict, seed: int, jobs) -> tuple[list[dict], float]:
    from ..data import load_digits
    from ..prune import threshold_masks_

    data = load_digits(sz["dataset"], seed=seed)
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    dense = digits_mlp(data.input_dim, sz["hidden"], data.num_classes, seed)
    train_dense(dense, x, y, steps=sz["dense_steps"], seed=seed)
    state = {k: v.clone() for k, v in dense.state_dict().items()}
    dense_err = error(dense, xt, yt)
    rows = []
    for start, sparsity in jobs:
        net = digits_mlp(data.input_dim, sz["hidden"], data.num_classes, seed)
        net.load_state_dict(state)
        masks = start_masks(net, start, sparsity, x, y, seed=seed)
        start_err = masked_error(net, masks, xt, yt)
        sm, rec = finetune_masks(net, masks, sparsity, x, y, sz["proto"], seed=seed)
        stoch_err = stochastic_error(net, xt, yt, networks=sz["networks"], per_network=10,
                                     seed=seed)
        rep = threshold_masks_(net, sparsity)
        rows.append({"seed": seed, "start": start, "sparsity": sparsity,
                     "start_error": start_err, "stochastic_error": stoch_err,
                     "threshold_error": error(net, xt, yt), "kept": rep.kept,
                     "total": rep.total, "final_loss": rec.loss[-1],
                     "max_density_error": max(abs(d - rep.kept / rep.total)
                                              for d in rec.density)})
    return rows, dense_err


def judge(records: list[dict], starts, sparsities) -> dict:
    """The fixed criterion, per cell: mean improvement > 0 and > 0 on a strict majority."""
    cells = {}
    for start in starts:
        for s in sparsities:
            rows = [r for r in records if r["start"] == start and r["sparsity"] == s]
            gains = [r["start_error"] - r["threshold_error"] for r in rows]
            wins = sum(g > 0 for g in gains)
            cells[f"{start}@{s:g}"] = {
                "start": start, "sparsity": s, "gains": gains,
                "mean_gain": sum(gains) / len(gains), "wins": wins, "seeds": len(gains),
                "holds": sum(gains) / len(gains) > 0 and 2 * wins > len(gains)}
    return {"cells": cells, "holds": all(c["holds"] for c in cells.values())}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def run(ctx: Context) -> Outcome:
    from ..plots import plot_stochastic_pruning

    sz = _sizes(ctx.quick)
    seeds = seeds_for(ctx, sz["seeds"])
    jobs = [(start, s) for s in sz["sparsities"] for start in START_METHODS]
    records, dense = [], {}
    for seed in track(seeds, "stochastic-pruning seeds", total=len(seeds)):
        rows, dense[seed] = _one_seed(sz, seed, jobs)
        records += rows
    verdict = judge(records, START_METHODS, sz["sparsities"])
    figure = "stochastic_pruning.png"
    plot_stochastic_pruning(records, ctx.path(figure), dense_errors=list(dense.values()))
    spreads = {f"gain {k} (start - thresholded test error)": spread(c["gains"], seeds)
               for k, c in verdict["cells"].items()}
    proto = sz["proto"]
    hidden = "-".join(map(str, sz["hidden"]))
    ran = (f"ReLU MLP (hidden {hidden}) on {sz['dataset']} (seeded stratified split), "
           f"trained dense with Adam (lr 1e-3, {sz['dense_steps']} steps of 128); at sparsities "
           f"{', '.join(f'{s:.0%}' for s in sz['sparsities'])} the start mask (magnitude, SNIP "
           f"on 256 training images, random; global top-k on the trained weights) gets "
           f"stochastic masks (p = {1 - proto.mix:g} m + {proto.mix:g} d) fine-tuned for "
           f"{proto.steps} Adam steps (lr {proto.lr:g}, batch {proto.batch_size}, Concrete "
           f"estimator at temperature {proto.temperature:g}, weights frozen, expected density "
           f"projected to the target after every step), then thresholded to the same "
           f"sparsity. Test error of the stochastic network: mean over {sz['networks']} "
           f"sampled networks (one per 10 test images). Seeds {', '.join(map(str, seeds))}.")
    lines = []
    for s in sz["sparsities"]:
        parts = []
        for start in START_METHODS:
            rows = [r for r in records if r["start"] == start and r["sparsity"] == s]
            parts.append(f"{start} {_mean(r['start_error'] for r in rows):.3f} -> "
                         f"stochastic {_mean(r['stochastic_error'] for r in rows):.3f} -> "
                         f"thresholded {_mean(r['threshold_error'] for r in rows):.3f}")
        lines.append(f"At {s:.0%} (mean test error over seeds): " + "; ".join(parts) + ".")
    lines.append(f"Dense test error {_mean(dense.values()):.3f}.")
    failed = [k for k, c in verdict["cells"].items() if not c["holds"]]
    lines.append("Every cell passes the criterion." if not failed else
                 "Cells that do not pass: " + ", ".join(
                     f"{k} (mean gain {verdict['cells'][k]['mean_gain']:+.3f}, "
                     f"{verdict['cells'][k]['wins']}/{verdict['cells'][k]['seeds']} seeds)"
                     for k in failed) + ".")
    worst = max(r["max_density_error"] for r in records)
    lines.append(f"Expected density stayed within {worst:.1e} of the target during "
                 f"fine-tuning.")
    return Outcome(result={"records": records, "dense_error": dense, "verdict": verdict,
                           "sizes": sz},
                   figures=[figure], ran=ran, observed=" ".join(lines),
                   claim_holds=verdict["holds"], seeds=seeds, spread=spreads,
                   indicative=sized(ctx, True, False))


register(Experiment(
    name="stochastic-pruning",
    description="Stochastic masks fine-tuned from magnitude/SNIP/random masks beat their "
                "start at equal sparsity, also thresholded",
    paper="arXiv 2110.11804",
    claim="Fine-tuning the keep-probabilities of a stochastic pruning mask, started from a "
          "magnitude, SNIP or random mask of a trained network, lowers the test error at the "
          "same sparsity, and the deterministic mask obtained by thresholding the fine-tuned "
          "probabilities still beats the mask it started from.",
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
