"""branch_scales, ScaledResidual, the reference models and the converter: exact reductions."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalelab.nn import (
    ConvResNet,
    ResidualMLP,
    ScaledResidual,
    branch_scales,
    residual_blocks,
    scale_residual_,
)


def test_branch_scales_closed_forms():
    assert branch_scales(5) == [1.0] * 5
    assert branch_scales(16, "stable") == [0.25] * 16
    assert branch_scales(4, "decreasing", alpha=0.75) == [k ** -0.75 for k in (1, 2, 3, 4)]
    assert branch_scales(32, "depth_mup", base_depth=8) == [0.5] * 32
    assert branch_scales(32, "depth_mup", a=2.0, base_depth=2) == [0.5] * 32
    assert branch_scales(9, "stable", a=3.0) == [1.0] * 9
    # square-summable: sum lambda^2 bounded as L grows (Stable ResNet's condition)
    assert sum(s * s for s in branch_scales(4096, "decreasing")) < math.pi ** 2 / 6 + 1e-9


def test_branch_scales_errors():
    with pytest.raises(ValueError, match="alpha must be > 0.5"):
        branch_scales(4, "decreasing", alpha=0.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        branch_scales(4, "huge")
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        branch_scales(0)
    with pytest.raises(ValueError, match="base_depth"):
        branch_scales(4, "depth_mup", base_depth=0)


def _plain_resnet_forward(model: ResidualMLP, x):
    """A plain ResNet (y + W relu(y)) written out by hand with the model's weights."""
    y = F.linear(x, model.input.weight, model.input.bias)
    for block in model.blocks:
        y = y + F.linear(torch.relu(y), block.branch[1].weight)
    return F.linear(y, model.output.weight, model.output.bias)


def test_scale_one_equals_plain_resnet_exactly():
    torch.manual_seed(0)
    model = ResidualMLP(10, 32, 6, 3, mode="standard").eval()
    x = torch.randn(7, 10)
    assert torch.equal(model(x), _plain_resnet_forward(model, x))
    branch = nn.Sequential(nn.ReLU(), nn.Linear(4, 4))
    z = torch.randn(3, 4)
    assert torch.equal(ScaledResidual(branch, 1.0)(z), z + branch(z))


def test_scaled_residual_scale_and_repr():
    branch = nn.Linear(4, 4)
    z = torch.randn(3, 4)
    m = ScaledResidual(branch, 0.25, drop_prob=0.1)
    assert torch.allclose(m.eval()(z), z + 0.25 * branch(z))
    assert "scale=0.25, drop_prob=0.1" in repr(m)
    m.scale = 0.0
    assert torch.equal(m(z), z)
    with pytest.raises(ValueError, match="drop_prob"):
        ScaledResidual(branch, 1.0, drop_prob=1.5)
    with pytest.raises(ValueError, match="scale"):
        ScaledResidual(branch, -1.0)


def test_models_take_modes_and_drop_probs():
    m = ResidualMLP(8, 16, 9, 2, mode="stable", drop_probs=[0.1 * k for k in range(9)])
    assert [b.scale for b in m.blocks] == pytest.approx([1 / 3] * 9)
    assert [b.drop_prob for b in m.blocks] == pytest.approx([0.1 * k for k in range(9)])
    assert residual_blocks(m) == list(m.blocks)
    c = ConvResNet(1, 8, 5, 10, mode="decreasing", alpha=1.0, image_shape=(1, 8, 8), act="tanh")
    assert [b.scale for b in c.blocks] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert c(torch.randn(3, 64)).shape == (3, 10)
    with pytest.raises(ValueError, match="drop_probs must have one value per block"):
        ResidualMLP(8, 16, 3, 2, drop_probs=[0.1, 0.2])
    with pytest.raises(ValueError, match="act must be one of"):
        ResidualMLP(8, 16, 3, 2, act="nope")
    with pytest.raises(ValueError, match="image_shape"):
        ConvResNet(3, 8, 2, 10, image_shape=(1, 8, 8))


def test_conv_resnet_scale_one_equals_plain():
    torch.manual_seed(1)
    m = ConvResNet(1, 4, 3, 5, mode="standard").eval()
    x = torch.randn(2, 1, 6, 6)
    y = m.stem(x)
    for b in m.blocks:
        y = y + b.branch[1](torch.relu(y))
    assert torch.equal(m(x), m.head(y.mean(dim=(2, 3))))


# --- the converter, on a block written like torchvision's resnet.BasicBlock -------------------

