"""``create_loraplus_optimizer``: LoRA+ parameter groups handed to any torch optimizer class."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ..errors import ScalelabWarning, check_positive
from .groups import DEFAULT_RATIO, loraplus_param_groups

# Optimizers that adapt one global step size and ignore each group's "lr" (they read only
# max(group["lr"]) or use it as an on/off switch), so the LoRA+ ratio would silently vanish:
# Prodigy (prodigyopt), D-Adaptation (DAdaptAdam, DAdaptSGD, DAdaptAdaGrad, DAdaptLion, ...),
# DoG/LDoG/PDoG. Matched against the lower-cased class name.
LR_FREE_NAME_PATTERNS: tuple[str, ...] = ("prodigy", "dadapt")
LR_FREE_NAMES: frozenset[str] = frozenset({"dog", "ldog", "pdog"})

_GROUP_KWARGS = ("weight_decay", "lr_embedding", "head_lr")
_BNB_8BIT = ("Adam8bit", "AdamW8bit", "PagedAdam8bit", "PagedAdamW8bit")


def ignores_group_lr(optimizer_cls: Any) -> bool:
    """True for optimizer classes known to ignore per-group learning rates (Prodigy-style).

    The registry is ``LR_FREE_NAME_PATTERNS`` (substrings) and ``LR_FREE_NAMES`` (exact
    names), both matched against the lower-cased class name; a class may also declare
    ``ignores_group_lr = True``.
    """
    if getattr(optimizer_cls, "ignores_group_lr", False) is True:
        return True
    name = getattr(optimizer_cls, "__name__", type(optimizer_cls).__name__).lower()
    return name in LR_FREE_NAMES or any(p in name for p in LR_FREE_NAME_PATTERNS)


def _keep_embeddings_32bit(model: nn.Module, optimizer_cls: Any, kw: dict) -> None:
    """bitsandbytes 8-bit optimizers need embeddings in 32-bit state (as PEFT and HF do)."""
    eight_bit = getattr(optimizer_cls, "__name__", "") in _BNB_8BIT or (
        "bitsandbytes" in str(optimizer_cls) and kw.get("optim_bits") == 8)
    if not eight_bit:
        return
    import bitsandbytes

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})


def create_loraplus_optimizer(model: nn.Module, optimizer_cls: Any = torch.optim.AdamW, *,
                              lr: float, ratio: float = DEFAULT_RATIO, **kw: Any) -> torch.optim.Optimizer:
    """Build ``optimizer_cls`` over :func:`loraplus_param_groups` of ``model``.

    Args:
        model: a model with LoRA layers (PEFT or scalelab's ``LoRALinear``).
        optimizer_cls: any optimizer class taking ``(param_groups, lr=..., **kwargs)``.
        lr: learning rate of the A factors; also passed to the optimizer as its default.
        ratio: ``lr_B / lr_A``.
        **kw: ``weight_decay``, ``lr_embedding`` and ``head_lr`` go to
            :func:`loraplus_param_groups` with its defaults (so weight decay is 0.0 unless
            given, whatever the optimizer's own default); ``allow_lr_free=True`` lets an
            optimizer that ignores per-group lr through with a ``ScalelabWarning``; every
            other keyword goes to the optimizer (``betas``, ``eps``, ``fused``, ...).

    Raises:
        ValueError: bad ``lr``/``ratio``, no trainable LoRA parameters (see
            :func:`loraplus_param_groups`), or an optimizer that ignores per-group learning
            rates (Prodigy, D-Adaptation, DoG; see :func:`ignores_group_lr`), which would
            silently drop the ratio, unless ``allow_lr_free=True``.

    Paper: arXiv 2402.12354 (LoRA+).
    """
    allow_lr_free = bool(kw.pop("allow_lr_free", False))
    group_kw = {k: kw.pop(k) for k in _GROUP_KWARGS if k in kw}
    lr = check_positive("lr", lr)
    if not callable(optimizer_cls):
        raise ValueError(f"optimizer_cls must be an optimizer class, got {optimizer_cls!r}")
    if ignores_group_lr(optimizer_cls):
        name = getattr(optimizer_cls, "__name__", repr(optimizer_cls))
        message = (f"optimizer_cls={name} ignores per-group learning rates, so the LoRA+ ratio "
                   "would have no effect")
        if not allow_lr_free:
            raise ValueError(f"{message}; use AdamW/Adam/SGD-style optimizers, or pass "
                             "allow_lr_free=True to use it anyway")
        warnings.warn(message + " (allow_lr_free=True)", ScalelabWarning, stacklevel=2)
    groups = loraplus_param_groups(model, lr=lr, ratio=ratio, **group_kw)
    optimizer = optimizer_cls(groups, lr=lr, **kw)
    _keep_embeddings_32bit(model, optimizer_cls, kw)
    return optimizer
