"""Drop path (stochastic depth on a residual branch): a function and a thin module.

``p`` is always the DROP probability, ``1 - survival``. Scaling is inverted: in training a
kept sample is divided by ``1 - p`` so that the expectation over masks equals the input,
and evaluation is the identity (no rescaling at test time).

Stochastic depth: Huang et al. 2016 (arXiv 1603.09382); its analysis and budgets:
Hayou & Ayed, arXiv 2106.03091.
"""

from __future__ import annotations

import torch
from torch import nn

from .._errors import check_fraction


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``p`` and rescale the rest by ``1/(1-p)``.

    Args:
        x: a batch, samples along dimension 0 (any trailing shape).
        p: drop probability in [0, 1]. ``p = 1`` drops every sample (returns zeros).
        training: when False (evaluation) ``x`` is returned unchanged, as it is at ``p = 0``.
        generator: optional ``torch.Generator`` for the Bernoulli masks.

    Returns:
        A tensor of ``x``'s shape; one Bernoulli(1 - p) draw per sample, shared by all of that
        sample's coordinates, so that ``E[drop_path(x)] = x``.

    Paper: Huang et al. arXiv 1603.09382 (per-sample drop as in timm's ``drop_path``).
    """
    p = check_fraction("p", p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, ..., 1): one draw per sample
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=generator)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; ``p`` is the drop probability (1 - survival).

    Active in ``train()`` mode only; the identity in ``eval()`` mode and at ``p = 0``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = check_fraction("p", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"
