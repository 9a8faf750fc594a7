"""The judging helpers of the EOC, LOOD, depth-µP, covariance and fine-tuning reproductions,
checked against independent oracles: closed forms, brute force, explicit refits, exact
synthetic data, and the speed-up benchmark's own script and results."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scalelab.experiments import covariance_cleaning as cc
from scalelab.experiments import depth_mup_transfer as dm
from scalelab.experiments import eoc_convergence as ec
from scalelab.experiments import eoc_curves as eu
from scalelab.experiments import eoc_training as et
from scalelab.experiments import lood as lo
from scalelab.experiments import loraplus_finetune as lf

ROOT = Path(__file__).resolve().parents[2]


# --- lood: baselines and the paired bootstrap -------------------------------------------

def test_nn_distance_matches_brute_force():
    X = np.random.default_rng(0).normal(size=(30, 5))
    want = [min(np.linalg.norm(X[i] - X[j]) for j in range(30) if j != i) for i in range(30)]
    np.testing.assert_allclose(lo.nn_distance(X), want, rtol=1e-10)


def test_loo_gp_variance_equals_explicit_refit():
    from scalelab.privacy import DEFAULT_KERNEL, kernel_matrix

    X = np.random.default_rng(1).normal(size=(25, 4))
    K = kernel_matrix(DEFAULT_KERNEL, X)
    s2 = 0.05
    got = lo.loo_gp_variance(K, s2)
    for i in (0, 7, 24):
        rest = np.delete(np.arange(25), i)
        Kr = K[np.ix_(rest, rest)] + s2 * np.eye(24)
        k = K[rest, i]
        assert got[i] == pytest.approx(K[i, i] - k @ np.linalg.solve(Kr, k), rel=1e-8)


def test_paired_bootstrap_is_zero_for_equal_scores_and_positive_for_a_better_one():
    rng = np.random.default_rng(2)
    target = rng.normal(size=80)
    noisy = target + rng.normal(scale=2.0, size=80)
    assert np.all(lo.paired_bootstrap(noisy, noisy, target, rng, n_boot=50) == 0.0)
    diff = lo.paired_bootstrap(target + 0.1 * rng.normal(size=80), noisy, target, rng,
                               n_boot=200)
    assert np.quantile(diff, 0.025) > 0


# --- eoc-convergence: the correction fit ------------------------------------------------

def test_fit_correction_recovers_exact_coefficients():
    ls = np.arange(1, 3001, dtype=float)
    scaled = 7.0 + 3.0 / np.sqrt(ls) - 50.0 / ls
    fit = ec.fit_correction(ls, scaled, 3000)
    assert fit["C"] == pytest.approx(7.0, rel=1e-9)
    assert fit["D"] == pytest.approx(3.0, rel=1e-6) and fit["E"] == pytest.approx(-50.0, rel=1e-6)
    assert fit["from_depth"] == 100.0 and fit["max_abs_residual"] < 1e-9


# --- eoc-curves: the Monte Carlo against closed forms -----------------------------------

def test_mc_moments_match_the_erf_closed_forms():
    z = torch.randn(2**18, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sw, sb, q = 1.7, 0.3, 0.8
    got = eu.mc_moments("erf", sw, sb, q, z)
    # Williams 1997: E[erf(u)^2] = (2/pi) arcsin(2q / (1 + 2q)); erf' = 2/sqrt(pi) e^(-x^2)
    q_out = sb**2 + sw**2 * (2 / math.pi) * math.asin(2 * q / (1 + 2 * q))
    chi = sw**2 * (4 / math.pi) / math.sqrt(1 + 4 * q)
    assert abs(got["q_out"] - q_out) < 5 * got["q_out_se"]
    assert abs(got["chi"] - chi) < 5 * got["chi_se"]
    assert got["chi_se"] < 0.01 * chi


def test_mc_fixed_point_agrees_with_the_theory_and_flags_divergence():
    from scalelab.theory import fixed_point

    z = torch.randn(2**18, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = fixed_point("tanh", 1.2, 0.2).q
    got = eu.mc_fixed_point("tanh", 1.2, 0.2, 1.0, z)
    assert got == pytest.approx(want, rel=0.01)
    # ELU grows linearly: with sigma_w = 2 the variance map has slope ~2 at large q
    assert eu.mc_fixed_point("elu", 2.0, 0.5, 1.0, z) == math.inf


# --- eoc-training and depth-mup-transfer: the verdicts ----------------------------------

def _training_summary(losses: dict):
    return {k: {"mean_loss": float(np.mean(v)), "per_seed_loss": v} for k, v in losses.items()}


def test_eoc_training_judge_needs_every_seed():
    good = {"tanh, EOC": [0.3, 0.4, 0.35], "tanh, ordered (sigma_w=0.5)": [2.3, 2.3, 2.3],
            "tanh, chaotic (sigma_w=2.5)": [2.0, 1.9, 2.1], "relu, EOC (He init)": [1.0, 1.1, 0.9],
            "relu, ordered (sigma_w=1)": [2.3, 2.3, 2.3], "elu, EOC": [0.5, 0.6, 0.4]}
    v = et.judge(_training_summary(good), [0, 1, 2])
    assert v["holds"] and v["best_smooth"] == "tanh, EOC"
    assert v["per_seed_log10_ratios"]["log10_relu_eoc_over_relu_ordered"][0] == pytest.approx(
        math.log10(1.0 / 2.3))
    worse = dict(good, **{"relu, EOC (He init)": [0.2, 1.1, 0.9]})  # one seed beats tanh
    v2 = et.judge(_training_summary(worse), [0, 1, 2])
    assert not v2["checks"]["smooth_eoc_below_relu_eoc"] and not v2["holds"]
    diverged = dict(good, **{"tanh, EOC": [0.3, math.inf, 0.35]})
    assert not et.judge(_training_summary(diverged), [0, 1, 2])["holds"]


def _mup_records(opt_sp: dict, opt_mup: dict, seeds=3):
    """Loss = exp((log10 lr - optimum)^2): a parabola in log10 lr, so the refined optimum is
    exact; every seed the same."""
    recs = []
    for param, opt in (("SP", opt_sp), ("Depth-muP", opt_mup)):
        for depth, o in opt.items():
            for e in np.arange(-4.0, -1.99, 0.25):
                loss = float(np.exp((e - o) ** 2))
                recs.append({"param": param, "depth": depth, "lr": 10**e, "log10_lr": float(e),
                             "loss": loss, "seed_losses": [loss] * seeds})
    return recs


def test_depth_mup_drift_is_exact_on_parabolas():
    depths = (2, 4, 8, 16)
    sp = {d: -2.5 - 0.2 * math.log2(d / 2) for d in depths}  # -0.2 decades per doubling
    mup = {d: -2.9 for d in depths}
    s = dm.summarize(_mup_records(sp, mup))
    assert s["SP"]["drift_log10"] == pytest.approx(-0.6, abs=1e-9)
    assert s["Depth-muP"]["drift_log10"] == pytest.approx(0.0, abs=1e-9)
    assert s["SP"]["drift_log10_per_seed"] == pytest.approx([-0.6] * 3, abs=1e-9)
    assert s["holds"]
    flat = dm.summarize(_mup_records(mup, mup))
    assert not flat["checks"]["sp_drifts"] and not flat["holds"]


# --- covariance-cleaning: the fraction removed, pooling ---------------------------------

def test_removed_fraction_and_pooling():
    bias = [{"detectable": True, "spike": 2.0, "bias_before": 1.0, "bias_after": -0.1},
            {"detectable": True, "spike": 4.0, "bias_before": 1.0, "bias_after": 0.2},
            {"detectable": False, "spike": 1.1, "bias_before": 0.5, "bias_after": 0.5}]
    r = cc.removed_fraction(bias)
    before, after = (0.5 + 0.25) / 2, (0.05 + 0.05) / 2
    assert r["relative_bias_before"] == pytest.approx(before)
    assert r["removed"] == pytest.approx(1 - after / before) and r["smaller_in"] == 2
    runs = [[{"q": 0.5, "m": 1.0, "se": 0.3}], [{"q": 0.5, "m": 3.0, "se": 0.4}]]
    pooled = cc._pool(runs, ("q",), ("m",), ("se",))
    assert pooled == [{"q": 0.5, "m": 2.0, "se": pytest.approx(0.25)}]


# --- loraplus-finetune: the benchmark's protocol, from its cache ------------------------

def _benchmark_module():
    spec = importlib.util.spec_from_file_location("finetune_speedup",
                                                  ROOT / "benchmarks" / "finetune_speedup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoothing_matches_the_benchmark_script():
    bench = _benchmark_module()
    curve = [1.0, 0.8, None, 0.7, 0.75, 0.6]
    assert lf.smooth(curve) == bench.smooth(curve)
    run = {"eval_steps": [25, 50, 75, 100, 125, 150], "eval_loss": curve}
    assert lf.best_smoothed(run) == bench.best_smoothed(run)


def test_protocol_on_the_cache_reproduces_the_benchmark_results():
    cache = ROOT / "benchmarks" / "results" / "finetune_speedup_cache" / "full"
    recorded = json.loads((ROOT / "benchmarks" / "results" / "finetune_speedup.json").read_text())
    res = lf.speedup_protocol(0, [1, 2, 3], cache)  # every run is in the cache: no training
    assert res["best_lora"] == recorded["summary"]["best_lora"]
    assert res["best_loraplus"] == recorded["summary"]["best_loraplus"]
    for got, want in zip(res["evaluation"], recorded["evaluation"], strict=True):
        assert got["seed"] == want["seed"] and got["speedup"] == want["speedup"]
        assert got["lora_best_smoothed"] == pytest.approx(want["lora_best_smoothed"])
        assert got["loraplus_best_smoothed"] == pytest.approx(want["loraplus_best_smoothed"])


def test_cache_match_ignores_fields_only_one_side_has(tmp_path):
    from scalelab.train import FinetuneConfig

    over = {"method": "lora", "lr": 0.002}
    cfg = FinetuneConfig(**lf.SPEEDUP_BASE, **over, seed=5).to_dict()
    folder = tmp_path / (lf._label(over, 5) + "-abc")
    folder.mkdir()
    stored = {**cfg, "a_field_from_an_older_version": 1}
    (folder / "run.json").write_text(json.dumps({"status": "ok", "config": stored, "x": 1}))
    assert lf.find_cached(over, 5, tmp_path)["x"] == 1
    assert lf.cached_run(over, 5, tmp_path)["x"] == 1  # a hit: nothing is trained
    assert lf.find_cached(over, 6, tmp_path) is None  # another seed
    stored["lr"] = 0.003  # a real difference
    (folder / "run.json").write_text(json.dumps({"status": "ok", "config": stored, "x": 1}))
    assert lf.find_cached(over, 5, tmp_path) is None
    (folder / "run.json").write_text(json.dumps({"status": "interrupted", "config": cfg}))
    assert lf.find_cached(over, 5, tmp_path) is None


# --- the figures these reproductions draw accept their JSON records -------------------

def test_new_figures_accept_json_records(tmp_path):
    from scalelab._utils import to_jsonable
    from scalelab.plots import (
        plot_cleaner_comparison,
        plot_correlation_convergence,
        plot_lood_vs_empirical,
        plot_loss_vs_lr,
        plot_lr_transfer,
        plot_output_fields,
        plot_speedup_protocol,
    )

    sweep = to_jsonable([{"label": a, "lr": lr, "mean_loss": v, "seed_losses": [v, v * 1.1]}
                         for a in ("x", "y") for lr, v in ((1e-3, 0.5), (1e-2, math.inf))])
    assert plot_loss_vs_lr(sweep, tmp_path / "a.png").stat().st_size > 1000
    fields = {"flat": np.zeros((8, 8)), "ramp": np.outer(np.ones(8), np.linspace(-1, 1, 8))}
    assert plot_output_fields(fields, tmp_path / "b.png", symmetric=True).stat().st_size > 1000
    ls = np.arange(1, 101, dtype=float)
    rec = {"relu": {"depth": ls.tolist(), "gap": (40 / ls**2).tolist(), "power": 2,
                    "constant": 44.4, "fit": {"C": 44.0, "D": 1.0, "E": 2.0, "from_depth": 3.0}}}
    assert plot_correlation_convergence(rec, tmp_path / "c.png").stat().st_size > 1000
    pts = [{"lood": float(i + 1), "nn_distance": 1.0 + i, "gp_variance": 0.1 * (i + 1),
            "empirical_kl": float(i + 2)} for i in range(10)]
    assert plot_lood_vs_empirical(pts, tmp_path / "d.png", y_key="empirical_kl",
                                  x_keys=("lood", "nn_distance", "gp_variance"),
                                  rhos={"lood": [0.9, 0.8]}).stat().st_size > 1000
    mup = to_jsonable(_mup_records({2: -2.5, 4: -2.6}, {2: -2.9, 4: -2.9}))
    assert plot_lr_transfer(mup, tmp_path / "e.png",
                            optima={"SP": {2: -2.5}}).stat().st_size > 1000
    cl = [{"q": q, "method": m, "frobenius_mean": 1 + q, "risk_ratio_mean": 1 + q * k,
           "frobenius_sem": 0.1, "risk_ratio_sem": 0.05}
          for q in (0.25, 0.5) for m, k in (("sample", 5), ("rie", 0.2))]
    assert plot_cleaner_comparison(cl, tmp_path / "f.png").stat().st_size > 1000
    curve = {"steps": [25, 50, 75], "eval_loss": [1.0, None, 0.8]}
    proto = {"tuning": [{"config": "LoRA lr 0.002", "best_smoothed": 0.7},
                        {"config": "LoRA+ lr 0.0005 ratio 4 head 0.003", "best_smoothed": None}],
             "evaluation": [{"seed": 1, "lora_curve": curve, "loraplus_curve": curve,
                             "lora_best_smoothed": 0.8, "speedup": 0.0}],
             "best_lora": "LoRA lr 0.002", "best_loraplus": "LoRA+ lr 0.0005 ratio 4 head 0.003",
             "tune_seed": 0}
    assert plot_speedup_protocol(proto, tmp_path / "g.png").stat().st_size > 1000


def test_run_cache_prefers_the_committed_cache_of_a_checkout(tmp_path, monkeypatch):
    from scalelab.experiments._common import run_cache

    monkeypatch.setenv("SCALELAB_CACHE", str(tmp_path))
    committed = ROOT / "benchmarks" / "results" / "loraplus_width_cache" / "full"
    assert committed.is_dir()  # this checkout carries it
    assert run_cache("loraplus_width_cache/full", "loraplus-width/runs") == committed
    assert run_cache("no_such_cache/full", "x/runs") == tmp_path / "x" / "runs"
