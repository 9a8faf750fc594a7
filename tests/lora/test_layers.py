"""LoRALinear and add_lora: the forward formula, freezing, merge/unmerge, targeting, errors."""

import pytest
import torch
from torch import nn

from _lora_models import MLP
from scalelab.lora import LoRALinear, add_lora, lora_layers


def test_forward_is_Wx_plus_scaled_BAx():
    base = nn.Linear(10, 6)
    layer = LoRALinear(base, r=3, alpha=12.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 10)
    W, b, A, B = base.weight, base.bias, layer.lora_A, layer.lora_B
    expected = x @ W.T + b + (12.0 / 3) * (x @ A.T @ B.T)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert layer.lora_A.shape == (3, 10) and layer.lora_B.shape == (6, 3)
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    assert LoRALinear(nn.Linear(4, 4), r=2).scaling == 1.0  # alpha=None means alpha = r


def test_merge_unmerge_round_trip():
    layer = LoRALinear(nn.Linear(8, 5), r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
    x, w0 = torch.randn(3, 8), layer.base.weight.detach().clone()
    y = layer(x)
    layer.merge()
    layer.merge()  # idempotent
    assert layer.merged and torch.allclose(layer(x), y, atol=1e-5)
    assert torch.allclose(layer.base(x), y, atol=1e-5)
    layer.unmerge()
    assert not layer.merged and torch.allclose(layer.base.weight, w0, atol=1e-6)
    assert "r=2" in repr(layer) and "alpha=4" in repr(layer)


def test_dropout_only_in_training():
    layer = LoRALinear(nn.Linear(16, 16), r=4, dropout=0.5)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(32, 16)
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    layer.train()
    assert not torch.equal(layer(x), layer(x))


def test_add_lora_targets_and_freezing():
    model = add_lora(MLP(), ["fc1", "head"], r=2, alpha=4)
    assert [type(m).__name__ for m in (model.fc1, model.fc2, model.head)] == \
        ["LoRALinear", "Linear", "LoRALinear"]
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["fc1.lora_A", "fc1.lora_B", "head.lora_A", "head.lora_B"]
    assert model.fc1.scaling == 2.0
    x = torch.randn(3, 12)
    assert model(x).shape == (3, 5)


def test_add_lora_all_linear_dotted_suffix_and_repeat():
    model = add_lora(MLP(), "all-linear", r=2)
    assert len(lora_layers(model)) == 3
    model = add_lora(nn.Sequential(MLP(), MLP()), "1.fc2", r=2)
    assert len(lora_layers(model)) == 1 and isinstance(model[1].fc2, LoRALinear)
    add_lora(model, ["fc1"], r=2)  # a second call adapts more layers, keeps the first trainable
    assert len(lora_layers(model)) == 3
    assert model[1].fc2.lora_A.requires_grad
    assert isinstance(add_lora(nn.Linear(3, 3), "all-linear"), LoRALinear)


def test_multihead_attention_out_proj_is_skipped():
    model = nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2), "proj": nn.Linear(8, 8)})
    add_lora(model, "all-linear")
    assert isinstance(model["proj"], LoRALinear)
    assert not isinstance(model["attn"].out_proj, LoRALinear)


def test_add_lora_errors_name_the_missing_targets():
    with pytest.raises(ValueError) as info:
        add_lora(MLP(), ["fc1", "q_proj"])
    msg = str(info.value)
    assert msg.startswith("targets ['q_proj'] matched no nn.Linear in MLP; available: 'fc1', 'fc2'")
    assert "\n" not in msg
    with pytest.raises(ValueError, match="non-empty list"):
        add_lora(MLP(), [])
    with pytest.raises(ValueError, match="has no nn.Linear"):
        add_lora(nn.Sequential(nn.ReLU()), "all-linear")
    with pytest.raises(ValueError, match="r must be an integer >= 1, got 0"):
        add_lora(MLP(), "fc1", r=0)
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(2, 2), r=1, alpha=-1)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        LoRALinear(nn.Linear(2, 2), r=1, dropout=1.0)
    with pytest.raises(ValueError, match="base must be an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1)
