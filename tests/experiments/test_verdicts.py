"""The verdicts of stochastic-depth-budget, pruning-at-init, data-pruning and
width-depth-commute are computed from the numbers by their stated criteria: synthetic
per-seed records, each built to pass or to fail one clause."""

import math

import numpy as np
import pytest

from scalelab.experiments import data_pruning, pruning_at_init, stochastic_depth_budget
from scalelab.experiments import width_depth_commute as wdc


def _sd_records(small_gain, uni_lin, uni_sense, seeds=(0, 1, 2), depth=16):
    rows = []
    for k, s in enumerate(seeds):
        noise = 0.0005 * (k - 1)  # a little seed-to-seed spread in the differences
        acc = {(2.0, "uniform"): 0.80, (2.0, "sensemode"): 0.80 + small_gain + noise,
               (14.0, "uniform"): 0.85, (14.0, "linear"): 0.85 - uni_lin + noise,
               (14.0, "sensemode"): 0.85 - uni_sense - noise,
               (8.0, "uniform"): 0.84, (8.0, "linear"): 0.84, (8.0, "sensemode"): 0.84,
               (16.0, "no-drop"): 0.86, (0.0, "no-blocks"): 0.79}
        for (budget, mode), a in acc.items():
            rows.append({"arch": "decreasing", "seed": s, "mode": mode, "budget": budget,
                         "rates": [budget / depth] * depth, "test_accuracy": a,
                         "sensitivities": list(np.linspace(1.0, 0.1, depth) * (1 + 0.01 * k))})
    return rows


def test_budget_hypothesis_needs_both_clauses_beyond_two_standard_errors():
    budgets = (2, 8, 14)
    ok = stochastic_depth_budget.summarize(_sd_records(0.01, 0.01, 0.01), budgets, 16)
    assert ok["holds"] and ok["small_budget_clause"] and ok["large_budget_clause"]
    assert ok["sensitivity"]["spearman_min"] == pytest.approx(1.0)
    small_fails = stochastic_depth_budget.summarize(_sd_records(-0.01, 0.01, 0.01), budgets, 16)
    assert not small_fails["holds"] and small_fails["large_budget_clause"]
    # uniform beats linear but ties SenseMode (within noise) at the large budget: fails
    tie = stochastic_depth_budget.summarize(_sd_records(0.01, 0.01, 0.0), budgets, 16)
    assert not tie["holds"] and tie["small_budget_clause"] and not tie["large_budget_clause"]
    # a single seed has no standard error: nothing can be beaten "beyond noise"
    one = stochastic_depth_budget.summarize(_sd_records(0.01, 0.01, 0.01, seeds=(0,)), budgets, 16)
    assert not one["holds"]


def _prune_records(cand, base, dense=0.9, seeds=(0, 1, 2)):
    rows = []
    for k, s in enumerate(seeds):
        rows.append({"config": "dense, EOC init", "sparsity": 0.0, "seed": s, "accuracy": dense})
        for sp, c, b in zip((0.9, 0.95), cand, base, strict=True):
            rows.append({"config": "EOC + SNIP + rescaling", "sparsity": sp, "seed": s,
                         "accuracy": c + 0.01 * k})
            rows.append({"config": "EOC + SNIP", "sparsity": sp, "seed": s, "accuracy": b})
    return rows


def test_pruning_clause_needs_a_trainable_dense_net_a_real_gain_and_no_loss():
    chance = 0.1
    ok = pruning_at_init.judge(_prune_records((0.8, 0.5), (0.2, 0.1)), "mlp", chance)
    assert ok["holds"] and ok["wins_at"] == [0.9, 0.95]
    assert ok["per_sparsity"][0.9]["gain_mean"] == pytest.approx(0.61)
    # the dense reference does not train: the contrast is not about pruning
    assert not pruning_at_init.judge(_prune_records((0.8, 0.5), (0.2, 0.1), dense=0.3), "mlp",
                                     chance)["holds"]
    # a gain that leaves the candidate untrained (< chance + 0.3) is no win
    assert not pruning_at_init.judge(_prune_records((0.35, 0.3), (0.1, 0.1)), "mlp",
                                     chance)["holds"]
    # worse than the baseline by more than 0.02 somewhere: fails
    assert not pruning_at_init.judge(_prune_records((0.8, 0.2), (0.2, 0.3)), "mlp",
                                     chance)["holds"]


def _dp_runs(gaps, cal_gaps, seeds=(0, 1, 2)):
    rows = []
    for k, s in enumerate(seeds):
        for keep, g, c in zip((0.05, 0.1, 0.3, 0.5), gaps, cal_gaps, strict=True):
            jitter = 0.002 * (k - 1)
            rows += [{"seed": s, "keep": keep, "strategy": "random", "accuracy": 0.8},
                     {"seed": s, "keep": keep, "strategy": "el2n", "accuracy": 0.8 - g + jitter},
                     {"seed": s, "keep": keep, "strategy": "calibrated", "accuracy": 0.8 - c}]
    return rows


def test_data_pruning_claim_is_judged_at_every_keep_up_to_30_percent():
    holds = data_pruning.judge_claim(_dp_runs((0.3, 0.2, 0.05, -0.02), (0.1, 0.05, 0.02, -0.01)))
    assert holds["claim_holds"] and holds["high_keeps"] == [0.05, 0.1, 0.3]
    # EL2N better than random at keep 0.3: the claim as written fails, crossover ~ 0.2
    v = data_pruning.judge_claim(_dp_runs((0.3, 0.2, -0.02, -0.02), (0.1, 0.05, -0.01, -0.01)))
    assert not v["claim_holds"] and v["el2n_below_random_at"] == [0.05, 0.1]
    # interpolated between keep 0.1 (EL2N - random = -0.2) and 0.3 (+0.02)
    assert v["crossover_keep"] == pytest.approx(0.1 + 0.2 * 0.2 / 0.22)
    # no recovery by calibration: fails
    assert not data_pruning.judge_claim(_dp_runs((0.3, 0.2, 0.05, 0.0),
                                                 (0.3, 0.2, 0.05, 0.0)))["claim_holds"]
    assert data_pruning.crossover({0.1: -0.1, 0.2: -0.05}) is None


def test_width_depth_debiased_bias_is_unbiased_for_a_known_mean():
    # Gram matrices = target + offset + Gaussian noise: the debiased squared distance must
    # recover ||offset||^2 (mean over 40 independent replicates within 4 standard errors)
    rng = np.random.default_rng(0)
    target, offset = np.eye(3), np.full((3, 3), 0.05)
    sq = []
    for _ in range(40):
        grams = target + offset + 0.5 * rng.normal(size=(200, 3, 3))
        sq.append(wdc._sq_bias(grams, target))
    sq = np.array(sq)
    assert abs(sq.mean() - 9 * 0.05**2) < 4 * sq.std(ddof=1) / math.sqrt(sq.size)
    stats = wdc.bias_stats(target + 0.5 * rng.normal(size=(400, 3, 3)), target, 1.0, rng)
    assert not stats["resolved"] and stats["sq_se"] > 0  # no bias: not resolved
