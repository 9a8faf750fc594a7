"""eoc_normal_ / init_eoc_: distribution (KS test) and a tanh MLP measured on the EOC."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from scalelab import ScalelabWarning
from scalelab.nn import detect_activation, eoc_normal_, init_eoc_, init_gaussian_
from scalelab.theory import chi1, edge_of_chaos, fixed_point


def test_eoc_normal_ks():
    w = torch.empty(400, 600)
    g = torch.Generator().manual_seed(0)
    eoc_normal_(w, "tanh", sigma_b=0.2, generator=g)
    sw = edge_of_chaos("tanh", 0.2).sigma_w
    x = w.flatten().numpy()
    assert stats.kstest(x, "norm", args=(0, sw / math.sqrt(600))).pvalue > 0.01
    assert stats.kstest(x, "norm", args=(0, 1 / math.sqrt(600))).pvalue < 1e-6  # LeCun's scale
    conv = torch.empty(32, 16, 3, 3)
    eoc_normal_(conv, "relu", generator=g)
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.03)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        eoc_normal_(torch.empty(5), "tanh")


def _mlp(act, width=600, depth=20, d_in=64):
    layers = [nn.Linear(d_in, width), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), act()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def _jacobian_gain(model, x, v):
    """Per-layer growth of a tangent vector through the hidden stack: (|J v|^2 / |v|^2)^(1/L)."""
    hidden = nn.Sequential(*list(model)[1:-2])  # first to last hidden pre-activation
    h0 = model[0](x)
    _, jv = torch.autograd.functional.jvp(hidden, h0, v)
    n_lin = sum(isinstance(m, nn.Linear) for m in hidden)
    return ((jv**2).sum() / (v**2).sum()).item() ** (1 / n_lin)


def test_init_eoc_puts_tanh_mlp_on_the_edge():
    torch.manual_seed(0)
    pt = edge_of_chaos("tanh", 0.2)

    def inputs(sw, q):  # first pre-activations of variance q (already at the fixed point)
        return torch.randn(16, 64, dtype=torch.float64) * math.sqrt((q - 0.04) / sw**2)

    x = inputs(pt.sigma_w, pt.q)
    v = torch.randn(16, 600, dtype=torch.float64)
    model = _mlp(nn.Tanh).double()
    init_eoc_(model, generator=torch.Generator().manual_seed(1))  # tanh detected, sigma_b 0.2
    assert model[0].bias.std().item() == pytest.approx(0.2, rel=0.15)
    gain = _jacobian_gain(model, x, v)
    # width 600, 19 layers, 16 inputs: the measured gain per layer fluctuates by ~1%
    assert gain == pytest.approx(1.0, abs=0.03)
    # off the EOC the same measurement finds chi1 of the (sigma_w, sigma_b) point
    init_gaussian_(model, 1.3 * pt.sigma_w, 0.2, generator=torch.Generator().manual_seed(1))
    c1 = chi1("tanh", 1.3 * pt.sigma_w, 0.2)
    assert c1 > 1.15
    x_off = inputs(1.3 * pt.sigma_w, fixed_point("tanh", 1.3 * pt.sigma_w, 0.2).q)
    assert _jacobian_gain(model, x_off, v) == pytest.approx(c1, rel=0.03)
    # and the empirical variance settles at the theory's q*
    init_eoc_(model, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = model[:-2](x)  # pre-activations of the last hidden layer
    assert h.pow(2).mean().item() == pytest.approx(fixed_point("tanh", pt.sigma_w, 0.2).q,
                                                   rel=0.1)


def test_detection_and_errors():
    assert repr(detect_activation(nn.Sequential(nn.Linear(2, 2), nn.ELU(0.5)))) == \
        "Activation('elu', alpha=0.5)"
    assert detect_activation(nn.Sequential(nn.GELU(approximate="tanh"))).name == "gelu_tanh"
    assert detect_activation(nn.Sequential(nn.LeakyReLU(0.2))).slopes == (1.0, 0.2)
    with pytest.raises(ValueError, match="could not detect the activation.*pass act="):
        init_eoc_(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="several activations"):
        init_eoc_(nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.ReLU()))
    m = init_eoc_(nn.Sequential(nn.Linear(3, 3)), act="relu")
    assert torch.all(m[0].bias == 0)
    with pytest.raises(ValueError, match="sigma_b must be 0"):
        init_eoc_(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), sigma_b=0.1)
    with pytest.raises(ValueError, match="no nn.Linear"):
        init_eoc_(nn.Sequential(nn.Tanh()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ScalelabWarning, match="repels"):
            init_eoc_(nn.Sequential(nn.Linear(3, 3), nn.SiLU()), sigma_b=0.2)
    np.testing.assert_allclose(init_gaussian_(nn.Linear(2, 2), 1.0, 0.0).bias.detach(), 0.0)