class BasicBlock(nn.Module):
    """Same attributes and forward as torchvision.models.resnet.BasicBlock."""

    def __init__(self, inplanes, planes, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def _tiny_resnet(nblocks=4):
    torch.manual_seed(0)
    blocks = [BasicBlock(3, 6, downsample=nn.Conv2d(3, 6, 1))] + [BasicBlock(6, 6)
                                                                    for _ in range(nblocks - 1)]
    model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    for m in model.modules():  # non-trivial BN statistics so the test sees the scaling
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def _reference(model, x, scales):
    for i, s in enumerate(scales):
        b = model[i]
        out = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x)))))
        identity = b.downsample(x) if b.downsample is not None else x
        x = torch.relu(s * out + identity)
    return model[-1](model[-2](model[-3](x)))


def test_convert_torchvision_style_blocks():
    model = _tiny_resnet(4)
    x = torch.randn(2, 3, 5, 5)
    before = model(x)
    keys = list(model.state_dict())
    conv = copy.deepcopy(model)
    found = scale_residual_(conv, "standard")
    assert len(found) == 4 and residual_blocks(conv) == found
    assert torch.equal(conv(x), before)  # scale 1: exactly the plain ResNet
    scale_residual_(conv, "stable")
    scale_residual_(conv, "stable")  # converting again sets, never stacks, the scale
    assert list(conv.state_dict()) == keys
    assert torch.allclose(conv(x), _reference(model, x, [0.5] * 4), atol=1e-6)
    scale_residual_(conv, "decreasing", alpha=1.0, drop_probs=1.0)
    assert torch.allclose(conv.eval()(x), _reference(model, x, [1, 1 / 2, 1 / 3, 1 / 4]), atol=1e-6)
    # in training mode every branch is dropped (p = 1): only the shortcuts remain
    assert torch.allclose(conv.train()(x), _reference(model, x, [0.0] * 4), atol=1e-6)


def test_convert_custom_block_and_errors():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.lin(torch.tanh(x))

    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(), Block(), Block())
    x = torch.randn(4, 3)
    ref = x
    for b in model:
        ref = ref + 0.5 * b.lin(torch.tanh(ref))
    scale_residual_(model, "stable", branch_tails={Block: "lin"})
    assert torch.allclose(model(x), ref, atol=1e-6)
    with pytest.raises(ValueError, match="no residual blocks"):
        scale_residual_(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="has no submodule 'nope'"):
        scale_residual_(nn.Sequential(Block()), branch_tails={Block: "nope"})


def test_activation_module_matches_theory_activations():
    # scalelab.theory's Activation holds numpy functions; the torch module built from it must
    # compute the same function (an independent implementation: numpy vs torch).
    import numpy as np

    from scalelab.nn import activation_module
    from scalelab.theory import get_activation

    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    cases = [("relu", {}), ("tanh", {}), ("gelu", {}), ("elu", {"alpha": 0.5}),
             ("leaky_relu", {"slope": 0.2}), ("softplus", {"beta": 2.0}), ("silu", {}),
             ("erf", {}), ("abs", {}), ("sigmoid", {})]
    for name, params in cases:
        act = get_activation(name, **params)
        got = activation_module(act)(x).numpy()
        np.testing.assert_allclose(got, act(x.numpy()), atol=1e-6, err_msg=name)
    assert isinstance(activation_module(torch.sin), nn.Module)


def test_scale_by_keep_false_evaluates_the_mean_network():
    # ScaledResidual(scale_by_keep=False): eval is x + scale * (1 - p) * branch(x) exactly;
    # in training each sample's branch is either fully kept (unscaled) or dropped.
    torch.manual_seed(0)
    branch = nn.Linear(4, 4)
    m = ScaledResidual(branch, 0.5, drop_prob=0.3, scale_by_keep=False)
    assert "scale_by_keep=False" in repr(m)
    x = torch.randn(500, 4)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), x + 0.5 * (branch(x) * 0.7))
        y = m.train()(x)
        full, none = x + 0.5 * branch(x), x
    kept = torch.isclose(y, full, atol=1e-6).all(1)
    assert torch.all(kept | torch.isclose(y, none, atol=1e-6).all(1))
    assert 0 < int(kept.sum()) < 500
    with pytest.raises(ValueError, match="scale_by_keep"):
        ScaledResidual(branch, 0.5, scale_by_keep="yes")


def test_convert_sets_scale_by_keep():
    model = _tiny_resnet(2)
    x = torch.randn(2, 3, 5, 5)
    conv = copy.deepcopy(model)
    scale_residual_(conv, "standard", drop_probs=0.25, scale_by_keep=False)
    # eval: the mean network, every branch multiplied by 1 - 0.25
    assert torch.allclose(conv.eval()(x), _reference(model, x, [0.75, 0.75]), atol=1e-6)
    scale_residual_(conv, "standard", drop_probs=0.25)
    assert torch.allclose(conv.eval()(x), _reference(model, x, [1.0, 1.0]), atol=1e-6)
    with pytest.raises(ValueError, match="scale_by_keep"):
        scale_residual_(conv, scale_by_keep=None)
