"""One home for activations, reference models and tensor lookups (issue 21), and the theory
records the callers now read (phase_point, EOCPoint.q_eval)."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from scalelab.cli import main
from scalelab.nn import (
    MODEL_FAMILIES,
    TORCH_ACTIVATIONS,
    ConvResNet,
    ResidualMLP,
    activation_module,
    build_model,
    detect_activation,
    model_device,
    model_dtype,
    module_activation,
    reference_mlp,
    reference_model,
    xy_tensors,
)
from scalelab.theory import (
    ACTIVATIONS,
    activation_names,
    edge_of_chaos,
    get_activation,
    phase,
    phase_point,
    variance_map,
)

# --- the activation table ---------------------------------------------------------------------
PARAMS = {"elu": {"alpha": 0.5}, "leaky_relu": {"slope": 0.2}, "softplus": {"beta": 2.0}}


def test_table_is_keyed_by_the_theory_registry():
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("with_params", [False, True])
def test_every_theory_activation_maps_both_ways_and_computes_the_same_function(name, with_params):
    params = PARAMS.get(name, {}) if with_params else {}
    act = get_activation(name, **params)
    # name -> module: the torch forward equals the theory's numpy function on a grid (two
    # independent implementations)
    x = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64)
    module = activation_module(act) if params else activation_module(name)
    np.testing.assert_allclose(module(x).numpy(), act(x.numpy()), atol=1e-6, err_msg=name)
    # module -> name: the inverse gives back the same activation and parameters
    back = module_activation(module)
    assert back is not None and back.name == act.name and dict(back.params) == dict(act.params)


def test_inverse_reads_settings_and_rejects_others():
    assert module_activation(nn.GELU(approximate="tanh")).name == "gelu_tanh"
    assert module_activation(nn.GELU()).name == "gelu"
    assert dict(module_activation(nn.ELU(0.3)).params) == {"alpha": 0.3}
    assert module_activation(nn.Linear(2, 2)) is None
    assert module_activation(nn.Hardtanh()) is None

    class MyTanh(nn.Tanh):  # a subclass may compute something else: not recognised
        pass

    assert module_activation(MyTanh()) is None
    # nn.Identity ("linear") is a placeholder, not the model's activation
    assert detect_activation(nn.Sequential(nn.Linear(2, 2), nn.Identity(), nn.Tanh())).name \
        == "tanh"


def test_activation_names_lists_every_registered_name_once():
    text = activation_names()
    words = [w.strip("()") for w in text.replace(",", " ").split()]
    assert sorted(words) == sorted(ACTIVATIONS)
    assert "silu (swish)" in text  # swish is theory's alias of silu


def test_cli_help_lists_the_registry(capsys):
    for cmd in (["eoc", "--help"], ["prune", "--help"]):
        assert main(cmd) == 0
        out = capsys.readouterr().out.replace("│", " ")
        for name in ACTIVATIONS:
            assert name in out, (cmd, name)


# --- reference models ---------------------------------------------------------------------------
def test_old_homes_are_aliases_of_the_same_objects():
    import scalelab.diagnostics as diagnostics
    from scalelab.diagnostics import models
    from scalelab.experiments import pruning_at_init

    assert diagnostics.reference_mlp is reference_mlp
    assert diagnostics.reference_model is reference_model
    assert models.reference_mlp is reference_mlp
    assert pruning_at_init.build_model is build_model
    assert pruning_at_init.MODEL_FAMILIES is MODEL_FAMILIES
    with pytest.raises(AttributeError):
        pruning_at_init.no_such_name  # noqa: B018


def test_build_model_mlp_weights_on_the_edge_of_chaos():
    # depth hidden layers -> depth + 1 Linear layers; hidden weights N(0, sigma_w^2 / fan_in)
    # with sigma_w from the theory (Monte Carlo over 160,000 entries: relative s.e. of the
    # variance sqrt(2/n) = 0.35%, tolerance 3%)
    net = build_model("mlp", 400, 10, depth=3, width=400, init="eoc", act="tanh", seed=1)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    pt = edge_of_chaos("tanh")
    var = float(linears[1].weight.detach().double().var()) * 400
    assert var == pytest.approx(pt.sigma_w**2, rel=0.03)
    assert float(linears[1].bias.detach().double().std()) == pytest.approx(pt.sigma_b, rel=0.25)
    same = build_model("mlp", 400, 10, depth=3, width=400, seed=1)
    other = build_model("mlp", 400, 10, depth=3, width=400, seed=2)
    assert torch.equal(same[0].weight, net[0].weight)
    assert not torch.equal(other[0].weight, net[0].weight)


def test_build_model_resnets_and_errors():
    net = build_model("resnet", 8, 3, depth=4, width=16, init="stable", act="relu")
    assert isinstance(net, ResidualMLP) and len(net.blocks) == 4
    assert [float(b.scale) for b in net.blocks] == pytest.approx([1 / math.sqrt(4)] * 4)
    conv = build_model("conv-resnet", 16, 3, depth=2, width=4, init="standard",
                       act="relu", image_shape=(1, 4, 4))
    assert isinstance(conv, ConvResNet) and conv(torch.zeros(2, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="image_shape"):
        build_model("conv-resnet", 16, 3, depth=2, width=4, init="standard")
    with pytest.raises(ValueError, match="model"):
        build_model("transformer", 16, 3, depth=2, width=4)
    with pytest.raises(ValueError, match="init"):
        build_model("resnet", 16, 3, depth=2, width=4, init="eoc")


# --- tensor lookups -------------------------------------------------------------------------------
def test_model_device_and_dtype():
    assert model_device(nn.ReLU()) == torch.device("cpu")
    assert model_device(nn.ReLU(), default=None) is None
    assert model_dtype(nn.ReLU()) == torch.get_default_dtype()
    assert model_dtype(nn.Linear(2, 2).double()) == torch.float64
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")


def test_xy_tensors_forms():
    x, y = xy_tensors((np.ones((3, 2)), [0, 1, 1]))
    assert torch.equal(x, torch.ones(3, 2, dtype=torch.float64))
    assert torch.equal(y, torch.tensor([0, 1, 1]))

    class Split:
        x_train, y_train = torch.zeros(2, 1), torch.ones(2)

    got = xy_tensors(Split())
    assert got[0] is Split.x_train and got[1] is Split.y_train
    assert xy_tensors("nope") is None and xy_tensors((1, 2, 3)) is None


# --- theory records -------------------------------------------------------------------------------
def test_phase_point_smooth_matches_an_independent_quadrature():
    pt = phase_point("tanh", 3.0, 0.2)
    assert pt.phase == phase("tanh", 3.0, 0.2) == "chaotic"
    assert float(variance_map("tanh", 3.0, 0.2, pt.q)) == pytest.approx(pt.q, rel=1e-8)
    from scipy.integrate import quad

    def integrand(z):
        return (1 - math.tanh(math.sqrt(pt.q) * z) ** 2) ** 2 * math.exp(-z * z / 2)

    e_dsq = quad(integrand, -12, 12, epsabs=1e-13, epsrel=1e-12, limit=200)[0] \
        / math.sqrt(2 * math.pi)
    assert pt.chi1 == pytest.approx(9.0 * e_dsq, rel=1e-8)


def test_phase_point_relu_like_closed_form_and_json(capsys):
    # ReLU: chi1 = sigma_w^2 / 2 whatever q; at sigma_w = 1.5, sigma_b = 0.3 the variance
    # diverges (q is NaN) but chi1 is still the closed form
    pt = phase_point("relu", 1.5, 0.3)
    assert math.isnan(pt.q) and pt.chi1 == pytest.approx(1.125) and pt.phase == "chaotic"
    assert phase_point("relu", math.sqrt(2), 0.0).phase == "edge"
    ordered = phase_point("relu", 1.0, 0.5)  # q* = sigma_b^2 / (1 - sigma_w^2 / 2) = 0.5
    assert ordered.q == pytest.approx(0.5) and ordered.phase == "ordered"
    assert main(["phase", "relu", "--sigma-w", "1.5", "--sigma-b", "0.3", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec == {"activation": "relu", "sigma_w": 1.5, "sigma_b": 0.3, "q": None,
                   "chi1": pytest.approx(1.125), "phase": "chaotic"}


def test_q_eval_is_q_star_or_one_for_relu_like():
    assert edge_of_chaos("relu").q is None and edge_of_chaos("relu").q_eval == 1.0
    pt = edge_of_chaos("tanh", 0.2)
    assert pt.q_eval == pt.q
