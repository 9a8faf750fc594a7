"""The gradient estimators behind stochastic masks, as plain functions, and the exact
expected loss of a masked linear regression (the oracle they are tested against).

- :func:`relaxed_bernoulli`: the Concrete / Gumbel-sigmoid relaxation of a Bernoulli mask;
- :func:`local_reparam_linear` / :func:`lrt_std`: the local reparametrisation trick for a
  masked Linear layer;
- :func:`expected_masked_mse`: ``E_m ||y - X (w * m)||^2`` in closed form.

:class:`~scalelab.prune.StochasticMask` calls the first two inside its hooks.

Papers: arXiv 2110.11804 (the linear-regression identity); Maddison et al. arXiv 1611.00712,
Jang et al. arXiv 1611.01144 (Concrete); Kingma et al. arXiv 1506.02557 (local
reparametrisation). Which estimator to use is an interpretation (docs/pruning.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_U_EPS = 1e-6  # uniforms are clamped to [eps, 1 - eps] so the logistic noise stays finite
_VAR_FLOOR = 1e-20  # the LRT standard deviation is sqrt(max(var, floor))


def relaxed_bernoulli(logits: torch.Tensor, temperature: float,
                      u: torch.Tensor | None = None) -> torch.Tensor:
    """A relaxed Bernoulli (Concrete / Gumbel-sigmoid) sample, differentiable in ``logits``.

    ``sigmoid((logits + log u - log(1 - u)) / temperature)`` with ``u ~ U(0, 1)`` (drawn
    shaped like ``logits`` when not given; clamped to [1e-6, 1 - 1e-6]). As the temperature
    falls the sample tends to a hard ``Bernoulli(sigmoid(logits))`` mask. Caveat: the
    gradient is biased at any temperature > 0, and its variance grows like 1/temperature;
    its zero-temperature limit is ``p (1 - p) dL/dm`` at ``m = 1/2``, the exact gradient
    ``p (1 - p) (L(m=1) - L(m=0))`` only when the loss is at most quadratic in each mask.

    Papers: Maddison et al., arXiv 1611.00712; Jang et al., arXiv 1611.01144.
    """
    if u is None:
        u = torch.rand_like(logits)
    u = u.clamp(_U_EPS, 1 - _U_EPS)
    return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / temperature)


def lrt_std(x: torch.Tensor, weight: torch.Tensor, probs: torch.Tensor,
            log_sigma: torch.Tensor | None = None) -> torch.Tensor:
    """Standard deviation of a masked Linear layer's pre-activations: ``(..., out)``.

    ``sqrt(x^2 (w^2 p (1 - p))^T)`` for ``m ~ Bernoulli(p)``, plus ``x^2 (sigma^2 p)^T`` inside
    the root when the weights are Gaussian ``N(w, sigma^2)``; floored at 1e-20 before the root.
    """
    var_w = weight * weight * probs * (1 - probs)  # Var[w m]
    if log_sigma is not None:  # Var[(w + s eps) m] = w^2 p (1 - p) + s^2 p
        var_w = var_w + torch.exp(2 * log_sigma) * probs
    return F.linear(x * x, var_w).clamp_min(_VAR_FLOOR).sqrt()


def local_reparam_linear(x: torch.Tensor, weight: torch.Tensor, probs: torch.Tensor, *,
                         bias: torch.Tensor | None = None, log_sigma: torch.Tensor | None = None,
                         eps: torch.Tensor | None = None) -> torch.Tensor:
    """A masked Linear layer by the local reparametrisation trick: one Gaussian draw of the
    pre-activations per example, with the masked layer's exact mean and variance.

    ``x (w p)^T + b + lrt_std(x, w, p) * eps``, ``eps ~ N(0, 1)`` (drawn when not given).
    Exact in distribution only for the first two moments (a Gaussian, not the masked sum),
    so the expected loss it estimates equals the masked layer's when the loss is quadratic
    in the pre-activations (linear regression); otherwise it is an approximation.

    Paper: Kingma, Salimans, Welling, arXiv 1506.02557.
    """
    mean = F.linear(x, weight * probs, bias)
    if eps is None:
        eps = torch.randn_like(mean)
    return mean + lrt_std(x, weight, probs, log_sigma) * eps


def expected_masked_mse(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
                        probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact expected squared loss of a linear model under Bernoulli masks, in two parts.

    ``E_m ||y - X (w * m)||^2 = ||y - X (w * p)||^2 + sum_i p_i (1 - p_i) w_i^2 ||X_{:,i}||^2``
    for ``m_i ~ Bernoulli(p_i)`` independent: the loss at the mean mask, and a data-adaptive
    penalty (L1-like in ``p``; dropout's is L2-like). Returns ``(at_mean, penalty)``.

    Args:
        x: ``(n, d)``; y: ``(n,)`` or ``(n, k)``; weight: ``(d,)`` or ``(k, d)`` (a Linear
            weight); probs: keep-probabilities shaped like ``weight``.

    Paper: arXiv 2110.11804 (the linear-regression analysis).
    """
    w2 = weight if weight.dim() == 2 else weight.unsqueeze(0)  # (k, d)
    p2 = probs if probs.dim() == 2 else probs.unsqueeze(0)
    yy = y if y.dim() == 2 else y.unsqueeze(1)  # (n, k)
    at_mean = (yy - x @ (w2 * p2).T).pow(2).sum()
    col = x.pow(2).sum(0)  # ||X_{:,i}||^2, (d,)
    penalty = (p2 * (1 - p2) * w2.pow(2) * col).sum()
    return at_mean, penalty
