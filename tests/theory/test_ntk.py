"""ntk_kernel / resnet_ntk / depth profiles against closed forms, exact reductions and a peer."""

import math

import numpy as np
import pytest
import torch

from scalelab.theory import (
    decay_fit,
    edge_of_chaos,
    get_activation,
    nngp_kernel,
    ntk_depth_profile,
    ntk_kernel,
    pair_derivative_expectations,
    pair_expectations,
    resnet_kernel,
    resnet_ntk,
    resnet_ntk_depth_profile,
    trivial_limit,
)

RNG = np.random.default_rng(3)
X = RNG.normal(size=(5, 4))
X[4] = -0.6 * X[0]  # an anti-correlated pair (c = -1)


# --- independent oracles, written out here (not taken from scalelab) -------------------------
def relu_ntk_closed_form(sw, sb, depth, X):
    """Cho & Saul (2009) arc-cosine kernels: k1 for E[relu relu], k0 for E[relu' relu']."""
    K = sb**2 + sw**2 * X @ X.T / X.shape[1]
    T = K.copy()
    for _ in range(depth - 1):
        d = np.sqrt(np.diag(K))
        t = np.arccos(np.clip(K / np.outer(d, d), -1, 1))
        np.fill_diagonal(t, 0.0)  # arccos(1 - 1 ulp) is 1.5e-8, not 0: the angle is exact here
        k0 = (np.pi - t) / np.pi
        k1 = (np.sin(t) + (np.pi - t) * np.cos(t)) / np.pi
        K = sb**2 + sw**2 * np.outer(d, d) * k1 / 2  # E[relu(u) relu(v)] = sqrt(qa qb) k1 / 2
        T = T * (sw**2 * k0 / 2) + K  # E[relu'(u) relu'(v)] = k0 / 2
    return T, K


def erf_ntk_closed_form(sw, sb, depth, X):
    """Williams (1997): E[erf erf] = (2/pi) asin(2s / sqrt((1+2qa)(1+2qb))) and
    E[erf' erf'] = 4 / (pi sqrt((1 + 2qa)(1 + 2qb) - 4 s^2))."""
    K = sb**2 + sw**2 * X @ X.T / X.shape[1]
    T = K.copy()
    for _ in range(depth - 1):
        d = 1 + 2 * np.diag(K)
        dd = np.outer(d, d)
        kdot = sw**2 * 4 / (np.pi * np.sqrt(dd - 4 * K**2))
        K = sb**2 + sw**2 * 2 / np.pi * np.arcsin(2 * K / np.sqrt(dd))
        T = T * kdot + K
    return T, K


