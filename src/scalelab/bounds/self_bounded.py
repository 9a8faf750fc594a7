"""Self-bounded learning: train a stochastic-mask network by minimising a PAC-Bayes bound.

The objective is a differentiable surrogate of the bound: the 0-1 error is replaced by a
bounded cross-entropy (``-log max(p_y, pmin) / log(1/pmin)``, in [0, 1], so the bound still
applies to it) on a minibatch, and ``KL(Q || P)`` is the closed form of
:func:`scalelab.prune.mask_kl`; McAllester's or Catoni's form combines them. The variables
are the mask logits, and, when the weights are Gaussian, their log standard deviations and
means. The certificate (:func:`~scalelab.bounds.certify`) then uses the 0-1 error.

Papers: arXiv 2110.11804 (self-bounded learning with stochastic masks); Dziugaite & Roy,
arXiv 1703.11008 (optimising a PAC-Bayes bound); Dziugaite, Hsu, Gharbieh, Arpino, Roy, "On
the role of data in PAC-Bayes bounds", arXiv 2006.10929 (the data-dependent prior);
Pérez-Ortiz et al., arXiv 2007.12911 (bounded cross-entropy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import check_choice, check_fraction, check_int, check_positive
from .certificates import distribution_kl
from .pac_bayes import CATONI_GRID

BOUND_FORMS = ("mcallester", "catoni")


def bounded_cross_entropy(logits: torch.Tensor, y: torch.Tensor, *,
                          pmin: float = 1e-4) -> torch.Tensor:
    """Mean of ``-log max(p_y, pmin) / log(1 / pmin)``: a cross-entropy bounded in [0, 1]."""
    logp = torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return (-logp.clamp_min(math.log(pmin))).mean() / math.log(1.0 / pmin)


def bound_surrogate(emp: torch.Tensor, kl: torch.Tensor, n: int, delta: float,
                    form: str = "mcallester") -> torch.Tensor:
    """The bound as a differentiable function of an empirical loss in [0, 1] and the KL.

    ``"mcallester"``: ``emp + sqrt((kl + ln(2 sqrt(n)/delta)) / (2n))``; ``"catoni"``: the
    smallest over :data:`~scalelab.bounds.CATONI_GRID` of
    ``(1 - exp(-c emp - (kl + ln(len(grid)/delta)) / n)) / (1 - exp(-c))`` — the same values
    :func:`~scalelab.bounds.mcallester_bound` / :func:`~scalelab.bounds.catoni_bound` give,
    without their clipping at 1.
    """
    check_choice("form", form, BOUND_FORMS)
    emp, kl = emp.double(), kl.double()
    if form == "mcallester":
        return emp + torch.sqrt((kl + math.log(2 * math.sqrt(n) / delta)) / (2 * n))
    c = torch.tensor(CATONI_GRID, dtype=torch.float64, device=emp.device)
    rhs = (kl + math.log(len(CATONI_GRID) / delta)) / n
    return (-torch.expm1(-c * emp - rhs) / -torch.expm1(-c)).min()


@dataclass
class BoundTraining:
    """Per step of :func:`train_with_bound`: the surrogate bound, the bounded loss on the
    minibatch, ``KL(Q || P)`` and the expected density; and the wall time."""

    steps: int
    n: int
    form: str
    surrogate: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    density: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_with_bound(masks, data, prior, *, steps: int, delta: float = 0.025,
                     form: str = "mcallester", lr: float = 0.05, weight_lr: float = 1e-3,
                     train_weights: bool | None = None, batch_size: int = 256,
                     pmin: float = 1e-4, seed: int = 0,
                     description: str = "bound training") -> BoundTraining:
    """Minimise a PAC-Bayes bound surrogate over the posterior, in place.

    Args:
        masks: the :class:`~scalelab.prune.StochasticMasks` handle of the model; the
            posterior starts where they are (usually at the prior).
        data: ``(x, y)`` tensors: the bound sample (``n`` = its size), which the prior never
            saw; the certificate must use the same sample.
        prior: the :class:`~scalelab.prune.MaskDistribution` snapshot of the prior.
        steps: Adam steps; lr: for the mask logits and the log standard deviations;
            weight_lr: for the Gaussian means.
        delta: the bound's confidence; form: ``"mcallester"`` or ``"catoni"``.
        train_weights: train the Gaussian means (default: when the weights are Gaussian);
            deterministic weights must stay the prior's (``ValueError`` otherwise).
        batch_size, pmin, seed: minibatches, the bounded cross-entropy's floor, their seed.

    The expected density is held at the masks' target (projection after every step). Biases
    and every other parameter stay frozen (they are point masses of the prior).

    Returns:
        A :class:`BoundTraining` record. Paper: arXiv 2110.11804; arXiv 1703.11008.
    """
    from ..prune import mask_distribution, mask_kl, train_masks

    steps = check_int("steps", steps)
    delta = check_fraction("delta", delta, low_open=True, high_open=True)
    check_choice("form", form, BOUND_FORMS)
    pmin = check_positive("pmin", pmin)
    if not pmin < 1:
        raise ValueError(f"pmin must be in (0, 1), got {pmin!r}")
    x, y = data
    n = check_int("n (examples in data)", int(x.shape[0]))
    gaussian = prior.log_sigma is not None
    if train_weights is None:
        train_weights = gaussian
    if train_weights and not gaussian:
        raise ValueError("train_weights=True needs Gaussian weights (weight_noise= in "
                         "stochastic_masks_): deterministic weights must stay the prior's")
    start_kl = distribution_kl(mask_distribution(masks.model), prior)  # finite, or a ValueError
    rec = BoundTraining(steps=steps, n=n, form=form)

    def objective(loss: torch.Tensor) -> torch.Tensor:
        kl = mask_kl(masks.model, prior, check=False)  # checked above; they stay frozen
        value = bound_surrogate(loss, kl, n, delta, form)
        rec.surrogate.append(float(value.detach()))
        rec.kl.append(float(kl.detach()))
        return value

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bounded_cross_entropy(out, target, pmin=pmin)

    if not math.isfinite(start_kl):  # pragma: no cover - distribution_kl raises first
        raise ValueError("KL(Q || P) is infinite at the start")
    trained = train_masks(masks, (x, y), steps=steps, lr=lr, batch_size=batch_size,
                          loss_fn=loss_fn, seed=seed, train_weights=train_weights,
                          weight_lr=weight_lr, objective=objective, description=description)
    rec.loss, rec.density, rec.seconds = trained.loss, trained.density, trained.seconds
    return rec
