"""The distribution a stochastic-mask network samples from: snapshots and their KL divergence.

A network with stochastic masks (:func:`~scalelab.prune.stochastic_masks_`) is a
distribution over networks: independent ``Bernoulli(p_i)`` masks on the prunable weights,
optionally times diagonal Gaussians ``N(w_i, sigma_i^2)`` on those weights, and point masses
on everything else (biases, norms, buffers). :func:`mask_distribution` takes a snapshot of
it (the prior or posterior of a PAC-Bayes bound, :mod:`scalelab.bounds`) and :func:`mask_kl`
is the closed-form KL divergence of the model's current distribution from a snapshot,
differentiable in the logits, the Gaussian means and log standard deviations — what
self-bounded training minimises.

KL of point masses: zero if they are equal, infinite otherwise, so :func:`mask_kl` refuses
(``ValueError``) a prior whose deterministic parts differ from the model's.

Paper: arXiv 2110.11804 (PAC-Bayes with stochastic masks); the Gaussian part as in
Dziugaite & Roy, arXiv 1703.11008.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DENSE_BUFFER
from .stochastic import stochastic_layers

_STOCHASTIC_KEYS = ("weight_orig", "weight_logit", "weight_log_sigma", "weight_mask")


@dataclass(frozen=True)
class MaskDistribution:
    """A snapshot of a stochastic-mask network's distribution (CPU float64 copies).

    Attributes:
        logits: ``{layer: mask logits}`` (keep-probability ``sigmoid(logit)``);
        weights: ``{layer: weights}`` (the Gaussian means if ``log_sigma`` is set);
        log_sigma: ``{layer: log standard deviations}`` or None (deterministic weights);
        fixed: every other parameter and buffer of the model (``state_dict`` key -> tensor).
    """

    logits: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    log_sigma: dict[str, torch.Tensor] | None
    fixed: dict[str, torch.Tensor]

    @property
    def total(self) -> int:
        return sum(v.numel() for v in self.logits.values())

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {k: torch.sigmoid(v) for k, v in self.logits.items()}

    def expected_density(self) -> float:
        return sum(float(torch.sigmoid(v).sum()) for v in self.logits.values()) / self.total


def _fixed_state(model: nn.Module, names: set[str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if (owner in names and leaf in _STOCHASTIC_KEYS) or leaf == DENSE_BUFFER:
            continue
        out[key] = value.detach().double().cpu().clone()
    return out


def mask_distribution(model: nn.Module) -> MaskDistribution:
    """Snapshot the distribution the model's stochastic masks define (see the module doc)."""
    layers = stochastic_layers(model)
    gaussian = [hasattr(m, "weight_log_sigma") for _, m in layers]
    if any(gaussian) and not all(gaussian):
        raise ValueError("some layers have Gaussian weights and some do not; use one kind")

    def copy(t: torch.Tensor) -> torch.Tensor:
        return t.detach().double().cpu().clone()

    return MaskDistribution(
        logits={n: copy(m.weight_logit) for n, m in layers},
        weights={n: copy(m.weight_orig) for n, m in layers},
        log_sigma={n: copy(m.weight_log_sigma) for n, m in layers} if all(gaussian) else None,
        fixed=_fixed_state(model, {n for n, _ in layers}),
    )


@torch.no_grad()
def load_mask_distribution_(model: nn.Module, dist: MaskDistribution) -> nn.Module:
    """Set the model's logits, weights (and log standard deviations) to a snapshot's."""
    layers = stochastic_layers(model)
    if {n for n, _ in layers} != set(dist.logits):
        raise ValueError("the distribution's layers do not match the model's stochastic layers")
    if (dist.log_sigma is None) != (not hasattr(layers[0][1], "weight_log_sigma")):
        raise ValueError("the distribution and the model differ in having Gaussian weights")
    for name, m in layers:
        m.weight_logit.copy_(dist.logits[name])
        m.weight_orig.copy_(dist.weights[name])
        if dist.log_sigma is not None:
            m.weight_log_sigma.copy_(dist.log_sigma[name])
    return model


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a.detach().double().cpu(), b))


def mask_kl(model: nn.Module, prior: MaskDistribution, *, check: bool = True) -> torch.Tensor:
    """``KL(Q || P)`` of the model's current distribution ``Q`` from the snapshot ``P``, in nats.

    Closed form, differentiable (a float64 scalar tensor): for the masks
    ``sum_i [q_i log(q_i / p_i) + (1 - q_i) log((1 - q_i) / (1 - p_i))]`` computed from the
    logits with log-sigmoids (stable for any logit); for Gaussian weights
    ``sum_i [log(s_p / s_q) + (s_q^2 + (w_q - w_p)^2) / (2 s_p^2) - 1/2]``. The deterministic
    parts (weights without Gaussians; biases and buffers are checked by
    :func:`scalelab.bounds.certify`) must equal the prior's, else the KL is infinite: a
    ``ValueError``. ``check=False`` skips that comparison of the deterministic weights (a
    training loop that has checked once and keeps them frozen).
    """
    layers = stochastic_layers(model)
    if {n for n, _ in layers} != set(prior.logits):
        raise ValueError("the prior's layers do not match the model's stochastic layers")
    gaussian = hasattr(layers[0][1], "weight_log_sigma")
    if gaussian != (prior.log_sigma is not None):
        raise ValueError("KL(Q || P) is infinite: one of the posterior and the prior has "
                         "Gaussian weights and the other point masses")
    total = torch.zeros((), dtype=torch.float64, device=layers[0][1].weight_orig.device)
    for name, m in layers:
        a = m.weight_logit.double()
        b = prior.logits[name].to(a.device)
        q, not_q = torch.sigmoid(a), torch.sigmoid(-a)  # 1 - q without cancellation
        total = total + (q * (F.logsigmoid(a) - F.logsigmoid(b))
                         + not_q * (F.logsigmoid(-a) - F.logsigmoid(-b))).sum()
        if gaussian:
            ls_q, ls_p = m.weight_log_sigma.double(), prior.log_sigma[name].to(a.device)
            dw = m.weight_orig.double() - prior.weights[name].to(a.device)
            total = total + (ls_p - ls_q + (torch.exp(2 * ls_q) + dw * dw)
                             / (2 * torch.exp(2 * ls_p)) - 0.5).sum()
        elif check and not _same(m.weight_orig, prior.weights[name]):
            raise ValueError(f"KL(Q || P) is infinite: layer {name!r}'s weights differ from the "
                             f"prior's and are not Gaussian (freeze them, or use "
                             f"weight_noise= in stochastic_masks_)")
    return total
