"""Classic cleaners: clipping, Ledoit-Wolf (vs scikit-learn), RIE (vs the oracle), helpers."""

import math

import numpy as np
import pytest

from scalelab.covariance import (
    CLEANING_METHODS,
    clean_correlation,
    is_correlation_matrix,
    marchenko_pastur_edges,
    min_variance_weights,
    out_of_sample_risk_ratio,
    portfolio_risk,
    project_to_correlation,
    rie_eigenvalues,
    sample_correlation,
    simulate_factor_model,
)


def _factor_draw(n=100, t=250, seed=0):
    c, x = simulate_factor_model(n, t, seed=seed)
    return c, x, sample_correlation(x)


def test_simulated_factor_model_has_the_stated_correlation():
    c, x = simulate_factor_model(30, 40000, n_factors=4, seed=3)
    assert is_correlation_matrix(c)
    assert np.linalg.eigvalsh(c)[0] > 0
    # With T >> N the sample correlation converges to the truth (sampling sd ~ 1/sqrt(T) = 0.005).
    assert np.max(np.abs(sample_correlation(x) - c)) < 0.03


def test_clipping_keeps_trace_and_changes_only_bulk_eigenvalues():
    _, _, s = _factor_draw(n=100, t=200, seed=1)
    t = 200
    out = clean_correlation(s, t, "clip")
    assert np.trace(out) == pytest.approx(100.0, abs=1e-9)
    lam, vec = np.linalg.eigh(s)
    _, edge = marchenko_pastur_edges(100 / t)
    above = lam > edge
    assert 1 <= above.sum() < 100
    # Every sample eigenvector stays an eigenvector; eigenvalues above the edge are unchanged,
    # the bulk ones all become their mean.
    new = np.einsum("ik,ij,jk->k", vec, out, vec)
    np.testing.assert_allclose(out @ vec, vec * new, atol=1e-10)
    np.testing.assert_allclose(new[above], lam[above], rtol=1e-12)
    np.testing.assert_allclose(new[~above], lam[~above].mean(), rtol=1e-10)
    assert np.ptp(lam[~above]) > 0.5  # the bulk really was spread before


def test_ledoit_wolf_matches_scikit_learn():
    from sklearn.covariance import LedoitWolf

    _, x, s = _factor_draw(n=40, t=60, seed=2)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    expected = LedoitWolf().fit(z).covariance_
    out = clean_correlation(s, 60, "ledoit-wolf", samples=x)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert is_correlation_matrix(out)
    shrink = LedoitWolf().fit(z).shrinkage_
    assert 0 < shrink < 1
    np.testing.assert_allclose(out, (1 - shrink) * s + shrink * np.eye(40), atol=1e-12)


def test_ledoit_wolf_needs_matching_samples():
    _, x, s = _factor_draw(n=20, t=50, seed=3)
    with pytest.raises(ValueError, match="samples is required for method='ledoit-wolf'"):
        clean_correlation(s, 50, "ledoit-wolf")
    with pytest.raises(ValueError, match=r"samples must have shape \(T, N\) = \(50, 20\)"):
        clean_correlation(s, 50, "ledoit-wolf", samples=x[:40])


def test_rie_beats_the_sample_matrix_on_a_factor_model():
    # Seeded, 3 draws, N=100, q=0.4: the RIE must cut the Frobenius error by >= 15%
    # (observed ~25%) and stay within 15% of the oracle u_k^T C u_k in the same basis.
    t = 250
    err_s, err_r, err_o = [], [], []
    for seed in range(3):
        c, _, s = _factor_draw(n=100, t=t, seed=seed)
        out = clean_correlation(s, t, "rie")
        lam, vec = np.linalg.eigh(s)
        oracle = (vec * np.einsum("ik,ij,jk->k", vec, c, vec)) @ vec.T
        err_s.append(np.linalg.norm(s - c))
        err_r.append(np.linalg.norm(out - c))
        err_o.append(np.linalg.norm(oracle - c))
        assert np.trace(out) == pytest.approx(100.0, rel=1e-10)
        assert np.linalg.eigvalsh(out)[0] > 0
    assert np.mean(err_r) < 0.85 * np.mean(err_s)
    assert np.mean(err_r) < 1.15 * np.mean(err_o)


def test_rie_on_pure_noise_is_close_to_identity():
    rng = np.random.default_rng(4)
    n, t = 200, 400
    lam = np.linalg.eigvalsh(sample_correlation(rng.standard_normal((t, n))))
    xi = rie_eigenvalues(lam, n / t)
    # Sample eigenvalues spread over [0.09, 2.9]; the RIE pulls them all back near 1.
    assert np.ptp(lam) > 2.0
    assert np.max(np.abs(xi - 1.0)) < 0.2
    assert np.sum(xi) == pytest.approx(np.sum(lam))


def test_rie_needs_q_below_one():
    _, _, s = _factor_draw(n=30, t=25, seed=5)
    with pytest.raises(ValueError, match="method='rie' needs T > N"):
        clean_correlation(s, 25, "rie")


@pytest.mark.parametrize("method", CLEANING_METHODS)
def test_renormalize_gives_a_valid_correlation_matrix(method):
    c, x, s = _factor_draw(n=50, t=120, seed=6)
    out = clean_correlation(s, 120, method, samples=x, renormalize=True)
    assert is_correlation_matrix(out)
    # ...and every cleaner lowers the out-of-sample risk of the min-variance portfolio.
    if method != "sample":
        assert out_of_sample_risk_ratio(out, c) < out_of_sample_risk_ratio(s, c)


def test_project_to_correlation():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((8, 8))
    m = (a + a.T) / 2
    np.fill_diagonal(m, 1.0)
    assert np.linalg.eigvalsh(m)[0] < 0  # indefinite to start with
    p = project_to_correlation(m)
    assert is_correlation_matrix(p)
    assert np.linalg.eigvalsh(project_to_correlation(m, min_eigenvalue=0.1))[0] > 0
    c, _ = simulate_factor_model(10, 5, seed=8)
    np.testing.assert_allclose(project_to_correlation(c), c, atol=1e-12)


def test_min_variance_portfolio_closed_form():
    # Diagonal covariance: weights proportional to 1/variance.
    var = np.array([1.0, 2.0, 4.0])
    w = min_variance_weights(np.diag(var))
    np.testing.assert_allclose(w, (1 / var) / np.sum(1 / var))
    assert portfolio_risk(w, np.diag(var)) == pytest.approx(1 / np.sum(1 / var))
    c, _ = simulate_factor_model(20, 5, seed=9)
    assert out_of_sample_risk_ratio(c, c) == pytest.approx(1.0)
    assert out_of_sample_risk_ratio(np.eye(20), c) > 1.0


@pytest.mark.parametrize("kwargs,match", [
    (dict(C=np.ones((3, 4)), T=10), r"C must be a square 2-D matrix, got shape \(3, 4\)"),
    (dict(C=np.array([[1, 0.5], [0.1, 1]]), T=10), "C must be symmetric"),
    (dict(C=np.array([[1, math.nan], [math.nan, 1]]), T=10), "C must contain only finite"),
    (dict(C=np.diag([1.0, 2.0]), T=10), "C must have a unit diagonal"),
    (dict(C=np.eye(3), T=1), "T must be an integer >= 2"),
    (dict(C=np.eye(3), T=2.5), "T must be an integer >= 2"),
    (dict(C=np.eye(3), T=10, method="pca"), "method must be one of 'sample', 'clip'"),
])
def test_errors_are_one_line_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        clean_correlation(**kwargs)
    assert "\n" not in str(e.value)
