"""The Edge-of-Chaos solver: ReLU's point, erf's closed form, chi1 = 1, stability, rates."""

import math

import numpy as np
import pytest

import scalelab
from scalelab.theory import (
    convergence_rate,
    correlation_gap_map,
    correlation_map,
    default_sigma_b,
    edge_of_chaos,
    eoc_curve,
    fixed_point,
    get_activation,
    phase,
    phase_diagram,
    variance_map,
)

SMOOTH = ("tanh", "erf", "elu", "selu", "gelu", "gelu_tanh", "silu", "sigmoid")


def test_relu_like_single_point():
    p = edge_of_chaos("relu")
    assert (p.sigma_b, p.q, p.stable) == (0.0, None, True)
    assert p.sigma_w == pytest.approx(math.sqrt(2), abs=1e-15)
    lr = edge_of_chaos(get_activation("leaky_relu", slope=0.2))
    assert lr.sigma_w == pytest.approx(math.sqrt(2 / (1 + 0.04)), abs=1e-15)
    assert edge_of_chaos("abs").sigma_w == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sigma_b must be 0 for the ReLU-like activation 'relu'"):
        edge_of_chaos("relu", 0.1)
    with pytest.raises(ValueError, match="sigma_b must be 0"):
        eoc_curve("leaky_relu", [0.0, 0.5])
    # detected by the piecewise-linear property, also for a user callable
    assert edge_of_chaos(lambda x: np.maximum(x, 0.0)).sigma_w == pytest.approx(math.sqrt(2))


def test_erf_matches_closed_form_parametrisation():
    for sb in (0.01, 0.1, 0.3, 1.0, 2.5):
        p = edge_of_chaos("erf", sb)
        q = p.q
        assert p.sigma_w**2 == pytest.approx(math.pi / 4 * math.sqrt(1 + 4 * q), abs=1e-8)
        sb2 = q - 0.5 * math.sqrt(1 + 4 * q) * math.asin(2 * q / (1 + 2 * q))
        assert sb**2 == pytest.approx(sb2, abs=1e-8)
        # the quadrature path gives the same point
        pn = edge_of_chaos(get_activation("erf").numeric(), sb)
        assert pn.sigma_w == pytest.approx(p.sigma_w, abs=1e-9) and pn.q == pytest.approx(q, 1e-9)


@pytest.mark.parametrize("act", SMOOTH)
def test_chi1_is_one_and_q_is_a_fixed_point_on_the_curve(act):
    sbs = np.linspace(0.05, 2.0, 25)
    for p in eoc_curve(act, sbs):
        assert abs(p.chi1 - 1) < 1e-9
        assert variance_map(act, p.sigma_w, p.sigma_b, p.q) == pytest.approx(p.q, rel=1e-9)
        c = get_activation(act)
        assert p.sigma_w**2 * float(c.mean_dsq(p.q)) == pytest.approx(1.0, abs=1e-9)


def test_eoc_curve_equals_pointwise_solutions_and_q_in_the_tens():
    sbs = [0.3, 1.0, 3.0]
    for a in ("tanh", "silu"):
        curve = eoc_curve(a, sbs)
        for sb, p in zip(sbs, curve, strict=True):
            assert p == edge_of_chaos(a, sb)
    assert edge_of_chaos("silu", 1.5).q > 10  # the bracket widens far beyond q = 1


def test_stability_flags():
    # SiLU / GELU: the EOC fixed point repels at small sigma_b and attracts at large sigma_b
    for act, small, large in (("silu", 0.3, 1.0), ("gelu", 0.2, 0.6)):
        assert not edge_of_chaos(act, small).stable
        assert edge_of_chaos(act, large).stable
        p = edge_of_chaos(act, small)
        # repels: starting slightly off q*, the iteration moves away from it
        q = p.q * 1.01
        for _ in range(20):
            q = variance_map(act, p.sigma_w, p.sigma_b, q)
        assert abs(q - p.q) > 0.02 * p.q
    for act in ("tanh", "erf", "elu", "selu"):
        assert all(p.stable for p in eoc_curve(act, np.linspace(0.05, 2.0, 9)))
    # at sigma_b = 0 the curve ends at q* = 0, sigma_w = 1/|phi'(0)|
    assert edge_of_chaos("tanh", 0.0) == scalelab.EOCPoint(0.0, 1.0, 0.0, 1.0, True)
    assert edge_of_chaos("silu", 0.0).sigma_w == pytest.approx(2.0)


