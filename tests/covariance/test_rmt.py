"""Marchenko-Pastur and the BBP spike relation: closed forms against Monte Carlo."""

import math

import numpy as np
import pytest
from scipy import integrate

from scalelab.covariance import (
    bbp_threshold,
    debias_top_eigenvalue,
    marchenko_pastur_density,
    marchenko_pastur_edges,
    simulate_spiked_samples,
    spiked_top_eigenvalue,
)


def _top_eigenvalues(n, t, spike, reps, seed):
    rng = np.random.default_rng(seed)
    return np.array([np.linalg.norm(simulate_spiked_samples(n, t, spike, seed=rng), 2) ** 2 / t
                     for _ in range(reps)])


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9, 1.0, 2.5])
def test_mp_density_integrates_to_one_minus_the_atom(q):
    lo, hi = marchenko_pastur_edges(q)
    mass, _ = integrate.quad(lambda x: marchenko_pastur_density(x, q), lo, hi, limit=200)
    # For q > 1 a point mass 1 - 1/q sits at 0, outside the continuous density.
    assert mass == pytest.approx(min(1.0, 1.0 / q), abs=1e-6)
    mean, _ = integrate.quad(lambda x: x * marchenko_pastur_density(x, q), lo, hi, limit=200)
    assert mean == pytest.approx(1.0, abs=1e-6)  # E[lambda] = 1; the atom at 0 adds nothing


def test_mp_density_matches_null_spectrum():
    # Pure noise, N=400, T=800: sample eigenvalues follow the MP law (KS distance small).
    rng = np.random.default_rng(0)
    n, t = 400, 800
    x = rng.standard_normal((t, n))
    lam = np.sort(np.linalg.eigvalsh(x.T @ x / t))
    q = n / t
    lo, hi = marchenko_pastur_edges(q)
    cdf = np.array([integrate.quad(lambda s: marchenko_pastur_density(s, q), lo, v)[0]
                    for v in lam[::20]])
    emp = (np.arange(0, n, 20) + 0.5) / n
    assert np.max(np.abs(cdf - emp)) < 0.02
    assert lam[-1] < hi * 1.05 and lam[0] > lo * 0.9
    assert marchenko_pastur_density(hi + 0.1, q) == 0.0 and marchenko_pastur_density(lo / 2, q) == 0.0


@pytest.mark.parametrize("q,spike", [(0.5, 3.0), (0.25, 6.0), (2.0, 5.0)])
def test_bbp_relation_matches_monte_carlo(q, spike):
    # Tolerance: 4% relative on the mean of 4 draws at N=400 (fluctuations ~ l sqrt(2/T)).
    n = 400
    t = round(n / q)
    tops = _top_eigenvalues(n, t, spike, reps=4, seed=1)
    predicted = spiked_top_eigenvalue(spike, q)
    assert predicted > spike  # an overestimate
    assert tops.mean() == pytest.approx(predicted, rel=0.04)
    # De-biasing the Monte Carlo eigenvalues recovers the spike (same tolerance).
    assert np.mean(debias_top_eigenvalue(tops, q)) == pytest.approx(spike, rel=0.05)
    assert abs(np.mean(debias_top_eigenvalue(tops, q)) - spike) < abs(tops.mean() - spike)


@pytest.mark.parametrize("q", [0.5, 1.0])
def test_below_threshold_sticks_to_the_bulk_edge(q):
    n = 400
    t = round(n / q)
    spike = 1.0 + 0.5 * math.sqrt(q)  # below 1 + sqrt q
    edge = (1 + math.sqrt(q)) ** 2
    assert spiked_top_eigenvalue(spike, q) == pytest.approx(edge)
    tops = _top_eigenvalues(n, t, spike, reps=4, seed=2)
    # Tracy-Widom fluctuations at N=400 are a few percent of the edge.
    assert tops.mean() == pytest.approx(edge, rel=0.05)
    # ...and a spike that would predict well above the edge is clearly separated from it.
    assert spiked_top_eigenvalue(3 * bbp_threshold(q), q) > 1.3 * edge


@pytest.mark.parametrize("q", [0.05, 0.5, 1.0, 3.0])
def test_inverse_formula_inverts_the_forward_one(q):
    thr = bbp_threshold(q)
    spikes = thr + np.array([1e-6, 0.01, 0.5, 2.0, 10.0, 100.0])
    lam = spiked_top_eigenvalue(spikes, q)
    np.testing.assert_allclose(debias_top_eigenvalue(lam, q), spikes, rtol=1e-9, atol=1e-5)
    # ...and the forward of the inverse, for sample eigenvalues above the edge.
    edge = thr**2
    lams = edge + np.array([0.01, 1.0, 7.0, 50.0])
    np.testing.assert_allclose(spiked_top_eigenvalue(debias_top_eigenvalue(lams, q), q), lams,
                               rtol=1e-12)
    assert debias_top_eigenvalue(edge, q) == pytest.approx(thr)  # continuous at the edge


def test_below_edge_policy():
    q = 0.5
    edge = (1 + math.sqrt(q)) ** 2
    assert debias_top_eigenvalue(edge * 0.9, q) == pytest.approx(1 + math.sqrt(q))
    assert math.isnan(debias_top_eigenvalue(edge * 0.9, q, below_edge="nan"))
    out = debias_top_eigenvalue([edge * 0.5, 2 * edge], q, below_edge="nan")
    assert math.isnan(out[0]) and out[1] > 1 + math.sqrt(q)
    assert isinstance(debias_top_eigenvalue(3.0, q), float)


@pytest.mark.parametrize("call,match", [
    (lambda: debias_top_eigenvalue(3.0, 0.0), "q must be"),
    (lambda: debias_top_eigenvalue(3.0, -1), "q must be"),
    (lambda: debias_top_eigenvalue(3.0, math.inf), "q must be"),
    (lambda: debias_top_eigenvalue(3.0, float("nan")), "q must be"),
    (lambda: debias_top_eigenvalue(0.0, 0.5), "top_eigenvalue must be"),
    (lambda: debias_top_eigenvalue(-2.0, 0.5), "top_eigenvalue must be"),
    (lambda: debias_top_eigenvalue(float("nan"), 0.5), "top_eigenvalue must be"),
    (lambda: debias_top_eigenvalue("big", 0.5), "top_eigenvalue must be"),
    (lambda: debias_top_eigenvalue(3.0, 0.5, below_edge="zero"), "below_edge must be one of"),
    (lambda: spiked_top_eigenvalue(-1.0, 0.5), "spike must be"),
    (lambda: marchenko_pastur_edges(0), "q must be"),
])
def test_errors_are_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)
