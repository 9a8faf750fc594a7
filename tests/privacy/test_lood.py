"""Leave-one-out distinguishability (arXiv 2309.17310): GP posteriors on NNGP kernels."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from scalelab.privacy import (
    DEFAULT_KERNEL,
    check_psd,
    gaussian_kl,
    kernel_matrix,
    lood,
    lood_between,
    lood_per_point,
    optimise_queries,
    torch_nngp_kernel,
)
from scalelab.theory.kernels import nngp_kernel


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(25, 6))
    y = rng.integers(0, 3, 25)
    return X, y, rng


def _k(a, b):
    """Scalar NNGP kernel value under the default spec, from scalelab.theory.nngp_kernel."""
    s = DEFAULT_KERNEL
    return nngp_kernel(s["act"], s["sigma_w"], s["sigma_b"], s["depth"], np.stack([a, b]))[0, 1]


def _kl_1d(m0, v0, m1, v1):
    return 0.5 * math.log(v1 / v0) + (v0 + (m0 - m1) ** 2) / (2 * v1) - 0.5


def test_identical_training_sets_give_exactly_zero(data):
    X, y, _ = data
    for variant in ("kl", "mean"):
        assert lood_between(X, y, X, y, X[:5], variant=variant) == 0.0
        assert lood(X, y, X[:0], y[:0], X[:4], variant=variant) == 0.0


def test_one_point_one_query_is_the_kl_of_two_1d_gaussians():
    rng = np.random.default_rng(1)
    x, q = rng.normal(size=3), rng.normal(size=3)
    yv, s2 = 0.7, 0.05
    kxx, kqq, kqx = _k(x, x), _k(q, q), _k(q, x)
    m1, v1 = kqx * yv / (kxx + s2), kqq - kqx**2 / (kxx + s2)
    want = _kl_1d(0.0, kqq, m1, v1)  # prior (empty D) vs posterior on D' = {x}
    got = lood(np.zeros((0, 3)), np.zeros(0), x[None], np.array([yv]), q[None], noise=s2)
    assert got == pytest.approx(want, rel=1e-10)
    # k = 3 one-hot outputs: the same variances, one mean shift (the label's column).
    got3 = lood(np.zeros((0, 3)), np.zeros((0, 3)), x[None], np.array([[0.0, 1.0, 0.0]]),
                q[None], noise=s2)
    m13 = kqx * 1.0 / (kxx + s2)
    assert got3 == pytest.approx(2 * _kl_1d(0, kqq, 0, v1) + _kl_1d(0, kqq, m13, v1), rel=1e-10)


def test_two_points_one_query_by_hand():
    rng = np.random.default_rng(2)
    x1, x2, q = rng.normal(size=(3, 4))
    y1, y2, s2 = 1.0, -0.5, 0.1
    # D = {x1}: scalar formulas.  D' = {x1, x2}: explicit 2x2 inverse.
    m0 = _k(q, x1) * y1 / (_k(x1, x1) + s2)
    v0 = _k(q, q) - _k(q, x1) ** 2 / (_k(x1, x1) + s2)
    a, b, d = _k(x1, x1) + s2, _k(x1, x2), _k(x2, x2) + s2
    inv = np.array([[d, -b], [-b, a]]) / (a * d - b * b)
    kq = np.array([_k(q, x1), _k(q, x2)])
    m1 = kq @ inv @ np.array([y1, y2])
    v1 = _k(q, q) - kq @ inv @ kq
    got = lood(x1[None], np.array([y1]), x2[None], np.array([y2]), q[None], noise=s2)
    assert got == pytest.approx(_kl_1d(m0, v0, m1, v1), rel=1e-9)
    mean = lood(x1[None], np.array([y1]), x2[None], np.array([y2]), q[None], noise=s2,
                variant="mean")
    assert mean == pytest.approx(0.5 * (m0 - m1) ** 2, rel=1e-9)


def test_lood_grows_as_the_noise_shrinks(data):
    X, y, _ = data
    for variant in ("kl", "mean"):
        values = [lood(X[:-1], y[:-1], X[-1:], y[-1:], noise=s, variant=variant)
                  for s in (1.0, 0.1, 0.01, 0.001)]
        assert np.all(np.diff(values) > 0), (variant, values)


def test_gaussian_kl_against_a_direct_formula_and_monte_carlo():
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(2, 3, 3))
    c0, c1 = A @ A.T + 0.5 * np.eye(3), B @ B.T + 0.5 * np.eye(3)
    m0, m1 = rng.normal(size=(2, 3, 1))
    direct = 0.5 * (np.trace(np.linalg.solve(c1, c0)) - 3
                    + ((m1 - m0).T @ np.linalg.solve(c1, m1 - m0)).item()
                    + np.linalg.slogdet(c1)[1] - np.linalg.slogdet(c0)[1])
    assert gaussian_kl(m0, c0, m1, c1) == pytest.approx(direct, rel=1e-10)
    # Monte Carlo: E_{x ~ N0}[log N0(x) - log N1(x)], 40,000 draws, 4.5 standard errors.
    x = multivariate_normal(m0[:, 0], c0).rvs(40_000, random_state=4)
    p0, p1 = multivariate_normal(m0[:, 0], c0), multivariate_normal(m1[:, 0], c1)
    ratio = p0.logpdf(x) - p1.logpdf(x)
    assert abs(ratio.mean() - direct) < 4.5 * ratio.std() / math.sqrt(len(x))


def test_posterior_mean_against_a_direct_solve(data):
    X, y, rng = data
    Q = rng.normal(size=(4, 6))
    Y = np.eye(3)[y]
    K = nngp_kernel("relu", math.sqrt(2), 0.0, 3, np.concatenate([X, Q]))
    Ktt, Kqt = K[:-5, :-5], K[-4:, :-5]  # D = first 24 points; extra = point 24
    Kaa, Kqa = K[:25, :25], K[-4:, :25]
    mu0 = Kqt @ np.linalg.solve(Ktt + 0.05 * np.eye(24), Y[:24])
    mu1 = Kqa @ np.linalg.solve(Kaa + 0.05 * np.eye(25), Y)
    got = lood(X[:24], y[:24], X[24:], y[24:], Q, variant="mean")
    assert got == pytest.approx(0.5 * np.mean((mu0 - mu1) ** 2), rel=1e-9)


def test_one_hot_and_integer_labels_agree(data):
    X, y, _ = data
    Y = np.eye(3)[y]
    a = lood(X[:-1], y[:-1], X[-1:], y[-1:])
    assert lood(X[:-1], Y[:-1], X[-1:], y[-1:]) == pytest.approx(a, rel=1e-12)
    assert lood(X[:-1], Y[:-1], X[-1:], Y[-1:]) == pytest.approx(a, rel=1e-12)


def test_per_point_matches_single_calls(data):
    X, y, _ = data
    per = lood_per_point(X, y, indices=[0, 7, 24])
    for v, i in zip(per, [0, 7, 24], strict=True):
        rest = np.delete(np.arange(25), i)
        assert v == pytest.approx(lood(X[rest], y[rest], X[[i]], y[[i]], num_classes=3),
                                  rel=1e-9)


def test_non_psd_or_asymmetric_kernels_raise(data):
    X, y, _ = data
    with pytest.raises(ValueError, match="positive semi-definite"):
        lood(X[:-1], y[:-1], X[-1:], y[-1:], kernel=lambda A, B: -(A @ B.T))
    with pytest.raises(ValueError, match="symmetric"):
        lood(X[:-1], y[:-1], X[-1:], y[-1:], kernel=lambda A, B: A @ B.T + np.triu(A @ B.T))
    with pytest.raises(ValueError, match="positive semi-definite"):
        check_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        check_psd(np.ones((2, 3)))
    K = kernel_matrix(None, X)  # the default NNGP kernel passes
    assert np.allclose(K, K.T)


def test_any_registered_activation_and_a_callable_kernel(data):
    X, y, _ = data
    for act in ("tanh", "gelu", "erf"):
        v = lood(X[:9], y[:9], X[-1:], y[-1:], kernel={"act": act, "depth": 2, "sigma_w": 1.2})
        assert math.isfinite(v) and v > 0

    def rbf(A, B):
        return np.exp(-((A[:, None] - B[None]) ** 2).sum(-1) / 6)

    assert lood(X[:-1], y[:-1], X[-1:], y[-1:], kernel=rbf) > 0


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "abs", "erf", "linear"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_torch_kernel_equals_the_numpy_nngp(act, depth):
    X = np.random.default_rng(5).normal(size=(7, 3))
    want = nngp_kernel(act, 1.3, 0.2, depth, X)
    got = torch_nngp_kernel({"act": act, "sigma_w": 1.3, "sigma_b": 0.2, "depth": depth})(
        torch.from_numpy(X), torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_query_optimisation_increases_lood(data):
    X, y, rng = data
    start = rng.normal(size=(2, 6))
    res = optimise_queries(X[:-1], y[:-1], X[-1:], y[-1:], start, steps=60, lr=0.05)
    before = lood(X[:-1], y[:-1], X[-1:], y[-1:], start)
    assert res.initial_lood == pytest.approx(before, rel=1e-6)
    assert res.lood > 1.5 * before
    assert res.lood == pytest.approx(lood(X[:-1], y[:-1], X[-1:], y[-1:], res.queries), rel=1e-6)
    mean = optimise_queries(X[:-1], y[:-1], X[-1:], y[-1:], start, steps=30, variant="mean")
    assert mean.lood > mean.initial_lood


@pytest.mark.parametrize("call,match", [
    (lambda X, y: lood(X[:-1], y[:-1], X[-1:], y[-1:], noise=0.0), "noise"),
    (lambda X, y: lood(X[:-1], y[:-1], X[-1:], y[-1:], variant="js"), "variant"),
    (lambda X, y: lood(X[:-1, :3], y[:-1], X[-1:], y[-1:]), "features"),
    (lambda X, y: lood(X[:-1], y[:-2], X[-1:], y[-1:]), "one target per input"),
    (lambda X, y: lood(X[:-1], y[:-1], X[-1:], np.array([7]), num_classes=3), "labels"),
    (lambda X, y: lood(X[:-1], y[:-1], X[-1:], y[-1:], kernel={"width": 3}), "spec keys"),
    (lambda X, y: lood(X[:-1], y[:-1], X[:0], y[:0]), "queries must be given"),
    (lambda X, y: optimise_queries(X[:-1], y[:-1], X[-1:], y[-1:], X[:1],
                                   kernel={"act": "tanh"}), "closed forms"),
])
def test_bad_arguments(data, call, match):
    X, y, _ = data
    with pytest.raises(ValueError, match=match):
        call(X, y)
