"""Drop path (stochastic depth on a residual branch): a function and a thin module.

``p`` is always the DROP probability, ``1 - survival``. Two conventions, as
``scale_by_keep`` chooses (the name mirrors timm's ``drop_path``):

- ``scale_by_keep=True`` (default, inverted scaling, timm's and Huang et al.'s code): in
  training a kept sample is divided by the keep probability ``1 - p``, so the expectation
  over masks equals the input; evaluation is the identity.
- ``scale_by_keep=False`` (the convention of the stochastic-depth analysis, arXiv
  2106.03091): in training the mask is an unscaled Bernoulli(``1 - p``) draw; evaluation
  runs the *mean network*, the branch multiplied by ``1 - p``. Again the training
  expectation equals the evaluation output. Unlike timm (whose ``scale_by_keep=False``
  leaves evaluation unscaled), evaluation here is scaled, because the analysis' penalty
  ``(1/2) sum_l p_l (1 - p_l) g_l`` is stated around the mean network (docs/residual.md).

Stochastic depth: Huang et al. 2016 (arXiv 1603.09382); its analysis and budgets:
Hayou & Ayed, arXiv 2106.03091.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import check_fraction


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False,
              scale_by_keep: bool = True, *,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``p``; scale as ``scale_by_keep`` says.

    Args:
        x: a batch, samples along dimension 0 (any trailing shape).
        p: drop probability in [0, 1]. ``p = 1`` drops every sample (returns zeros, in
            training, and in evaluation when ``scale_by_keep=False``).
        training: whether masks are drawn (training) or not (evaluation).
        scale_by_keep: True: kept samples are divided by ``1 - p`` in training and
            evaluation is the identity (inverted scaling). False: unscaled masks in
            training and ``(1 - p) * x`` in evaluation (the mean network of arXiv
            2106.03091).
        generator: optional ``torch.Generator`` for the Bernoulli masks.

    Returns:
        A tensor of ``x``'s shape; in training one Bernoulli(1 - p) draw per sample, shared
        by all of that sample's coordinates. In both conventions the expectation of the
        training output over masks equals the evaluation output (``x`` or ``(1 - p) x``).
        At ``p = 0`` both conventions return ``x`` itself, in training and evaluation.

    Paper: Huang et al. arXiv 1603.09382 (per-sample drop as in timm's ``drop_path``);
    arXiv 2106.03091 (``scale_by_keep=False``).
    """
    p = check_fraction("p", p)
    if not isinstance(scale_by_keep, bool):
        raise ValueError(f"scale_by_keep must be True or False, got {scale_by_keep!r}")
    keep = 1.0 - p
    if p == 0.0:
        return x
    if not training:
        return x if scale_by_keep else x * keep
    if p == 1.0:
        return torch.zeros_like(x)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, ..., 1): one draw per sample
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=generator)
    return x * (mask.div_(keep) if scale_by_keep else mask)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; ``p`` is the drop probability (1 - survival).

    Masks are drawn in ``train()`` mode only. With ``scale_by_keep=True`` (default) the
    module is the identity in ``eval()`` mode; with ``scale_by_keep=False`` it multiplies by
    ``1 - p`` there (the mean network). Both are the identity at ``p = 0``.
    """

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.p = check_fraction("p", p)
        if not isinstance(scale_by_keep, bool):
            raise ValueError(f"scale_by_keep must be True or False, got {scale_by_keep!r}")
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"p={self.p:g}, scale_by_keep={self.scale_by_keep}"
