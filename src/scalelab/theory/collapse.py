"""Model collapse: a categorical next-token model re-estimated, generation after generation,
from samples of the previous generation (optionally mixed with fresh real samples).

The statistical model of Seddik, Chen, Hayou, Youssef & Debbah, "How bad is training on
synthetic data? A statistical analysis of language model collapse" (COLM 2024,
arXiv 2404.05090). Generation 0 is the true distribution ``p0`` over K tokens; generation
``m + 1`` is the empirical distribution of ``n`` tokens drawn from ``p^(m)`` plus ``N`` fresh
tokens drawn from ``p0``:

    p^(m+1) = (Mult(n, p^(m)) + Mult(N, p0)) / (n + N).

- Fully synthetic (``N = 0``), exact: ``S_m = E||p^(m)||^2 = 1 - (1 - 1/n)^m (1 - S_0)``, which
  tends to 1: the model collapses to a point mass (:func:`collapse_purity`).
- Mixed (``N > 0``): since ``E[p^(m)] = p0`` at every generation, ``E[p^(m) . p0] = S_0`` and
  ``S_{m+1} = a S_m + b`` with ``a = n(n - 1)/(n + N)^2``. Hence the deviation
  ``D_m = E||p^(m) - p0||^2 = (1 - a^m) D*`` with
  ``D* = (n + N)(1 - S_0) / (2 n N + N^2 + n)``: bounded, where the fully synthetic case
  reaches ``1 - S_0`` (total collapse). With ``M = n + N`` samples per generation and a
  synthetic fraction ``lam = n / M``, ``D* = (1 - S_0) / (M (1 - lam^2) + lam)``.
  These mixed-case formulas are derived here from the paper's model (exact expectations,
  no approximation) and checked against :func:`simulate_collapse` in the tests.

numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import check_int, check_positive


def _check_s0(s0: float) -> float:
    s0 = float(s0)
    if not (0.0 < s0 <= 1.0) or math.isnan(s0):
        raise ValueError(f"s0 (= ||p0||^2) must be in (0, 1], got {s0!r}")
    return s0


def collapse_purity(m, n: int, s0: float) -> np.ndarray:
    """``S_m = E||p^(m)||^2 = 1 - (1 - 1/n)^m (1 - S_0)`` (fully synthetic, exact).

    Args:
        m: generation(s), integers >= 0 (array-like).
        n: samples drawn from the previous generation's model, >= 1.
        s0: ``||p0||^2`` of the true distribution.
    """
    n = check_int("n", n)
    s0 = _check_s0(s0)
    m = np.asarray(m, dtype=float)
    if np.any(m < 0):
        raise ValueError(f"m (generations) must be >= 0, got {m.min()!r}")
    return 1.0 - (1.0 - 1.0 / n) ** m * (1.0 - s0)


def deviation_limit(n: int, n_real: int, s0: float) -> float:
    """``D* = lim_m E||p^(m) - p0||^2`` for ``n`` synthetic and ``n_real`` real samples per
    generation: ``(n + N)(1 - S_0)/(2 n N + N^2 + n)`` (``1 - S_0`` when ``N = 0``)."""
    n = check_int("n", n, minimum=0)
    big_n = check_int("n_real", n_real, minimum=0)
    if n + big_n == 0:
        raise ValueError("n + n_real must be >= 1 (samples per generation)")
    s0 = _check_s0(s0)
    return (n + big_n) * (1.0 - s0) / (2 * n * big_n + big_n**2 + n)


def mixed_deviation(m, n: int, n_real: int, s0: float) -> np.ndarray:
    """``D_m = E||p^(m) - p0||^2 = (1 - a^m) D*`` with ``a = n(n - 1)/(n + N)^2`` (exact)."""
    n = check_int("n", n, minimum=0)
    big_n = check_int("n_real", n_real, minimum=0)
    m = np.asarray(m, dtype=float)
    if np.any(m < 0):
        raise ValueError(f"m (generations) must be >= 0, got {m.min()!r}")
    a = n * (n - 1) / (n + big_n) ** 2 if n + big_n else 0.0
    return (1.0 - a**m) * deviation_limit(n, big_n, s0)


def max_synthetic_fraction(total: int, s0: float, tol: float) -> float:
    """Largest synthetic share ``lam = n / (n + N)`` of ``total`` samples per generation whose
    limiting deviation ``D* = (1 - S_0)/(total (1 - lam^2) + lam)`` stays <= ``tol``.

    Returns 1.0 when even fully synthetic data stays within ``tol`` and 0.0 when not even real
    data alone does (``D*(0) = (1 - S_0)/total`` > ``tol``). Derived from the model above.
    """
    total = check_int("total", total)
    s0 = _check_s0(s0)
    tol = check_positive("tol", tol)
    need = (1.0 - s0) / tol  # want total (1 - lam^2) + lam >= need
    if 1.0 >= need:  # D*(1) = 1 - s0 <= tol
        return 1.0
    if total < need:
        return 0.0
    # total lam^2 - lam + (need - total) <= 0: the larger root bounds lam from above.
    disc = 1.0 + 4.0 * total * (total - need)
    return float(min(1.0, (1.0 + math.sqrt(disc)) / (2.0 * total)))


def entropy_bits(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy ``-sum p log2 p`` along ``axis`` (``0 log 0 = 0``)."""
    p = np.asarray(p, dtype=float)
    return -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=axis)


