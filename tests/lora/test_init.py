"""init_lora_: Init[A] / Init[B] distributions by seeded KS tests (right law and a wrong one)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from _lora_models import MLP, peft_tiny
from scalelab.lora import LoRALinear, add_lora, init_lora_, lora_layers


def _ks(sample: torch.Tensor, std: float) -> float:
    return stats.kstest(sample.detach().flatten().numpy() / std, "norm").pvalue


def test_init_A_on_lora_linear():
    d_in, d_out, r = 512, 256, 16  # 8192 draws of A
    layer = LoRALinear(nn.Linear(d_in, d_out), r=r)
    assert init_lora_(layer, "A", generator=torch.Generator().manual_seed(0)) == 1
    A = layer.lora_A.detach()
    assert torch.count_nonzero(layer.lora_B) == 0
    assert _ks(A, 1 / math.sqrt(d_in)) > 1e-3  # N(0, 1/fan_in)
    assert _ks(A, math.sqrt(2 / d_in)) < 1e-6  # the wrong variance (He, 2/fan_in)
    bound = 1 / math.sqrt(d_in)  # PEFT's kaiming_uniform(a=sqrt 5): same support scale, not ours
    assert stats.kstest(A.flatten().numpy(), "uniform", args=(-bound, 2 * bound)).pvalue < 1e-6


def test_init_B_on_lora_linear():
    d_in, d_out, r = 64, 1024, 8  # 8192 draws of B
    layer = LoRALinear(nn.Linear(d_in, d_out), r=r)
    init_lora_(layer, "B", generator=torch.Generator().manual_seed(1))
    B = layer.lora_B.detach()
    assert torch.count_nonzero(layer.lora_A) == 0
    assert _ks(B, 1 / math.sqrt(r)) > 1e-3  # N(0, 1/r): r is B's fan-in
    assert _ks(B, 1 / math.sqrt(d_out)) < 1e-6  # fan-out mistaken for fan-in
    assert _ks(B, 1.0) < 1e-6  # PEFT's embedding-style N(0, 1)


@pytest.mark.parametrize("scheme", ["A", "B"])
def test_both_schemes_start_at_the_base_model(scheme):
    model = add_lora(MLP(), "all-linear", r=4)
    x = torch.randn(5, 12)
    init_lora_(model, scheme)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                assert torch.count_nonzero(m.delta_weight()) == 0
        ref = model.head.base(torch.relu(model.fc2.base(model.norm(torch.relu(model.fc1.base(x))))))
        assert torch.equal(model(x), ref)


def test_peft_layers_linear_conv_embedding():
    model = peft_tiny(r=8, d=64)  # emb: 50 x 64, lin: 64 -> 64, conv: 64 -> 64, kernel 3
    assert init_lora_(model, "A", generator=torch.Generator().manual_seed(2)) == 3
    layers = model.base_model.model
    draws = {  # (factor, std, wrong std)
        "lin": (layers.lin.lora_A["default"].weight, 1 / 8, 1 / math.sqrt(8)),
        "conv": (layers.conv.lora_A["default"].weight, 1 / math.sqrt(64 * 3), 1 / 8),
        "emb": (layers.emb.lora_embedding_A["default"], 1.0, 1 / math.sqrt(50)),
    }
    for name, (A, std, wrong) in draws.items():
        # 400-1536 draws per layer: the right law passes, a 1.7-7x wrong scale fails
        assert _ks(A, std) > 1e-3, name
        assert _ks(A, wrong) < 1e-3, name
    for B in (layers.lin.lora_B["default"].weight, layers.conv.lora_B["default"].weight,
              layers.emb.lora_embedding_B["default"]):
        assert torch.count_nonzero(B) == 0


def test_peft_init_B_and_lora_bias():
    model = peft_tiny(r=8, d=64, lora_bias=True)
    with torch.no_grad():
        model.base_model.model.lin.lora_B["default"].bias.fill_(1.0)
    init_lora_(model, "B", generator=torch.Generator().manual_seed(3))
    lin = model.base_model.model.lin
    assert torch.count_nonzero(lin.lora_A["default"].weight) == 0
    assert torch.count_nonzero(lin.lora_B["default"].bias) == 0
    conv_B = model.base_model.model.conv.lora_B["default"].weight  # (64, 8, 1): fan-in 8
    pooled = np.concatenate([lin.lora_B["default"].weight.detach().flatten().numpy(),
                             conv_B.detach().flatten().numpy()])
    assert stats.kstest(pooled * math.sqrt(8), "norm").pvalue > 1e-3
    assert stats.kstest(pooled * 8, "norm").pvalue < 1e-6  # 1/64 (the width) is wrong


def test_seeded_and_counted():
    a = add_lora(MLP(), "all-linear", r=4)
    b = add_lora(MLP(), "all-linear", r=4)
    assert init_lora_(a, "A", generator=torch.Generator().manual_seed(5)) == 3
    init_lora_(b, "A", generator=torch.Generator().manual_seed(5))
    factors = [(m.lora_A, n.lora_A) for m, n in zip(lora_layers(a), lora_layers(b), strict=True)]
    assert len(factors) == 3 and all(torch.equal(p, q) for p, q in factors)
    init_lora_(b, "A", generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a.fc1.lora_A, b.fc1.lora_A)


def test_errors():
    with pytest.raises(ValueError, match="scheme must be one of 'A', 'B'; got 'C'"):
        init_lora_(add_lora(MLP(), "fc1"), "C")
    with pytest.raises(ValueError, match="found no LoRA layers in MLP"):
        init_lora_(MLP(), "A")
