"""Quadrature (scalelab.theory.gaussian) against closed forms and scipy.integrate.quad."""

import math

import numpy as np
import pytest
from scipy import integrate, special

from scalelab.theory import as_activation, from_callable, get_activation
from scalelab.theory.gaussian import expect, expect_gap, expect_pair

Q = np.array([1e-3, 0.3, 1.0, 4.0, 25.0, 100.0])
C = np.array([-1.0, -0.9, -0.3, 0.0, 0.5, 0.9, 0.999, 1 - 1e-7, 1.0])


def relu_kernel(qa, qb, c):  # Cho & Saul, written independently of scalelab's closed_forms
    t = np.arccos(np.clip(c, -1, 1))
    return np.sqrt(qa * qb) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t))


def erf_kernel(qa, qb, c):  # Williams 1997
    return 2 / np.pi * np.arcsin(2 * c * np.sqrt(qa * qb) / np.sqrt((1 + 2 * qa) * (1 + 2 * qb)))


def quad_1d(f, q):
    g = lambda z: f(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    kw = dict(epsabs=0, epsrel=1e-13, limit=200)
    return integrate.quad(g, -np.inf, 0, **kw)[0] + integrate.quad(g, 0, np.inf, **kw)[0]


def test_variance_relu_erf_closed_forms():
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    np.testing.assert_allclose(expect(lambda x: relu(x) ** 2, Q), Q / 2, rtol=1e-12)
    exact = 2 / np.pi * np.arcsin(2 * Q / (1 + 2 * Q))
    np.testing.assert_allclose(expect(lambda x: special.erf(x) ** 2, Q), exact, rtol=1e-12)


@pytest.mark.parametrize("qa,qb", [(1.0, 1.0), (0.3, 2.0), (10.0, 10.0), (50.0, 40.0)])
def test_pair_relu_erf_closed_forms_all_correlations(qa, qb):
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    got = expect_pair(relu, relu, qa, qb, C)
    np.testing.assert_allclose(got, relu_kernel(qa, qb, C), rtol=0, atol=1e-11 * qa)
    got = expect_pair(special.erf, special.erf, qa, qb, C)
    np.testing.assert_allclose(got, erf_kernel(qa, qb, C), rtol=0, atol=1e-12)


def test_gap_keeps_relative_accuracy_near_c_equal_1():
    # E[relu(U)^2] - E[relu(U) relu(V)] = q/(2 pi) (pi (1-c) - (sin t - t cos t)); the series of
    # sin t - t cos t = t^3/3 - t^5/30 + t^7/840 is exact to 1e-16 for these tiny angles.
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    for d in (1e-4, 1e-6, 1e-9):
        t = 2 * math.asin(math.sqrt(d / 2))
        b = t**3 / 3 - t**5 / 30 + t**7 / 840
        exact = 2.0 / (2 * math.pi) * (math.pi * d - b)
        assert expect_gap(relu, 2.0, 1 - d) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("name", ["elu", "selu", "tanh", "silu", "gelu", "softplus"])
def test_kinked_and_smooth_match_scipy_quad(name):
    a = get_activation(name)
    for q in (0.05, 1.0, 9.0, 49.0):
        for f in (lambda x: a.fn(x) ** 2, lambda x: a.d1(x) ** 2):
            ref = quad_1d(lambda x, f=f: float(f(np.array([x]))[0]), q)
            assert float(expect(f, q, kinks=a.kinks)) == pytest.approx(ref, rel=1e-11, abs=1e-14)


def test_elu_pair_matches_nested_quad():
    """E[elu(U) elu(V)] by conditioning on U, both integrals split at the kink (scipy.quad)."""
    a = get_activation("elu")
    f = lambda x: float(a.fn(np.array([x]))[0])  # noqa: E731
    for q, c in ((1.0, 0.6), (4.0, -0.5)):
        s, r = math.sqrt(q), math.sqrt(1 - c * c)

        def inner(z1, s=s, r=r, c=c):
            g = lambda z2: f(s * (c * z1 + r * z2)) * math.exp(-z2 * z2 / 2)  # noqa: E731
            k = -c * z1 / r  # the kink of elu(V) in z2
            kw = dict(epsabs=1e-14, epsrel=1e-12, limit=200)
            return (integrate.quad(g, -np.inf, k, **kw)[0] +
                    integrate.quad(g, k, np.inf, **kw)[0]) / math.sqrt(2 * math.pi)

        outer = lambda z1, s=s: f(s * z1) * inner(z1) * math.exp(-z1 * z1 / 2)  # noqa: E731
        kw = dict(epsabs=1e-13, epsrel=1e-11, limit=200)
        ref = (integrate.quad(outer, -np.inf, 0, **kw)[0] +
               integrate.quad(outer, 0, np.inf, **kw)[0]) / math.sqrt(2 * math.pi)
        assert float(a.numeric().pair(q, q, c)) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "abs", "linear", "erf"])