@dataclass(frozen=True)
class CollapseTrace:
    """Per-repetition trajectories of a simulation: arrays of shape ``(reps, generations + 1)``.

    ``purity`` is ``||p^(m)||^2``, ``deviation`` is ``||p^(m) - p0||^2``, ``support`` the
    number of tokens with non-zero probability and ``entropy`` the Shannon entropy in bits.
    """

    purity: np.ndarray
    deviation: np.ndarray
    support: np.ndarray
    entropy: np.ndarray
    n: int
    n_real: int

    @property
    def mean_purity(self) -> np.ndarray:
        return self.purity.mean(axis=0)

    @property
    def mean_deviation(self) -> np.ndarray:
        return self.deviation.mean(axis=0)

    def sem(self, field: str = "purity") -> np.ndarray:
        """Monte Carlo standard error of the mean of ``field`` at each generation."""
        a = getattr(self, field)
        return a.std(axis=0, ddof=1) / math.sqrt(a.shape[0]) if a.shape[0] > 1 else 0 * a[0]


def simulate_collapse(p0, n: int, generations: int, *, n_real: int = 0, reps: int = 100,
                      seed: int | np.random.Generator = 0) -> CollapseTrace:
    """Simulate ``reps`` independent chains of the re-estimation for ``generations`` steps.

    Args:
        p0: the true distribution over K tokens (normalised here; non-negative).
        n: tokens drawn from the previous generation's model each generation.
        n_real: fresh tokens drawn from ``p0`` each generation and mixed in (0: fully
            synthetic).
        reps: independent repetitions (vectorised).
        seed: an int or a numpy ``Generator``.
    """
    p0 = np.asarray(p0, dtype=float)
    if p0.ndim != 1 or p0.size < 2 or np.any(~np.isfinite(p0)) or np.any(p0 < 0) or p0.sum() <= 0:
        raise ValueError("p0 must be a 1-D array of >= 2 non-negative finite weights with a "
                         f"positive sum, got shape {p0.shape}")
    p0 = p0 / p0.sum()
    n = check_int("n", n, minimum=0)
    n_real = check_int("n_real", n_real, minimum=0)
    if n + n_real == 0:
        raise ValueError("n + n_real must be >= 1 (samples per generation)")
    generations = check_int("generations", generations, minimum=0)
    reps = check_int("reps", reps)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    p = np.tile(p0, (reps, 1))  # (R, K)
    shape = (reps, generations + 1)
    purity, deviation, entropy = np.empty(shape), np.empty(shape), np.empty(shape)
    support = np.empty(shape, dtype=int)

    def record(m: int) -> None:
        purity[:, m] = (p * p).sum(axis=1)
        deviation[:, m] = ((p - p0) ** 2).sum(axis=1)
        support[:, m] = np.count_nonzero(p, axis=1)
        entropy[:, m] = entropy_bits(p, axis=1)

    record(0)
    for m in range(1, generations + 1):
        counts = np.zeros_like(p)
        if n:
            # Rows of p are exact ratios of counts; renormalising guards multinomial's sum check.
            counts += rng.multinomial(n, p / p.sum(axis=1, keepdims=True))
        if n_real:
            counts += rng.multinomial(n_real, p0, size=reps)
        p = counts / (n + n_real)
        record(m)
    return CollapseTrace(purity=purity, deviation=deviation, support=support, entropy=entropy,
                         n=n, n_real=n_real)


__all__ = ["CollapseTrace", "collapse_purity", "deviation_limit", "entropy_bits",
           "max_synthetic_fraction", "mixed_deviation", "simulate_collapse"]
