"""A small plain-torch LoRA layer, and ``add_lora`` to put it into any model without PEFT.

LoRA (Hu et al. 2021, arXiv 2106.09685): ``y = W x + (alpha / r) B A x`` with ``W`` frozen,
``A`` (r x in) and ``B`` (out x r) trained. The default initialisation is Init[A] of
arXiv 2406.08447: ``A ~ N(0, 1/in)``, ``B = 0`` (see :func:`scalelab.lora.init_lora_`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_fraction, check_int, check_positive


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B A dropout(x)`` around a frozen ``nn.Linear``.

    Args:
        base: the linear layer to adapt; its weight and bias are frozen (``requires_grad=False``).
        r: the rank (an integer >= 1).
        alpha: the LoRA scale numerator; ``None`` means ``alpha = r`` (scaling 1).
        dropout: dropout probability on the LoRA branch's input, in [0, 1).

    ``lora_A`` (shape ``(r, in_features)``) and ``lora_B`` (``(out_features, r)``) are plain
    ``nn.Parameter`` attributes (not sub-modules), named as in PEFT so state dicts read alike.
    They start as Init[A]: ``A ~ N(0, 1/in_features)``, ``B = 0``, so the layer first computes
    exactly ``base(x)``. ``merge()`` folds ``scaling * B A`` into the base weight for inference
    (the LoRA branch is then skipped); ``unmerge()`` takes it out again.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        self.r = check_int("r", r)
        self.alpha = float(self.r) if alpha is None else check_positive("alpha", alpha)
        self.scaling = self.alpha / self.r
        self.dropout_p = check_fraction("dropout", dropout, high_open=True)
        self.base = base
        base.requires_grad_(False)
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(self.r, base.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.r, **kw))
        self.dropout = nn.Dropout(self.dropout_p) if self.dropout_p > 0 else nn.Identity()
        self.merged = False
        self.reset_parameters()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Init[A]: ``A ~ N(0, 1/in_features)``, ``B = 0``."""
        with torch.no_grad():
            self.lora_A.normal_(0.0, 1.0 / math.sqrt(self.in_features), generator=generator)
            self.lora_B.zero_()

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B A``, shape ``(out_features, in_features)``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        h = F.linear(self.dropout(x), self.lora_A)  # (..., r)
        return out + F.linear(h, self.lora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``scaling * B A`` to the base weight (inference); a no-op if already merged."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``scaling * B A`` from the base weight again; a no-op if not merged."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha:g}, dropout={self.dropout_p:g}, merged={self.merged}")


def _linear_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` modules ``add_lora`` may wrap, in model order.

    Skipped: linears already inside a ``LoRALinear``, and ``nn.MultiheadAttention``'s
    ``out_proj``, whose weight that module reads directly (a wrapper would never be called).
    """
    names, skip = [], set()
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            skip.add(id(module.base))
        elif isinstance(module, nn.MultiheadAttention):
            skip.add(id(module.out_proj))
        elif isinstance(module, nn.Linear) and id(module) not in skip:
            names.append(name)
    return names


def _matches(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def add_lora(model: nn.Module, targets: Sequence[str] | str, r: int = 8,
             alpha: float | None = None, dropout: float = 0.0) -> nn.Module:
    """Replace the targeted ``nn.Linear`` modules by :class:`LoRALinear` and freeze the rest.

    Args:
        model: any ``nn.Module``; changed in place.
        targets: module-name suffixes (``["q_proj", "v_proj"]`` matches ``layers.0.attn.q_proj``;
            a dotted suffix such as ``"attn.q_proj"`` works too), a single suffix as a string,
            or ``"all-linear"`` for every ``nn.Linear``. Unlike PEFT's ``"all-linear"``, the
            output head is included: a plain ``nn.Module`` does not say which layer it is.
        r, alpha, dropout: as in :class:`LoRALinear` (``alpha=None`` means ``alpha = r``).

    Returns:
        ``model`` (or the new ``LoRALinear`` if ``model`` itself is a targeted ``nn.Linear``),
        with every parameter frozen except the LoRA factors.

    Raises:
        ValueError: a target that matches no ``nn.Linear`` (the message lists some that exist),
            or an empty ``targets``.
    """
    check_int("r", r)
    available = _linear_names(model)
    if isinstance(targets, str) and targets == "all-linear":
        chosen = available
        if not chosen:
            raise ValueError(f"targets='all-linear' but {type(model).__name__} has no nn.Linear "
                             "modules to adapt")
    else:
        suffixes = [targets] if isinstance(targets, str) else list(targets)
        if not suffixes or not all(isinstance(s, str) and s for s in suffixes):
            raise ValueError(f"targets must be 'all-linear' or a non-empty list of module-name "
                             f"suffixes, got {targets!r}")
        missing = [s for s in suffixes if not any(_matches(n, s) for n in available)]
        if missing:
            some = ", ".join(repr(n) for n in available[:6]) or "none"
            more = f" (and {len(available) - 6} more)" if len(available) > 6 else ""
            raise ValueError(f"targets {missing!r} matched no nn.Linear in {type(model).__name__}; "
                             f"available: {some}{more}")
        chosen = [n for n in available if any(_matches(n, s) for s in suffixes)]
    model.requires_grad_(False)
    if chosen == [""]:  # the model itself is a Linear
        return LoRALinear(model, r=r, alpha=alpha, dropout=dropout)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r=r, alpha=alpha, dropout=dropout))
    for module in model.modules():  # LoRA factors from an earlier add_lora call stay trainable
        if isinstance(module, LoRALinear):
            module.lora_A.requires_grad_(True)
            module.lora_B.requires_grad_(True)
    return model