def test_no_solution_is_value_error():
    with pytest.raises(ValueError, match="no Edge of Chaos point for act='softplus'"):
        edge_of_chaos("softplus", 0.5)
    assert eoc_curve("softplus", [0.2, 0.4], skip_missing=True) == []
    with pytest.raises(ValueError, match="sigma_b must be >= 0"):
        edge_of_chaos("tanh", -0.1)


def test_defaults():
    assert default_sigma_b("relu") == 0.0 and default_sigma_b("tanh") == 0.2
    assert edge_of_chaos("silu").stable and edge_of_chaos("gelu").stable
    assert edge_of_chaos("tanh") == edge_of_chaos("tanh", 0.2)


def test_phase():
    p = edge_of_chaos("tanh", 0.3)
    assert phase("tanh", p.sigma_w, 0.3) == "edge"
    assert phase("tanh", 0.9 * p.sigma_w, 0.3) == "ordered"
    assert phase("tanh", 1.1 * p.sigma_w, 0.3) == "chaotic"
    assert phase("relu", math.sqrt(2), 0.0) == "edge"
    assert phase("relu", 1.0, 0.0) == "ordered"
    assert phase("elu", 3.0, 0.2) == "chaotic"  # the variance diverges
    d = phase_diagram("tanh", np.linspace(0, 1, 6), np.linspace(0.5, 2.5, 7))
    assert d.chi1.shape == (7, 6)
    for i, sw in enumerate(d.sigma_w):
        for j, sb in enumerate(d.sigma_b):
            q = fixed_point("tanh", sw, sb).q
            assert d.q[i, j] == pytest.approx(q, rel=1e-9, abs=1e-300)


def test_relu_convergence_rate():
    """On the EOC, l^2 (1 - c_l) -> 9 pi^2 / 2 (iterating the correlation map itself)."""
    rate = convergence_rate("relu")
    assert (rate.power, rate.constant) == (2, pytest.approx(9 * math.pi**2 / 2))
    c, vals = 0.0, {}
    for layer in range(1, 4001):
        c = correlation_map("relu", math.sqrt(2), 0.0, 1.0, c)
        if layer in (2000, 4000):
            vals[layer] = layer**2 * (1 - c)
    assert vals[4000] == pytest.approx(rate.constant, rel=0.02)
    # the remaining error is O(1/l): Richardson extrapolation lands within 0.3%
    assert 2 * vals[4000] - vals[2000] == pytest.approx(rate.constant, rel=0.003)


def test_tanh_convergence_rate():
    """On the EOC, l (1 - c_l) -> beta_q = 2 E[phi'^2] / (q E[phi''^2])."""
    p = edge_of_chaos("tanh", 0.2)
    rate = convergence_rate("tanh", 0.2)
    a = get_activation("tanh")
    beta = 2 * a.mean_dsq(p.q) / (p.q * a.mean_d2sq(p.q))
    assert rate.power == 1 and rate.constant == pytest.approx(beta, rel=1e-12)
    gap = 0.5
    for _ in range(500):
        gap = correlation_gap_map("tanh", p.sigma_w, p.sigma_b, p.q, gap)
    assert 500 * gap == pytest.approx(beta, rel=0.015)


def test_rate_errors():
    with pytest.raises(ValueError, match="linear"):
        convergence_rate("linear")
    with pytest.raises(ValueError, match="sigma_b > 0"):
        convergence_rate("tanh", 0.0)


@pytest.mark.slow
def test_selu_convergence_rate_slow():
    """SELU's phi' jumps at 0: 1 - c_l ~ 18 pi^2 E[phi'^2]^2 / (J^4 l^2) (slow approach)."""
    p = edge_of_chaos("selu", 0.2)
    rate = convergence_rate("selu", 0.2)
    gap = 0.5
    for _ in range(3000):
        gap = correlation_gap_map("selu", p.sigma_w, p.sigma_b, p.q, gap)
    assert rate.power == 2 and 3000**2 * gap == pytest.approx(rate.constant, rel=0.05)
