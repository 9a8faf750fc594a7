"""The binary KL divergence and its upper inverse, the workhorses of PAC-Bayes bounds.

``kl(q || p) = q log(q / p) + (1 - q) log((1 - q) / (1 - p))`` (with ``0 log 0 = 0``) and
``kl^-1(q, B) = sup {p in [q, 1] : kl(q || p) <= B}``, found by bisection to 1e-12. numpy only.

Papers: Langford & Seeger 2001 (the kl form); Maurer 2004, arXiv cs/0411099.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_fraction

KL_INVERSE_TOL = 1e-12


def check_kl(name: str, value) -> float:
    """``float(value)`` if it is a KL divergence (>= 0, ``inf`` allowed); else a ``ValueError``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}") from None
    if math.isnan(v) or v < 0:
        raise ValueError(f"{name} must be a number >= 0 (a KL divergence), got {value!r}")
    return v


def _probabilities(name: str, value) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if a.size == 0 or np.isnan(a).any() or (a < 0).any() or (a > 1).any():
        bad = a[np.isnan(a) | (a < 0) | (a > 1)] if a.size else a
        shown = float(bad.flat[0]) if bad.size else value
        raise ValueError(f"{name} must be in [0, 1], got {shown!r}")
    return a


def kl_bernoulli(q, p):
    """``kl(q || p)`` of Bernoulli(q) from Bernoulli(p), in nats; elementwise on arrays.

    ``0 log 0 = 0``; ``inf`` where ``p`` is 0 or 1 and ``q`` differs. Returns a float for
    scalar inputs, an array otherwise. Inputs outside [0, 1] are a ``ValueError``.
    """
    qa, pa = _probabilities("q", q), _probabilities("p", p)
    qa, pa = np.broadcast_arrays(qa, pa)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(qa > 0, qa * (np.log(qa) - np.log(pa)), 0.0)
        b = np.where(qa < 1, (1 - qa) * (np.log1p(-qa) - np.log1p(-pa)), 0.0)
    out = a + b
    return float(out) if out.ndim == 0 else out


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def kl_bernoulli_logits(a, b):
    """``kl(sigmoid(a) || sigmoid(b))`` from logits, stable for any finite logits; elementwise.

    The same quantity as :func:`kl_bernoulli` without the rounding of probabilities near 0
    and 1 (a logit of 40 is a probability of exactly 1.0 in float64).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("logits must be finite")
    q, not_q = np.exp(_log_sigmoid(a)), np.exp(_log_sigmoid(-a))  # 1 - q without cancellation
    out = (q * (_log_sigmoid(a) - _log_sigmoid(b))
           + not_q * (_log_sigmoid(-a) - _log_sigmoid(-b)))
    out = np.maximum(out, 0.0)  # exact arithmetic gives >= 0; rounding may not
    return float(out) if out.ndim == 0 else out


def _kl_scalar(q: float, p: float) -> float:
    """``kl(q || p)`` for floats already checked to lie in [0, 1] (the bisection's inner loop)."""
    total = 0.0
    if q > 0:
        total += math.inf if p == 0 else q * (math.log(q) - math.log(p))
    if q < 1:
        total += math.inf if p == 1 else (1 - q) * (math.log1p(-q) - math.log1p(-p))
    return total


def kl_inverse(q: float, bound: float) -> float:
    """Upper inverse of the binary kl: the largest ``p >= q`` with ``kl(q || p) <= bound``.

    Bisection on ``[q, 1]`` until the bracket is narrower than 1e-12; returns its upper end,
    so the answer is never below the true inverse (a safe side for an error bound). ``1``
    when ``bound`` is infinite or large enough.

    Args:
        q: an empirical error, in [0, 1].
        bound: the right-hand side, >= 0.

    Paper: Langford & Seeger 2001; used by Maurer 2004 and Dziugaite & Roy, arXiv 1703.11008.
    """
    q = check_fraction("q", q)
    bound = check_kl("bound", bound)
    if q == 1.0 or math.isinf(bound):
        return 1.0
    if bound == 0.0:
        return q
    lo, hi = q, 1.0
    while hi - lo > KL_INVERSE_TOL:
        mid = 0.5 * (lo + hi)
        if _kl_scalar(q, mid) > bound:
            hi = mid
        else:
            lo = mid
    return hi
