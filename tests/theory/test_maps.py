"""Variance / correlation maps against Monte Carlo on wide random MLPs, fixed points, depth scales.

Monte Carlo tolerance: width n = 1000, 4 independent networks, 24 input pairs each. The
empirical q_l fluctuates by about sqrt(2/n) * (shared-weight correlation) / sqrt(4) ~ 1% per
layer; over 4 layers that is ~2%, so q is checked to 6% (3 sigma) and c to 0.03.
"""

import math

import numpy as np
import pytest

from scalelab.theory import (
    chi1,
    correlation_fixed_point,
    correlation_gap_map,
    correlation_map,
    correlation_map_slope,
    depth_scales,
    edge_of_chaos,
    fixed_point,
    fixed_points,
    get_activation,
    variance_map,
    variance_map_slope,
)

WIDTH, NETS, PAIRS, DEPTH = 1000, 4, 24, 4


def monte_carlo(act, sw, sb, q0, c0, seed=0):
    """Empirical q_l, c_l (l = 1..DEPTH) of a random MLP, averaged over nets and input pairs."""
    a = get_activation(act)
    rng = np.random.default_rng(seed)
    qs, cs = np.zeros((NETS, DEPTH)), np.zeros((NETS, DEPTH))
    for k in range(NETS):
        z1, z2 = rng.standard_normal((2, WIDTH, PAIRS))
        u = math.sqrt(q0) * z1
        v = math.sqrt(q0) * (c0 * z1 + math.sqrt(1 - c0 * c0) * z2)
        h = np.concatenate([u, v], axis=1)  # (n, 2 * PAIRS) pre-activations of layer 0
        for layer in range(DEPTH):
            w = rng.standard_normal((WIDTH, WIDTH)) * sw / math.sqrt(WIDTH)
            b = rng.standard_normal((WIDTH, 1)) * sb
            h = w @ a.fn(h) + b
            qa, qb = (h[:, :PAIRS] ** 2).mean(0), (h[:, PAIRS:] ** 2).mean(0)
            qs[k, layer] = (qa.mean() + qb.mean()) / 2
            cs[k, layer] = np.mean((h[:, :PAIRS] * h[:, PAIRS:]).mean(0) / np.sqrt(qa * qb))
    return qs.mean(0), cs.mean(0)


@pytest.mark.parametrize("act,sw,sb,q0,c0", [
    ("tanh", 1.3, 0.2, 1.0, 0.3),
    ("relu", math.sqrt(2), 0.0, 2.0, 0.0),
    ("elu", 1.5, 0.3, 0.5, -0.4),
    ("silu", 1.7, 0.5, 3.0, 0.6),
    ("erf", 2.0, 0.1, 0.7, 0.8),
])
def test_maps_match_wide_random_network(act, sw, sb, q0, c0):
    q_mc, c_mc = monte_carlo(act, sw, sb, q0, c0)
    q, c = q0, c0
    for layer in range(DEPTH):
        q, c = variance_map(act, sw, sb, q), correlation_map(act, sw, sb, q, c)
        assert q_mc[layer] == pytest.approx(q, rel=0.06), (layer, q_mc, q)
        assert c_mc[layer] == pytest.approx(c, abs=0.03), (layer, c_mc, c)


def test_maps_vectorise_and_reduce_at_c_equal_1():
    q = np.array([0.5, 1.0, 2.0])
    out = variance_map("tanh", 1.5, 0.1, q)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, [variance_map("tanh", 1.5, 0.1, v) for v in q])
    np.testing.assert_allclose(correlation_map("tanh", 1.5, 0.1, q, 1.0), 1.0)
    c = correlation_map("elu", 1.2, 0.2, 1.0, np.array([[-1.0, 0.0], [0.5, 0.99]]))
    assert c.shape == (2, 2) and np.all(np.abs(c) <= 1)
    # the gap form and the plain form agree where both are accurate
    g = correlation_gap_map("tanh", 1.5, 0.1, 1.0, 0.3)
    assert 1 - g == pytest.approx(correlation_map("tanh", 1.5, 0.1, 1.0, 0.7), abs=1e-14)


