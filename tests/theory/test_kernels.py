"""nngp_kernel / resnet_kernel against closed forms, the maps, the ODE, and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from scalelab.theory import (
    correlation_map,
    get_activation,
    nngp_kernel,
    nngp_kernels,
    resnet_kernel,
    variance_map,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 3))
X[4] = -0.7 * X[0]  # an anti-correlated pair (c = -1)


# --- independent oracles (written here, not taken from scalelab) ----------------------------
def arccos_relu(K):
    """E[relu(U) relu(V)] (Cho & Saul 2009), with arccos as the paper writes it."""
    d = np.sqrt(np.diag(K))
    c = np.clip(K / np.outer(d, d), -1, 1)
    t = np.arccos(c)
    return np.outer(d, d) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))


def williams_erf(K):
    """E[erf(U) erf(V)] (Williams 1997)."""
    d = 1 + 2 * np.diag(K)
    return 2 / np.pi * np.arcsin(2 * K / np.sqrt(np.outer(d, d)))


@pytest.mark.parametrize("oracle,name", [(arccos_relu, "relu"), (williams_erf, "erf")])
@pytest.mark.parametrize("numeric", [False, True], ids=["closed-form", "quadrature"])
def test_nngp_matches_closed_form_recursion(oracle, name, numeric):
    sw, sb, depth = 1.6, 0.3, 6
    K = sb**2 + sw**2 * X @ X.T / X.shape[1]
    for _ in range(depth - 1):
        K = sb**2 + sw**2 * oracle(K)
    act = get_activation(name)
    got = nngp_kernel(act.numeric() if numeric else act, sw, sb, depth, X)
    np.testing.assert_allclose(got, K, rtol=1e-8, atol=1e-10)


def test_nngp_depth_one_is_the_linear_layer_and_layers_are_consistent():
    sw, sb = 1.3, 0.5
    np.testing.assert_allclose(nngp_kernel("tanh", sw, sb, 1, X),
                               sb**2 + sw**2 * X @ X.T / 3, rtol=1e-14)
    ks = nngp_kernels("tanh", sw, sb, 4, X)
    assert len(ks) == 4
    np.testing.assert_allclose(ks[-1], nngp_kernel("tanh", sw, sb, 4, X), rtol=1e-14)


def test_nngp_follows_the_variance_and_correlation_maps():
    """Peer implementation: maps.py iterates q and c (through the 'gap' form)."""
    sw, sb = 1.4, 0.2
    x = X[:3] / np.linalg.norm(X[:3], axis=1, keepdims=True) * 2.0  # equal norms
    ks = nngp_kernels("tanh", sw, sb, 5, x)
    q = sb**2 + sw**2 * 4.0 / 3
    c = (ks[0][0, 1] - 0) / ks[0][0, 0]
    for K in ks[1:]:
        c, q = correlation_map("tanh", sw, sb, q, c), variance_map("tanh", sw, sb, q)
        np.testing.assert_allclose(np.diag(K), q, rtol=1e-9)
        np.testing.assert_allclose(K[0, 1] / K[0, 0], c, rtol=1e-8)


def test_resnet_linear_activation_is_exact():
    q0 = X @ X.T / 3
    for L in (1, 3, 10):
        np.testing.assert_allclose(resnet_kernel("linear", L, X), (1 + 1 / L) ** L * q0,
                                   rtol=1e-12)
    np.testing.assert_allclose(resnet_kernel("linear", None, X, infinite=True), math.e * q0,
                               rtol=1e-8)


def test_relu_diagonal_grows_like_exp_half():
    q0 = np.sum(X**2, axis=1) / 3
    for L in (2, 7):  # finite L: E[relu(U)^2] = q/2, so q_L = (1 + 1/(2L))^L q_0
        np.testing.assert_allclose(np.diag(resnet_kernel("relu", L, X)),
                                   (1 + 0.5 / L) ** L * q0, rtol=1e-12)
    got = np.diag(resnet_kernel("relu", 5, X, infinite=True))
    np.testing.assert_allclose(got, math.exp(0.5) * q0, rtol=1e-9)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_finite_depth_converges_to_the_ode_like_one_over_L(name):
    x = X[:3]
    limit = resnet_kernel(name, None, x, infinite=True)
    errs = [np.abs(resnet_kernel(name, L, x) - limit).max() for L in (8, 16, 32)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    assert all(1.8 < r < 2.2 for r in ratios), (errs, ratios)
    assert errs[-1] < 0.02 * np.abs(limit).max()


def test_ode_tolerance_is_met():
    a = resnet_kernel("tanh", None, X[:3], infinite=True, rtol=1e-6)
    b = resnet_kernel("tanh", None, X[:3], infinite=True, rtol=1e-11)
    assert np.abs(a - b).max() < 1e-4 * np.abs(b).max()


def _mean_gram(features, reps):
    grams = []
    for seed in range(reps):
        torch.manual_seed(seed)
        with torch.no_grad():
            y = features().double().numpy()
        grams.append(y @ y.T / y.shape[1])
    return np.mean(grams, axis=0)


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_monte_carlo_wide_resnet_matches_kernel(name):
    """ResidualMLP(width 1024, 16 stable blocks, W ~ N(0, 1/n)): the Gram of Y_L averaged over
    6 nets; each net's relative error is ~8% (W_in alone gives sqrt(2/n)), the mean's ~3%."""
    from scalelab.nn import ResidualMLP

    x = torch.tensor(X[:4], dtype=torch.float32)
    L = 16

    def features():
        return ResidualMLP(3, 1024, L, 1, mode="stable", act=name, sigma_w=1.0).features(x)

    gram = _mean_gram(features, 6)
    K = resnet_kernel(name, L, X[:4])
    assert np.linalg.norm(gram - K) / np.linalg.norm(K) < 0.06
    # the test can tell: the input kernel (blocks contributing nothing) is ~33% away
    assert np.linalg.norm(gram - X[:4] @ X[:4].T / 3) / np.linalg.norm(K) > 0.2


def test_monte_carlo_wide_mlp_matches_nngp():
    sw, sb, depth, width = 1.5, 0.3, 4, 1024
    x = torch.tensor(X, dtype=torch.float32)

    def features():
        layers, fan_in = [], 3
        for i in range(depth):
            lin = nn.Linear(fan_in, width)
            nn.init.normal_(lin.weight, std=sw / math.sqrt(fan_in))
            nn.init.normal_(lin.bias, std=sb)
            layers += [lin, nn.Tanh()] if i < depth - 1 else [lin]
            fan_in = width
        return nn.Sequential(*layers)(x)

    gram = _mean_gram(features, 4)
    K = nngp_kernel("tanh", sw, sb, depth, X)
    assert np.linalg.norm(gram - K) / np.linalg.norm(K) < 0.05
    assert np.linalg.norm(gram - nngp_kernel("tanh", sw, sb, depth - 1, X)) / \
        np.linalg.norm(K) > 0.1


def test_neural_tangents_agrees_when_installed():
    nt = pytest.importorskip("neural_tangents")
    stax = nt.stax
    sw, sb, depth = 1.5, 0.2, 4
    layers = [stax.Dense(1, W_std=sw, b_std=sb)]
    for _ in range(depth - 1):
        layers += [stax.Erf(), stax.Dense(1, W_std=sw, b_std=sb)]
    kernel_fn = stax.serial(*layers)[2]
    want = np.asarray(kernel_fn(X, X, "nngp"))
    np.testing.assert_allclose(nngp_kernel("erf", sw, sb, depth, X), want, rtol=1e-4)


@pytest.mark.parametrize("call,match", [
    (lambda: nngp_kernel("tanh", 1.0, 0.0, 0, X), "depth"),
    (lambda: nngp_kernel("tanh", -1.0, 0.0, 2, X), "sigma_w"),
    (lambda: nngp_kernel("tanh", 1.0, -0.1, 2, X), "sigma_b"),
    (lambda: nngp_kernel("nope", 1.0, 0.0, 2, X), "activation"),
    (lambda: nngp_kernel("tanh", 1.0, 0.0, 2, np.zeros((2, 2, 2))), "X must be a 2-D"),
    (lambda: nngp_kernel("tanh", 1.0, 0.0, 2, [[1.0, np.nan]]), "finite"),
    (lambda: resnet_kernel("relu", 2.5, X), "depth"),
    (lambda: resnet_kernel("relu", None, X), "depth"),
    (lambda: resnet_kernel("relu", None, X, infinite=True, rtol=0), "rtol"),
])
def test_bad_inputs_are_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_sin_minus_theta_cos_matches_high_precision():
    """The arc-cosine kernels' cancelling term sin t - t cos t against mpmath at 40 digits:
    the series branch (t < 0.5) to a few ulp, the direct branch above it within its own
    cancellation (sin t / (sin t - t cos t) < 13 there)."""
    mpmath = pytest.importorskip("mpmath")
    from scalelab.theory.closed_forms import _sin_minus_theta_cos

    mpmath.mp.dps = 40
    for lo, hi, tol in ((1e-9, 0.4999, 1e-15), (0.5, 3.1, 5e-15)):
        t = np.linspace(lo, hi, 997)
        ref = np.array([float(mpmath.sin(mpmath.mpf(x)) - mpmath.mpf(x) * mpmath.cos(mpmath.mpf(x)))
                        for x in t])
        assert np.max(np.abs(_sin_minus_theta_cos(t) - ref) / np.abs(ref)) < tol
