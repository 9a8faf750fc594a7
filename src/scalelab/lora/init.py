"""``init_lora_``: the two LoRA initialisations of arXiv 2406.08447, Init[A] and Init[B]."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import check_choice
from .find import LoraFactors, lora_factor_pairs, lora_layers


def _fan_in(factor: torch.Tensor) -> int:
    """Inputs feeding one output unit: ``in`` for (out, in), ``in * k * k`` for conv kernels."""
    return factor[0].numel()


def _init_pair(f: LoraFactors, scheme: str, generator: torch.Generator | None) -> None:
    random, zero = (f.A, f.B) if scheme == "A" else (f.B, f.A)
    # An embedding's A is read one column at a time (one-hot input of norm 1): fan-in 1.
    fan_in = 1 if (f.lookup and random is f.A) else _fan_in(random)
    random.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
    zero.zero_()
    if f.B_bias is not None:
        f.B_bias.zero_()


def init_lora_(model: nn.Module, scheme: str = "A", *,
               generator: torch.Generator | None = None) -> int:
    """Re-initialise every LoRA factor pair of ``model`` in place; both schemes start at BA = 0.

    Args:
        model: a model with PEFT ``LoraLayer`` layers (Linear, Conv, Embedding, ...) or
            scalelab ``LoRALinear`` layers; every adapter of every layer is initialised.
        scheme: ``"A"`` — Init[A]: ``A ~ N(0, 1/fan_in(A))``, ``B = 0`` (the usual choice);
            ``"B"`` — Init[B]: ``A = 0``, ``B ~ N(0, 1/fan_in(B)) = N(0, 1/r)``.
            ``fan_in`` is the number of inputs of one output unit (``in_features`` for A of a
            Linear, ``in_channels * prod(kernel)`` for a Conv; ``r`` for B, times the B
            kernel size, which is 1 for PEFT's 1x1 conv B). The distribution is a Gaussian
            with exactly that variance (PEFT's default for A is instead kaiming-uniform with
            ``a = sqrt(5)``, i.e. ``U(-1/sqrt(in), 1/sqrt(in))``, variance ``1/(3 in)``).
            Embedding LoRA (interpretation): A is looked up column by column for one-hot
            tokens, so its fan-in is 1 and Init[A] draws ``A ~ N(0, 1)``; Init[B] draws
            ``B ~ N(0, 1/r)``. A ``lora_B`` bias (PEFT ``lora_bias=True``) is set to 0.
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        The number of LoRA layers initialised.

    Raises:
        ValueError: ``scheme`` not ``"A"``/``"B"``, or no LoRA layer with factors in ``model``.

    Paper: arXiv 2406.08447 (The Impact of Initialization on LoRA Finetuning Dynamics):
    Init[A] allows larger stable learning rates (Theta(n^-1/2) vs Theta(n^-1)) and learns
    features more efficiently; Init[B] is stabler but undertrains B.
    """
    check_choice("scheme", scheme, ("A", "B"))
    count = 0
    with torch.no_grad():
        for layer in lora_layers(model):
            pairs = list(lora_factor_pairs(layer))
            for pair in pairs:
                _init_pair(pair, scheme, generator)
            count += bool(pairs)
    if count == 0:
        raise ValueError(f"found no LoRA layers in {type(model).__name__} to initialise; wrap it "
                         "with peft.get_peft_model or scalelab.lora.add_lora first")
    return count