def test_slopes_are_derivatives():
    for act in ("tanh", "elu", "relu", "gelu"):
        q, h = 0.8, 1e-5
        fd = (variance_map(act, 1.4, 0.3, q + h) - variance_map(act, 1.4, 0.3, q - h)) / (2 * h)
        assert variance_map_slope(act, 1.4, 0.3, q) == pytest.approx(fd, rel=1e-7)
        c = 0.4
        fd = (correlation_map(act, 1.4, 0.3, q, c + h) - correlation_map(act, 1.4, 0.3, q, c - h))
        assert correlation_map_slope(act, 1.4, 0.3, q, c) == pytest.approx(fd / (2 * h), rel=1e-6)


def test_fixed_point_is_what_iteration_reaches():
    for act, sw, sb in (("tanh", 1.5, 0.2), ("elu", 1.1, 0.5), ("sigmoid", 3.0, 0.1)):
        q = 1.0
        for _ in range(400):
            q = variance_map(act, sw, sb, q)
        fp = fixed_point(act, sw, sb)
        assert fp.q == pytest.approx(q, rel=1e-9) and fp.stable and fp.slope < 1
        assert variance_map(act, sw, sb, fp.q) == pytest.approx(fp.q, rel=1e-12)
    assert fixed_point("tanh", 0.8, 0.0).q == 0.0  # ordered, no bias: the variance dies out
    assert fixed_point("relu", 1.0, 0.5).q == pytest.approx(0.25 / 0.5)
    np.testing.assert_allclose(fixed_points("tanh", [1.5, 2.0], 0.2),
                               [fixed_point("tanh", s, 0.2).q for s in (1.5, 2.0)])


def test_fixed_point_diverges_is_value_error():
    with pytest.raises(ValueError, match="diverges"):
        fixed_point("relu", 2.0, 0.1)
    with pytest.raises(ValueError, match="diverges"):
        fixed_point("elu", 3.0, 0.1)


def test_chi1_and_depth_scales():
    fp = fixed_point("tanh", 1.1, 0.3)
    c1 = chi1("tanh", 1.1, 0.3)
    assert c1 == pytest.approx(1.1**2 * get_activation("tanh").mean_dsq(fp.q))
    xi_q, xi_c = depth_scales("tanh", 1.1, 0.3)
    assert c1 < 1 and xi_c == pytest.approx(-1 / math.log(c1))
    assert xi_q == pytest.approx(-1 / math.log(fp.slope))
    # chaotic: c* < 1 is a fixed point of the correlation map, attracting
    q = fixed_point("tanh", 2.5, 0.2).q
    c_star, slope = correlation_fixed_point("tanh", 2.5, 0.2, q)
    assert c_star < 1 and slope < 1
    assert correlation_map("tanh", 2.5, 0.2, q, c_star) == pytest.approx(c_star, abs=1e-12)
    assert depth_scales("tanh", 2.5, 0.2)[1] == pytest.approx(-1 / math.log(slope))
    # on the EOC xi_c is infinite; ReLU's xi_q too (slope 1), tanh's is finite
    p = edge_of_chaos("tanh", 0.2)
    xi_q, xi_c = depth_scales("tanh", p.sigma_w, p.sigma_b, q=p.q)
    assert xi_c == math.inf and math.isfinite(xi_q)
    assert depth_scales("relu", math.sqrt(2), 0.0, q=1.0) == (math.inf, math.inf)


@pytest.mark.parametrize("call,match", [
    (lambda: variance_map("tanh", -1.0, 0.1, 1.0), "sigma_w must be > 0, got -1.0"),
    (lambda: variance_map("tanh", 1.0, -0.1, 1.0), "sigma_b must be >= 0"),
    (lambda: variance_map("tanh", 1.0, 0.1, [1.0, -2.0]), "q must be >= 0, got -2.0"),
    (lambda: correlation_map("tanh", 1.0, 0.1, 1.0, 1.5), r"c must be in \[-1, 1\], got 1.5"),
    (lambda: variance_map("nope", 1.0, 0.1, 1.0), "unknown activation 'nope'"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
