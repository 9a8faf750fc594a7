"""Find LoRA layers and their factors by the type of the module that owns them.

Two layer families are recognised: PEFT's ``LoraLayer`` (``peft.tuners.lora.layer``; it covers
``Linear``, ``Embedding``, ``Conv1d/2d/3d``, ``MultiheadAttention`` and the quantised variants,
which all subclass it) and scalelab's own :class:`~scalelab.lora.LoRALinear`. PEFT is never
imported here: if ``peft.tuners.lora.layer`` is not in ``sys.modules``, no model can hold one
of its layers, so there is nothing to look for.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .layers import LoRALinear

# Kinds a LoRA layer's own parameters can have; everything else in a model is "other".
LORA_A, LORA_B, EMBEDDING, MAGNITUDE = "lora_A", "lora_B", "embedding", "lora_magnitude"

# Where LoRA parameters sit inside a LoRA layer, by attribute name. PEFT keeps them in
# sub-containers (ModuleDicts with one sub-module per adapter for A/B of Linear and Conv and for
# DoRA magnitudes; ParameterDicts with one tensor per adapter for embedding LoRA); LoRALinear
# holds lora_A/lora_B as its own parameters.
_CONTAINER_KIND = {"lora_A": LORA_A, "lora_B": LORA_B, "lora_embedding_A": EMBEDDING,
                   "lora_embedding_B": EMBEDDING, "lora_magnitude_vector": MAGNITUDE}
_DIRECT_KIND = {"lora_A": LORA_A, "lora_B": LORA_B}


def peft_lora_layer_type() -> type | None:
    """PEFT's ``LoraLayer`` class if PEFT's LoRA layers are imported, else ``None``."""
    module = sys.modules.get("peft.tuners.lora.layer")
    return getattr(module, "LoraLayer", None) if module is not None else None


def lora_layer_types() -> tuple[type, ...]:
    """The module types whose parameters are LoRA factors (scalelab's, plus PEFT's if loaded)."""
    peft_type = peft_lora_layer_type()
    return (LoRALinear,) if peft_type is None else (LoRALinear, peft_type)


def walk(model: nn.Module) -> Iterator[tuple[nn.Module, bool, str | None]]:
    """Visit every module once, parents first; yield ``(module, is_lora_layer, kind)``.

    ``kind`` is the LoRA kind (``"lora_A"``, ``"lora_B"``, ``"embedding"``,
    ``"lora_magnitude"``) of the container ``module`` sits in, if it sits inside a LoRA
    layer's container, else ``None``; :func:`param_kind` turns it into the kind of each of
    ``module``'s own parameters. One pass, without ``named_modules``' name strings, which
    dominate its cost on models with thousands of modules.
    """
    types, is_lora = lora_layer_types(), {}
    seen, stack = {id(model)}, [(model, None)]
    while stack:
        module, kind = stack.pop()
        cls = type(module)
        lora = is_lora.get(cls)
        if lora is None:  # isinstance on PEFT's ABC-based layers is slow: cache by type
            lora = is_lora[cls] = issubclass(cls, types)
        yield module, lora, kind
        children = []
        for name, child in module._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                children.append((child, _CONTAINER_KIND.get(name) if lora else kind))
        stack.extend(reversed(children))


def param_kind(name: str, is_lora_layer: bool, kind: str | None) -> str | None:
    """LoRA kind of the parameter ``name`` owned directly by a module ``walk`` yielded."""
    return _DIRECT_KIND.get(name) if is_lora_layer else kind


@dataclass(frozen=True)
class LoraFactors:
    """One adapter's factor pair in one layer: ``delta W = scaling * B A``.

    ``lookup`` is True for embedding LoRA, where A is read column by column (one-hot inputs),
    so its effective fan-in is 1 rather than the vocabulary size. ``B_bias`` is PEFT's
    ``lora_bias`` term, if any.
    """

    layer: nn.Module
    adapter: str
    A: torch.Tensor
    B: torch.Tensor
    lookup: bool
    B_bias: torch.Tensor | None = None


def lora_factor_pairs(layer: nn.Module) -> Iterator[LoraFactors]:
    """Yield the (A, B) factor pairs of a LoRA layer, one per adapter."""
    if isinstance(layer, LoRALinear):
        yield LoraFactors(layer, "default", layer.lora_A, layer.lora_B, lookup=False)
        return
    lora_A, lora_B = getattr(layer, "lora_A", {}), getattr(layer, "lora_B", {})
    for adapter in lora_A:
        a, b = getattr(lora_A[adapter], "weight", None), getattr(lora_B[adapter], "weight", None)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            bias = getattr(lora_B[adapter], "bias", None)
            yield LoraFactors(layer, adapter, a, b, lookup=False,
                              B_bias=bias if isinstance(bias, torch.Tensor) else None)
    emb_A, emb_B = getattr(layer, "lora_embedding_A", {}), getattr(layer, "lora_embedding_B", {})
    for adapter in emb_A:
        yield LoraFactors(layer, adapter, emb_A[adapter], emb_B[adapter], lookup=True)


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """All LoRA layers of ``model`` (PEFT ``LoraLayer`` or scalelab ``LoRALinear``), in order."""
    return [module for module, lora, _ in walk(model) if lora]