@pytest.mark.parametrize("depth", [1, 2, 3, 6, 12])
def test_relu_ntk_matches_the_arccos_closed_form(depth):
    want_T, want_K = relu_ntk_closed_form(1.4, 0.3, depth, X)
    got = ntk_kernel("relu", 1.4, 0.3, depth, X, return_nngp=True)
    np.testing.assert_allclose(got.ntk, want_T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.nngp, want_K, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("depth", [1, 2, 4, 9])
def test_erf_ntk_matches_williams_closed_form(depth):
    want_T, want_K = erf_ntk_closed_form(1.6, 0.2, depth, X)
    T, K = ntk_kernel("erf", 1.6, 0.2, depth, X, return_nngp=True)
    np.testing.assert_allclose(T, want_T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(K, want_K, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["relu", "erf", "leaky_relu"])
def test_quadrature_agrees_with_the_closed_forms(name):
    """The split quadrature (act.numeric()) is the path of every other activation."""
    a = get_activation(name)
    want = ntk_kernel(a, 1.3, 0.25, 5, X)
    got = ntk_kernel(a.numeric(), 1.3, 0.25, 5, X)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_tanh_derivative_expectation_against_adaptive_quadrature():
    """E[tanh'(U) tanh'(V)] against scipy's adaptive dblquad / quad (an independent
    integrator), pair by pair through the 2 x 2 Cholesky factor."""
    from scipy import integrate

    Q = np.array([[1.3, 0.9, -0.4], [0.9, 2.0, 0.1], [-0.4, 0.1, 0.5]])
    got = pair_derivative_expectations("tanh", Q)

    def dtanh(x):
        return 1 - np.tanh(x) ** 2

    kw = {"epsabs": 1e-14, "epsrel": 1e-13}
    for i in range(3):
        want = integrate.quad(lambda z, q=Q[i, i]: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
                              * dtanh(np.sqrt(q) * z) ** 2, -12, 12, **kw)[0]
        np.testing.assert_allclose(got[i, i], want, rtol=1e-12)
        for j in range(i + 1, 3):
            L = np.linalg.cholesky(Q[np.ix_([i, j], [i, j])])

            def f(y, x, L=L):
                return (np.exp(-(x * x + y * y) / 2) / (2 * np.pi) * dtanh(L[0, 0] * x)
                        * dtanh(L[1, 0] * x + L[1, 1] * y))

            want = integrate.dblquad(f, -12, 12, -12, 12, **kw)[0]
            np.testing.assert_allclose(got[i, j], want, rtol=1e-12)
            assert got[j, i] == got[i, j]


def test_user_callables_and_objects_give_the_same_kernel():
    want = ntk_kernel("tanh", 1.2, 0.3, 4, X)
    np.testing.assert_allclose(ntk_kernel(get_activation("tanh"), 1.2, 0.3, 4, X), want,
                               rtol=1e-14)
    np.testing.assert_allclose(ntk_kernel(torch.tanh, 1.2, 0.3, 4, X), want, rtol=1e-9)
    relu_like = ntk_kernel(lambda x: np.maximum(x, 0.0), 1.4, 0.3, 6, X)  # detected ReLU-like
    np.testing.assert_allclose(relu_like, relu_ntk_closed_form(1.4, 0.3, 6, X)[0], rtol=1e-10)


def test_depth_one_and_the_shared_nngp_recursion():
    T, K = ntk_kernel("tanh", 1.3, 0.5, 1, X, return_nngp=True)
    np.testing.assert_allclose(T, 0.25 + 1.69 * X @ X.T / 4, rtol=1e-14)
    np.testing.assert_array_equal(T, K)
    # one recursion: the NNGP of the NTK pass is nngp_kernel's, bit for bit
    np.testing.assert_array_equal(ntk_kernel("tanh", 1.3, 0.5, 5, X, return_nngp=True).nngp,
                                  nngp_kernel("tanh", 1.3, 0.5, 5, X))


def test_neural_tangents_ntk_agrees_when_installed():
    nt = pytest.importorskip("neural_tangents")
    stax = nt.stax
    for ours, theirs in (("relu", stax.Relu), ("erf", stax.Erf)):
        sw, sb, depth = 1.4, 0.3, 5
        layers = [stax.Dense(1, W_std=sw, b_std=sb, parameterization="ntk")]
        for _ in range(depth - 1):
            layers += [theirs(), stax.Dense(1, W_std=sw, b_std=sb, parameterization="ntk")]
        want = np.asarray(stax.serial(*layers)[2](X, X, "ntk"))
        np.testing.assert_allclose(ntk_kernel(ours, sw, sb, depth, X), want, rtol=1e-4)


# --- ResNet ----------------------------------------------------------------------------------
def test_resnet_ntk_reduces_exactly_at_depth_one_and_with_zero_scales():
    q0 = X @ X.T / 4
    for name in ("relu", "tanh"):
        want = q0 + ntk_kernel(name, 1.0, 0.0, 2, X)  # one block of scale 1 is an MLP on top
        np.testing.assert_allclose(resnet_ntk(name, 1, X), want, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(resnet_kernel(name, 1, X),
                                   q0 + nngp_kernel(name, 1.0, 0.0, 2, X), rtol=1e-13)
        np.testing.assert_array_equal(resnet_ntk(name, 3, X, scales=[0.0, 0.0, 0.0]), q0)
        np.testing.assert_array_equal(resnet_kernel(name, None, X, scales=np.zeros(4)), q0)


def test_resnet_linear_activation_is_exact():
    """phi = identity: Theta_L = (1 + a^2)^L (1 + L a^2 / (1 + a^2)) Q_0, a^2 = 1/L; 2e Q_0 at
    L = infinity (dTheta/dt = Theta + Q, Q_t = e^t Q_0)."""
    q0 = X @ X.T / 4
    for L in (1, 4, 15):
        a2 = 1 / L
        want = (1 + a2) ** L * (1 + L * a2 / (1 + a2)) * q0
        np.testing.assert_allclose(resnet_ntk("linear", L, X), want, rtol=1e-12)
    np.testing.assert_allclose(resnet_ntk("linear", None, X, infinite=True), 2 * math.e * q0,
                               rtol=1e-8)


def test_resnet_relu_diagonal_closed_form():
    """ReLU: E[relu^2] = q/2 and E[relu'^2] = 1/2 on the diagonal, so with b = a^2 / 2:
    Theta_L = (1 + b)^L (1 + L b / (1 + b)) q_0; the limit is e^(1/2) (3/2) q_0."""
    q0 = np.sum(X**2, axis=1) / 4
    for L in (2, 9):
        b = 0.5 / L
        np.testing.assert_allclose(np.diag(resnet_ntk("relu", L, X)),
                                   (1 + b) ** L * (1 + L * b / (1 + b)) * q0, rtol=1e-12)
    np.testing.assert_allclose(np.diag(resnet_ntk("relu", None, X, infinite=True)),
                               math.exp(0.5) * 1.5 * q0, rtol=1e-9)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_finite_depth_resnet_ntk_converges_to_the_ode_like_one_over_L(name):
    x = X[:3]
    limit = resnet_ntk(name, None, x, infinite=True)
    errs = [np.abs(resnet_ntk(name, L, x) - limit).max() for L in (8, 16, 32)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(1.8 < r < 2.2 for r in ratios), (errs, ratios)


def test_general_branch_scales():
    L = 6
    np.testing.assert_allclose(resnet_kernel("erf", L, X, scales=[L**-0.5] * L),
                               resnet_kernel("erf", L, X), rtol=1e-13)
    scales = [k**-0.8 for k in range(1, L + 1)]  # branch_scales(L, "decreasing", alpha=0.8)
    Q = T = X @ X.T / 4
    for s in scales:  # the recursion written out
        F = pair_expectations("erf", Q)
        dF = pair_derivative_expectations("erf", Q)
        Q, T = Q + s**2 * F, T + s**2 * (T * dF + F)
    got = resnet_ntk("erf", None, X, scales=scales, return_nngp=True)
    np.testing.assert_allclose(got.ntk, T, rtol=1e-13)
    np.testing.assert_allclose(got.nngp, Q, rtol=1e-13)


def test_resnet_kernel_without_scales_is_unchanged():
    """scales=None runs exactly the 1/L recursion of the original resnet_kernel."""
    Q = X @ X.T / 4
    for _ in range(7):
        Q = Q + pair_expectations("relu", Q) / 7
    np.testing.assert_array_equal(resnet_kernel("relu", 7, X), Q)


# --- depth profiles --------------------------------------------------------------------------
def test_decay_fit_recovers_exact_laws():
    L = np.array([2, 4, 8, 16, 32, 64])
    e = decay_fit(L, 3 * np.exp(-0.2 * L))
    assert e.better == "exponential" and e.rate == pytest.approx(0.2, rel=1e-10)
    assert e.depth_scale == pytest.approx(5.0, rel=1e-10)
    p = decay_fit(L, 0.7 * L**-1.5)
    assert p.better == "power law" and p.exponent == pytest.approx(1.5, rel=1e-10)
    assert decay_fit([1, 2], [0.1, 0.05]).better == "none"


def _unit_inputs(n, d=6, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)


@pytest.mark.parametrize("act,sw,sb,limit", [
    ("relu", math.sqrt(2), 0.0, 0.25),  # EOC, phi' jumps: 1/(1+3)
    ("relu", 1.2, 0.0, 0.25),  # no bias: scale-invariant, the same as the EOC
    ("relu", 1.6, 0.5, 0.25),  # chaotic ReLU: the bias fades
    ("abs", 1.0, 0.0, 0.25),
    ("erf", None, 0.3, 1 / 3),  # EOC, phi' smooth: 1/(1+2)
])
def test_polynomial_limits_are_reached_at_large_depth(act, sw, sb, limit):
    X6 = _unit_inputs(4)
    sw = edge_of_chaos(act, sb).sigma_w if sw is None else sw
    assert trivial_limit(act, sw, sb) == pytest.approx(limit)
    p = ntk_depth_profile(act, sw, sb, [16, 64, 256, 1024], X6)
    assert np.all(np.diff(p.distance) < 0)
    assert p.distance[-1] < 0.01 and p.distance[-1] < 0.15 * p.distance[0]
    assert p.fit.better == "power law" and 0.5 < p.fit.exponent < 1.2
    # the test can tell: the other candidate constants stay far away
    T = ntk_kernel(act, sw, sb, 1024, X6)
    off = (T / np.sqrt(np.outer(np.diag(T), np.diag(T))))[~np.eye(4, dtype=bool)]
    assert np.abs(off - limit).max() == pytest.approx(p.distance[-1], rel=1e-12)
    for other in {0.0, 0.25, 1 / 3, 1.0} - {limit}:
        assert np.abs(off - other).max() > 0.05


@pytest.mark.parametrize("act,sw,sb,limit", [
    ("erf", 0.8, 0.3, 1.0), ("erf", 2.5, 0.3, 0.0), ("relu", 1.2, 0.3, 1.0),
    ("tanh", 0.9, 0.3, 1.0), ("tanh", 2.0, 0.3, 0.0),
])
def test_exponential_limits_off_the_edge(act, sw, sb, limit):
    depths = [2, 4, 6, 8, 12, 16, 24] if act == "tanh" else [2, 4, 8, 16, 24, 32, 48]
    p = ntk_depth_profile(act, sw, sb, depths, _unit_inputs(3))
    assert p.limit == limit and p.phase in ("ordered", "chaotic")
    assert p.fit.better == "exponential" and p.fit.rate > 0.1
    assert p.distance[-1] < 1e-2 * p.distance[0]


def test_profile_records_and_resnet_profile():
    X6 = _unit_inputs(4)
    p = ntk_depth_profile("relu", math.sqrt(2), 0.0, [8, 1, 4, 4], X6)
    assert p.depths.tolist() == [1, 4, 8] and p.phase == "edge"
    T = ntk_kernel("relu", math.sqrt(2), 0.0, 4, X6)
    Tn = T / np.sqrt(np.outer(np.diag(T), np.diag(T)))
    off = ~np.eye(4, dtype=bool)
    assert p.distance[1] == pytest.approx(np.abs(Tn - 0.25)[off].max(), rel=1e-12)
    assert p.spread[1] == pytest.approx(Tn[off].max() - Tn[off].min(), rel=1e-12)
    assert p.condition[1] == pytest.approx(np.linalg.cond(Tn), rel=1e-8)
    r = resnet_ntk_depth_profile("relu", [4, 8, 16, 32, 64], X6)
    assert r.fit.better == "power law" and 0.9 < r.fit.exponent < 1.1  # Euler: O(1/L)
    assert r.spread.min() > 0.5 * r.spread.max()  # the 1/sqrt(L) ResNet keeps its inputs


@pytest.mark.parametrize("call,match", [
    (lambda: ntk_kernel("tanh", 1.0, 0.0, 0, X), "depth"),
    (lambda: ntk_kernel("tanh", 0.0, 0.0, 2, X), "sigma_w"),
    (lambda: ntk_kernel("nope", 1.0, 0.0, 2, X), "activation"),
    (lambda: ntk_kernel("tanh", 1.0, 0.0, 2, [[np.inf, 1.0]]), "finite"),
    (lambda: ntk_kernel("relu", 1.0, 0.0, 1200, X), "float64 range"),
    (lambda: resnet_ntk("relu", 3, X, scales=[0.5, 0.5]), "one value per block"),
    (lambda: resnet_ntk("relu", 3, X, scales=[0.5, np.nan, 1]), "finite"),
    (lambda: resnet_ntk("relu", None, X, scales=[0.5], infinite=True), "scales"),
    (lambda: resnet_kernel("relu", None, X, scales="abc"), "scales"),
    (lambda: ntk_depth_profile("linear", 1.0, 0.0, [2], X), "linear"),
    (lambda: ntk_depth_profile("tanh", 0.5, 0.0, [2], X), "q\\* = 0"),
    (lambda: ntk_depth_profile("relu", 1.0, 0.0, [0, 2], X), "depths"),
    (lambda: ntk_depth_profile("relu", 1.0, 0.0, [2], X[:1]), "at least 2 inputs"),
])
def test_bad_inputs_are_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)
