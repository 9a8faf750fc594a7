"""``certify``: a PAC-Bayes certificate of a stochastic-mask network's test error.

The empirical 0-1 error of the posterior Q on the bound sample (data the prior never saw) is
estimated from ``n_samples`` networks drawn from Q; the Langford-Caruana bound turns the
estimate into an upper bound on Q's empirical error, and Maurer's kl bound turns that into
the certified error of Q. With probability at least ``1 - delta - delta_sample`` the
certified error is at least Q's true error.

Uses :mod:`scalelab.prune`'s stochastic masks (``scalelab.bounds`` -> ``scalelab.prune``;
prune never imports bounds). Paper: arXiv 2110.11804; Dziugaite & Roy, arXiv 1703.11008.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import check_fraction, check_int
from .kl import kl_bernoulli_logits
from .pac_bayes import catoni_bound, maurer_bound, mcallester_bound, sample_convergence_bound


@dataclass(frozen=True)
class Certificate:
    """What :func:`certify` found.

    Attributes:
        n: examples in the bound sample; n_samples: passes over it; n_networks: networks
            drawn from Q (``n_samples`` times the chunks per pass), each evaluated on
            ``examples_per_network`` examples;
        delta, delta_sample: the confidence spent on the PAC-Bayes bound and on the
            Monte Carlo estimate (the certificate holds with probability
            ``1 - delta - delta_sample``);
        empirical_error: mean 0-1 error of the sampled networks on the bound sample;
        empirical_error_sd: the standard deviation of the passes' errors;
        empirical_error_bound: the Langford-Caruana upper bound on Q's empirical error;
        kl: ``KL(Q || P)`` in nats; mcallester, catoni, maurer: each bound evaluated at
            ``empirical_error_bound``; certified_error: the Maurer bound (fixed in advance:
            taking the smallest of several would need a union bound).
    """

    n: int
    n_samples: int
    n_networks: int
    examples_per_network: int
    delta: float
    delta_sample: float
    empirical_error: float
    empirical_error_sd: float
    empirical_error_bound: float
    kl: float
    mcallester: float
    catoni: float
    maurer: float
    certified_error: float

    @property
    def confidence(self) -> float:
        return 1.0 - self.delta - self.delta_sample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"confidence": self.confidence}

    def __str__(self) -> str:
        return (f"certified error {self.certified_error:.4f} (probability >= "
                f"{self.confidence:.3f}): empirical 0-1 error {self.empirical_error:.4f} over "
                f"{self.n_networks} sampled networks on n = {self.n} (upper bound "
                f"{self.empirical_error_bound:.4f}), KL(Q||P) = {self.kl:.2f} nats; bounds: "
                f"Maurer {self.maurer:.4f}, McAllester {self.mcallester:.4f}, Catoni "
                f"{self.catoni:.4f}")


def _np(t) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def distribution_kl(posterior, prior) -> float:
    """``KL(Q || P)`` between two :class:`~scalelab.prune.MaskDistribution` snapshots, in nats.

    numpy, float64, from the logits (:func:`kl_bernoulli_logits`) and, for Gaussian weights,
    ``sum [log(s_p / s_q) + (s_q^2 + (w_q - w_p)^2) / (2 s_p^2) - 1/2]``. The deterministic
    parts (weights without Gaussians, biases, buffers) must be identical in both, else the
    KL is infinite: a ``ValueError`` naming the first difference.
    """
    if set(posterior.logits) != set(prior.logits):
        raise ValueError("posterior and prior cover different layers")
    if set(posterior.fixed) != set(prior.fixed):
        raise ValueError("posterior and prior have different parameters/buffers")
    for key, value in posterior.fixed.items():
        if value.shape != prior.fixed[key].shape or not bool((value == prior.fixed[key]).all()):
            raise ValueError(f"KL(Q || P) is infinite: {key!r} differs between posterior and "
                             f"prior (a deterministic parameter must be the prior's)")
    if (posterior.log_sigma is None) != (prior.log_sigma is None):
        raise ValueError("KL(Q || P) is infinite: one of posterior and prior has Gaussian "
                         "weights and the other point masses")
    total = 0.0
    for name in posterior.logits:
        total += float(np.sum(kl_bernoulli_logits(_np(posterior.logits[name]),
                                                  _np(prior.logits[name]))))
        wq, wp = _np(posterior.weights[name]), _np(prior.weights[name])
        if posterior.log_sigma is None:
            if wq.shape != wp.shape or not np.array_equal(wq, wp):
                raise ValueError(f"KL(Q || P) is infinite: layer {name!r}'s weights differ "
                                 f"from the prior's and are not Gaussian")
            continue
        lq, lp = _np(posterior.log_sigma[name]), _np(prior.log_sigma[name])
        total += float(np.sum(lp - lq + (np.exp(2 * lq) + (wq - wp) ** 2)
                              / (2 * np.exp(2 * lp)) - 0.5))
    return max(total, 0.0)


def sampled_errors(model, x, y, n_samples: int, *, examples_per_network: int | None = None,
                   batch_size: int = 1024, seed: int = 0) -> np.ndarray:
    """0-1 errors of networks drawn from the model's stochastic masks, a fresh one per chunk.

    ``n_samples`` passes over ``(x, y)``; each pass splits the examples into consecutive
    chunks of ``examples_per_network`` (default: all of them, one network per pass) and
    evaluates each chunk with its own network (:func:`scalelab.prune.sampled_network`).
    Returns the chunk errors, shape ``(n_samples, chunks)``; ``n`` must be a multiple of
    ``examples_per_network``. The model runs in eval mode, without gradients.
    """
    import torch

    from ..prune import sampled_network

    n_samples = check_int("n_samples", n_samples)
    batch_size = check_int("batch_size", batch_size)
    n = int(x.shape[0])
    b = n if examples_per_network is None else check_int("examples_per_network",
                                                          examples_per_network)
    if n % b:
        raise ValueError(f"examples_per_network={b} must divide the {n} examples")
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    was_training = model.training
    model.eval()
    errors = np.empty((n_samples, n // b))
    try:
        with torch.no_grad():
            for s in range(n_samples):
                for c, start in enumerate(range(0, n, b)):
                    wrong = 0
                    with sampled_network(model, generator=gen):
                        for i in range(start, start + b, batch_size):
                            j = min(i + batch_size, start + b)
                            wrong += int((model(x[i:j]).argmax(-1) != y[i:j]).sum())
                    errors[s, c] = wrong / b
    finally:
        model.train(was_training)
    return errors


def certify(model, data, prior, posterior=None, *, delta: float = 0.025, n_samples: int = 100,
            delta_sample: float = 0.01, examples_per_network: int | None = None,
            batch_size: int = 1024, seed: int = 0) -> Certificate:
    """Certify the test error of a stochastic-mask network with a PAC-Bayes bound.

    Args:
        model: a model with stochastic masks (:func:`scalelab.prune.stochastic_masks_`).
        data: ``(x, y)`` tensors: the bound sample, which the prior must never have seen.
        prior: the prior, a :class:`~scalelab.prune.MaskDistribution` fixed before ``data``
            was looked at (e.g. fitted on a separate split: a data-dependent prior).
        posterior: a snapshot to load into the model first; default the model's current
            distribution (:func:`scalelab.prune.mask_distribution`).
        delta: confidence of the PAC-Bayes bound, in (0, 1).
        n_samples: networks drawn from the posterior for the empirical error.
        delta_sample: confidence of the Monte Carlo (Langford-Caruana) bound, in (0, 1).
        examples_per_network: ``None`` (the default) evaluates each of the ``n_samples``
            networks on the whole sample — the classic Langford-Caruana estimate from
            ``n_samples`` draws. An integer ``b`` draws a fresh network for every chunk of
            ``b`` examples, so ``n_samples * n / b`` independent chunk errors in [0, 1]
            enter the same kl bound (Hoeffding 1963, Thm 1, holds for independent
            variables in [0, 1] with different means) — tighter for the same compute.
            Interpretation (docs/bounds.md). The last ``n mod b`` examples are dropped
            (by position, before any evaluation) so every chunk has ``b``.
        batch_size, seed: evaluation batches and the seed of the draws.

    Returns:
        A :class:`Certificate`; ``certified_error`` is Maurer's bound at the Langford-Caruana
        upper bound of the empirical error, valid with probability ``1 - delta -
        delta_sample``. The 0-1 error is certified, whatever loss the training used.

    Paper: arXiv 2110.11804 (self-bounded learning); Maurer 2004; Langford & Caruana 2001;
    Dziugaite & Roy, arXiv 1703.11008 (the recipe).
    """
    from ..prune import load_mask_distribution_, mask_distribution

    delta = check_fraction("delta", delta, low_open=True, high_open=True)
    delta_sample = check_fraction("delta_sample", delta_sample, low_open=True, high_open=True)
    if delta + delta_sample >= 1:
        raise ValueError(f"delta + delta_sample must be < 1, got {delta + delta_sample:g}")
    n_samples = check_int("n_samples", n_samples)
    x, y = data
    n = check_int("n (examples in data)", int(x.shape[0]))
    if examples_per_network is not None:
        b = check_int("examples_per_network", examples_per_network)
        if b > n:
            raise ValueError(f"examples_per_network must be <= the {n} examples, got {b}")
        n = (n // b) * b
        x, y = x[:n], y[:n]
    if posterior is not None:
        load_mask_distribution_(model, posterior)
    else:
        posterior = mask_distribution(model)
    kl = distribution_kl(posterior, prior)
    errors = sampled_errors(model, x, y, n_samples, examples_per_network=examples_per_network,
                            batch_size=batch_size, seed=seed)
    emp = float(errors.mean())
    emp_up = sample_convergence_bound(emp, errors.size, delta_sample)
    maurer = maurer_bound(emp_up, kl, n, delta)
    return Certificate(
        n=n, n_samples=n_samples, delta=delta, delta_sample=delta_sample,
        empirical_error=emp,
        n_networks=int(errors.size), examples_per_network=n // errors.shape[1],
        empirical_error_sd=float(errors.mean(1).std(ddof=1)) if n_samples > 1 else math.nan,
        empirical_error_bound=emp_up, kl=kl,
        mcallester=mcallester_bound(emp_up, kl, n, delta),
        catoni=catoni_bound(emp_up, kl, n, delta), maurer=maurer, certified_error=maurer)
