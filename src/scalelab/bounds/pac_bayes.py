"""PAC-Bayes bounds on the error of a stochastic classifier Q, from its empirical error.

Each bound holds with probability at least ``1 - delta`` over an i.i.d. sample of ``n``
examples, simultaneously for every posterior Q, given a prior P chosen before seeing those
examples; ``kl = KL(Q || P)`` in nats and ``emp`` the empirical error of Q on the sample.
All return a number in [0, 1] (a bound above 1 is reported as 1). numpy only.

- :func:`maurer_bound`: ``kl(emp || e) <= (kl + ln(2 sqrt(n) / delta)) / n``, inverted
  (Maurer 2004, arXiv cs/0411099; the tightest of the three).
- :func:`mcallester_bound`: ``emp + sqrt((kl + ln(2 sqrt(n) / delta)) / (2n))`` (McAllester
  1999 with Maurer's constant; Pinsker's inequality applied to the Maurer bound).
- :func:`catoni_bound`: ``(1 - exp(-c emp - (kl + ln(1/delta)) / n)) / (1 - exp(-c))``
  (Catoni 2007, Thm 1.2.6).
- :func:`sample_convergence_bound`: ``kl^-1(emp_m, ln(2/delta) / m)``, the Langford-Caruana
  bound on Q's empirical error from ``m`` networks sampled from Q.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_fraction, check_int, check_positive
from .kl import check_kl, kl_inverse

#: Catoni's c when catoni_bound picks it: this grid, each point at delta / len(grid)
CATONI_GRID = tuple(float(c) for c in np.geomspace(1e-2, 1e2, 41))


def _args(emp, kl, n, delta) -> tuple[float, float, int, float]:
    emp = check_fraction("emp", emp)
    kl = check_kl("kl", kl)
    n = check_int("n", n)
    delta = check_fraction("delta", delta, low_open=True, high_open=True)
    return emp, kl, n, delta


def complexity(kl: float, n: int, delta: float) -> float:
    """``(kl + ln(2 sqrt(n) / delta)) / n``: the right-hand side of Maurer's kl bound."""
    kl = check_kl("kl", kl)
    n = check_int("n", n)
    delta = check_fraction("delta", delta, low_open=True, high_open=True)
    return (kl + math.log(2.0 * math.sqrt(n) / delta)) / n


def maurer_bound(emp: float, kl: float, n: int, delta: float) -> float:
    """``kl^-1(emp, (kl + ln(2 sqrt(n) / delta)) / n)``: Maurer's PAC-Bayes-kl bound.

    Valid for losses in [0, 1] (the 0-1 error among them), n >= 1. Paper: Maurer 2004,
    arXiv cs/0411099 (the ``2 sqrt(n)`` constant); Seeger 2002, Langford 2005 (kl form).
    """
    emp, kl, n, delta = _args(emp, kl, n, delta)
    return kl_inverse(emp, complexity(kl, n, delta))


def mcallester_bound(emp: float, kl: float, n: int, delta: float) -> float:
    """``min(1, emp + sqrt((kl + ln(2 sqrt(n) / delta)) / (2 n)))``: McAllester's bound.

    Pinsker's relaxation of :func:`maurer_bound` (so never below it). Interpretation: the
    constant ``ln(2 sqrt(n) / delta)`` is Maurer's; McAllester's 1999 original had
    ``ln(n / delta) + 2 ln n`` over ``2n - 1``. Paper: McAllester, COLT 1999.
    """
    emp, kl, n, delta = _args(emp, kl, n, delta)
    if math.isinf(kl):
        return 1.0
    return min(1.0, emp + math.sqrt(complexity(kl, n, delta) / 2.0))


def catoni_bound(emp: float, kl: float, n: int, delta: float, *, c: float | None = None) -> float:
    """Catoni's bound ``(1 - exp(-c emp - (kl + ln(1 / delta)) / n)) / (1 - exp(-c))``.

    With ``c=None`` the best ``c`` of :data:`CATONI_GRID` (41 values from 0.01 to 100) is
    taken, each grid point at confidence ``delta / 41`` (a union bound), so the result is a
    valid bound at level ``delta``. For any fixed ``c`` it is never below
    ``kl^-1(emp, (kl + ln(1/delta)) / n)``, and its minimum over ``c`` equals that inverse.

    Paper: Catoni 2007, "PAC-Bayesian supervised classification", Thm 1.2.6.
    """
    emp, kl, n, delta = _args(emp, kl, n, delta)
    if math.isinf(kl):
        return 1.0
    if c is None:
        d = delta / len(CATONI_GRID)
        return min(catoni_bound(emp, kl, n, d, c=g) for g in CATONI_GRID)
    c = check_positive("c", c)
    value = -math.expm1(-c * emp - (kl + math.log(1.0 / delta)) / n) / -math.expm1(-c)
    return min(1.0, value)


def sample_convergence_bound(emp: float, m: int, delta: float) -> float:
    """``kl^-1(emp, ln(2 / delta) / m)``: Q's empirical error from ``m`` sampled networks.

    ``emp`` is the mean empirical error of ``m`` networks drawn independently from Q; the
    result bounds Q's own empirical error (the expectation over Q) with probability at least
    ``1 - delta`` over the draws. Paper: Langford & Caruana, NeurIPS 2001; as used by
    Dziugaite & Roy, arXiv 1703.11008.
    """
    emp = check_fraction("emp", emp)
    m = check_int("m", m)
    delta = check_fraction("delta", delta, low_open=True, high_open=True)
    return kl_inverse(emp, math.log(2.0 / delta) / m)