def test_closed_forms_equal_quadrature(name):
    a = get_activation(name)
    n = a.numeric()
    for meth in ("mean_sq", "mean_dsq", "dmean_sq"):
        np.testing.assert_allclose(getattr(a, meth)(Q), getattr(n, meth)(Q), rtol=1e-10)
    for meth in ("pair", "dpair"):
        np.testing.assert_allclose(getattr(a, meth)(2.0, 2.0, C), getattr(n, meth)(2.0, 2.0, C),
                                   rtol=1e-9, atol=1e-12)
    # for c < 0 the quadrature gap is a difference of two O(1) terms: absolute accuracy only
    np.testing.assert_allclose(a.gap(2.0, C), n.gap(2.0, C), rtol=1e-7, atol=1e-11)


@pytest.mark.parametrize("name", ["tanh", "elu", "selu", "gelu", "gelu_tanh", "silu", "softplus",
                                  "sigmoid", "erf"])
def test_derivatives_match_finite_differences(name):
    a = get_activation(name)
    x = np.array([-2.3, -0.7, -0.1, 0.2, 0.9, 3.1])
    h = 1e-6
    np.testing.assert_allclose(a.d1(x), (a.fn(x + h) - a.fn(x - h)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(a.d2(x), (a.d1(x + h) - a.d1(x - h)) / (2 * h), atol=1e-7)


def test_gelu_tanh_is_the_approximation_and_swish_is_silu():
    import torch

    x = np.linspace(-4, 4, 41)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(get_activation("gelu_tanh")(x),
                               torch.nn.functional.gelu(t, approximate="tanh").numpy(), atol=1e-12)
    np.testing.assert_allclose(get_activation("gelu")(x), torch.nn.functional.gelu(t).numpy(),
                               atol=1e-12)
    np.testing.assert_allclose(get_activation("swish")(x), get_activation("silu")(x))
    np.testing.assert_allclose(get_activation("selu")(x), torch.selu(t).numpy(), atol=1e-12)


def test_user_callables():
    import torch

    t = from_callable(torch.tanh)
    assert t.derivatives == "autodiff (torch)"
    x = np.linspace(-3, 3, 13)
    ref = get_activation("tanh")
    np.testing.assert_allclose(t.d1(x), ref.d1(x), atol=1e-12)
    np.testing.assert_allclose(t.d2(x), ref.d2(x), atol=1e-12)
    n = from_callable(np.tanh)
    assert n.derivatives == "finite differences"
    np.testing.assert_allclose(n.d1(x), ref.d1(x), atol=1e-9)
    np.testing.assert_allclose(n.d2(x), ref.d2(x), atol=1e-6)
    assert float(n.mean_sq(0.7)) == pytest.approx(float(ref.mean_sq(0.7)), rel=1e-12)
    relu_like = as_activation(lambda x: np.where(x > 0, x, 0.2 * x))
    assert relu_like.relu_like and relu_like.slopes == (1.0, 0.2)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown activation 'nope'; known: relu"):
        get_activation("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        get_activation("tanh", alpha=2)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        get_activation("elu", alpha=-1)
    with pytest.raises(ValueError, match="act must be"):
        as_activation(3.0)
    assert get_activation("leaky_relu").slopes == (1.0, 0.01)
    assert get_activation("softplus", beta=2.0).params == (("beta", 2.0),)
