"""Model collapse (COLM 2024, arXiv 2404.05090): closed forms vs exact Markov chains and
Monte Carlo simulation."""

import numpy as np
import pytest
from scipy.stats import binom

from scalelab.theory.collapse import (
    collapse_purity,
    deviation_limit,
    entropy_bits,
    max_synthetic_fraction,
    mixed_deviation,
    simulate_collapse,
)


def _zipf(k):
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


def _exact_two_token_chain(p, n, n_real, gens):
    """Exact E||p^(m)||^2 and E||p^(m) - p0||^2 for K = 2 tokens by propagating the law of
    the count of token 0 through the chain (an oracle with no Monte Carlo and no formula)."""
    M = n + n_real
    states = np.arange(M + 1)
    # transition: count' = Bin(n, c/M) + Bin(n_real, p)
    T = np.zeros((M + 1, M + 1))
    real = binom.pmf(np.arange(n_real + 1), n_real, p)
    for c in states:
        syn = binom.pmf(np.arange(n + 1), n, c / M)
        T[c] = np.convolve(syn, real)
    law = np.zeros(M + 1)
    purity, deviation = [], []
    q = states / M
    s_of = q**2 + (1 - q) ** 2
    d_of = 2 * (q - p) ** 2
    # generation 0 is p itself (not a count state): step once by hand
    law = np.convolve(binom.pmf(np.arange(n + 1), n, p), real)
    for _ in range(gens):
        purity.append(law @ s_of)
        deviation.append(law @ d_of)
        law = law @ T
    return np.array(purity), np.array(deviation)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_closed_form_matches_the_exact_chain(n):
    p = 0.3
    purity, _ = _exact_two_token_chain(p, n, 0, 12)
    s0 = p**2 + (1 - p) ** 2
    np.testing.assert_allclose(collapse_purity(np.arange(1, 13), n, s0), purity, rtol=1e-12)


@pytest.mark.parametrize("n,n_real", [(3, 2), (5, 5), (0, 4), (6, 1)])
def test_mixed_deviation_matches_the_exact_chain(n, n_real):
    p = 0.2
    _, dev = _exact_two_token_chain(p, n, n_real, 15)
    s0 = p**2 + (1 - p) ** 2
    np.testing.assert_allclose(mixed_deviation(np.arange(1, 16), n, n_real, s0), dev,
                               rtol=1e-10, atol=1e-15)


def test_closed_form_matches_simulation():
    """Monte Carlo: 4000 chains, K = 30 Zipf tokens, n = 15; |mean - formula| < 4.5 standard
    errors at each checked generation."""
    p0 = _zipf(30)
    s0 = float(p0 @ p0)
    tr = simulate_collapse(p0, 15, 40, reps=4000, seed=1)
    f = collapse_purity(np.arange(41), 15, s0)
    sem = tr.sem("purity")
    for m in (1, 3, 10, 20, 40):
        assert abs(tr.mean_purity[m] - f[m]) < 4.5 * sem[m], m
    assert tr.mean_purity[0] == pytest.approx(s0)


def test_purity_tends_to_one_and_chains_collapse():
    s0 = 0.1
    s = collapse_purity(np.arange(0, 3001), 10, s0)
    assert s[0] == pytest.approx(s0) and np.all(np.diff(s[:200]) > 0) and np.all(np.diff(s) >= 0)
    assert s[-1] == pytest.approx(1.0, abs=1e-12)
    tr = simulate_collapse(_zipf(20), 5, 300, reps=200, seed=0)
    assert np.all(tr.support[:, -1] == 1) and np.allclose(tr.purity[:, -1], 1.0)
    assert np.all(np.diff(tr.support, axis=1) <= 0)  # a lost token never comes back


def test_mixing_keeps_the_deviation_bounded():
    """With N real samples the deviation plateaus at D*, far below total collapse 1 - S_0;
    without them it climbs to 1 - S_0. Monte Carlo tolerance: 4.5 standard errors."""
    p0 = _zipf(30)
    s0 = float(p0 @ p0)
    mixed = simulate_collapse(p0, 40, 150, n_real=10, reps=1000, seed=2)
    pure = simulate_collapse(p0, 50, 150, reps=300, seed=3)
    limit = deviation_limit(40, 10, s0)
    assert limit < 0.1 * (1 - s0)
    tail = mixed.mean_deviation[100:]
    assert np.all(tail < 1.3 * limit)
    assert abs(mixed.mean_deviation[-1] - limit) < 4.5 * mixed.sem("deviation")[-1]
    f = mixed_deviation(np.arange(151), 40, 10, s0)
    sem = mixed.sem("deviation")
    for m in (1, 5, 20, 150):
        assert abs(mixed.mean_deviation[m] - f[m]) < 4.5 * sem[m], m
    assert pure.mean_deviation[-1] > 0.8 * (1 - s0)
    assert deviation_limit(50, 0, s0) == pytest.approx(1 - s0)


def test_synthetic_fraction_formula_and_its_maximum():
    s0, total, tol = 0.05, 100, 0.03
    for lam in (0.0, 0.3, 0.9):
        n = round(lam * total)
        assert deviation_limit(n, total - n, s0) == pytest.approx(
            (1 - s0) / (total * (1 - lam**2) + lam), rel=1e-12)
    lam = max_synthetic_fraction(total, s0, tol)
    assert 0 < lam < 1

    def d(lam_):
        return (1 - s0) / (total * (1 - lam_**2) + lam_)

    assert d(lam) == pytest.approx(tol, rel=1e-9)
    assert d(lam - 0.01) < tol < d(lam + 0.01)
    assert max_synthetic_fraction(total, s0, 1.0) == 1.0
    assert max_synthetic_fraction(total, s0, 1e-4) == 0.0


def test_entropy_of_the_trace():
    assert entropy_bits(np.full(8, 1 / 8)) == pytest.approx(3.0)
    assert entropy_bits(np.array([0.0, 1.0, 0.0])) == 0.0
    tr = simulate_collapse(_zipf(16), 4, 60, reps=50, seed=5)
    p0 = _zipf(16)
    assert tr.entropy[0, 0] == pytest.approx(-(p0 * np.log2(p0)).sum())
    assert np.all(tr.entropy[:, -1] <= tr.entropy[:, 0]) and np.allclose(tr.entropy[:, -1], 0)


def test_same_seed_same_numbers():
    a = simulate_collapse(_zipf(10), 5, 10, n_real=3, reps=5, seed=4)
    b = simulate_collapse(_zipf(10), 5, 10, n_real=3, reps=5, seed=4)
    assert np.array_equal(a.purity, b.purity) and np.array_equal(a.entropy, b.entropy)


@pytest.mark.parametrize("call,match", [
    (lambda: simulate_collapse([0.5, -0.1, 0.6], 3, 2), "p0"),
    (lambda: simulate_collapse([1.0], 3, 2), "p0"),
    (lambda: simulate_collapse([0.5, 0.5], 0, 2), "n \\+ n_real"),
    (lambda: simulate_collapse([0.5, 0.5], 3, -1), "generations"),
    (lambda: collapse_purity(3, 0, 0.5), "n must be"),
    (lambda: collapse_purity(3, 5, 1.5), "s0"),
    (lambda: collapse_purity(-1, 5, 0.5), "m \\(generations\\)"),
    (lambda: deviation_limit(0, 0, 0.5), "n \\+ n_real"),
    (lambda: max_synthetic_fraction(10, 0.5, 0.0), "tol"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
