"""Closed-form Gaussian kernels: piecewise-linear activations (arc-cosine) and erf.

Used in place of quadrature where they exist, and as independent oracles in the tests.

- Piecewise linear through the origin, ``phi(x) = l x`` (x > 0), ``b x`` (x < 0): ReLU
  (l=1, b=0), leaky ReLU, abs (1, -1), linear (1, 1). From the arc-cosine kernel of
  Cho & Saul (2009): with ``theta`` the angle between the inputs,
  E[relu(u) relu(v)] = sqrt(q_a q_b) / (2 pi) (sin theta + (pi - theta) cos theta).
- erf (Williams 1997): E[erf(u) erf(v)] = (2/pi) arcsin(2 Sigma / sqrt((1 + 2 q_a)(1 + 2 q_b))).

Angles come from ``theta = 2 atan2(sqrt(1 - c), sqrt(1 + c))``, never ``arccos(c)``, and the
"gap" forms E[phi(U)^2] - E[phi(U) phi(V)] are written so that nothing cancels as c -> 1.
"""

from __future__ import annotations

import math

import numpy as np


def _theta(c: np.ndarray) -> np.ndarray:
    return 2.0 * np.arctan2(np.sqrt(1.0 - c), np.sqrt(1.0 + c))


#: Coefficients of sin t - t cos t = t^3 sum_k a_k (t^2)^k, a_k = (-1)^k 2(k+1) / (2k+3)!;
#: 9 terms leave a relative error below 1e-17 for |t| < 0.5 (the next term's ratio).
_SERIES = tuple((-1) ** k * 2.0 * (k + 1) / math.factorial(2 * k + 3) for k in range(9))


def _sin_minus_theta_cos(t: np.ndarray, sin_t: np.ndarray | None = None,
                         cos_t: np.ndarray | None = None) -> np.ndarray:
    """sin t - t cos t; below t = 0.5 (where the difference cancels) by its power series.

    ``sin_t`` / ``cos_t`` may be passed when the caller has them. The series is a polynomial
    in ``t^2`` evaluated by Horner's rule on every element and selected, so the cost does not
    depend on how many angles are small (at large depth nearly all are).
    """
    t = np.asarray(t, dtype=float)
    sin_t = np.sin(t) if sin_t is None else sin_t
    cos_t = np.cos(t) if cos_t is None else cos_t
    u = t * t
    series = np.full_like(u, _SERIES[-1])
    for a in _SERIES[-2::-1]:
        series *= u
        series += a
    series *= u * t
    return np.where(np.abs(t) < 0.5, series, sin_t - t * cos_t)


class PiecewiseLinear:
    """Kernels of phi(x) = l x (x > 0), b x (x < 0)."""

    def __init__(self, l: float, b: float):  # noqa: E741 - the paper's names
        self.l, self.b = float(l), float(b)
        self.m2 = (self.l**2 + self.b**2) / 2.0  # E[phi'^2]

    def mean_sq(self, q):
        return self.m2 * np.asarray(q, dtype=float)

    def mean_dsq(self, q):
        return self.m2 * np.ones_like(np.asarray(q, dtype=float))

    def dmean_sq(self, q):
        return self.mean_dsq(q)

    def mean_d2sq(self, q):
        # phi'' is a Dirac mass at 0 unless l == b: the expectation is infinite.
        return np.full(np.shape(q), 0.0 if self.l == self.b else math.inf)

    def pair(self, q_a, q_b, c):
        t = _theta(np.asarray(c, dtype=float))
        cos_t = np.cos(t)
        b_t = _sin_minus_theta_cos(t, np.sin(t), cos_t)
        # sin t + (pi - t) cos t = pi cos t + (sin t - t cos t)
        same = np.pi * cos_t + b_t
        ll, lb = self.l**2 + self.b**2, 2.0 * self.l * self.b
        return np.sqrt(np.asarray(q_a) * q_b) / (2 * np.pi) * (ll * same - lb * b_t)

    def dpair(self, q_a, q_b, c):
        t = _theta(np.asarray(c, dtype=float)) + 0.0 * np.asarray(q_a) * q_b
        ll, lb = self.l**2 + self.b**2, 2.0 * self.l * self.b
        return (ll * (np.pi - t) + lb * t) / (2 * np.pi)

    def pair_moments(self, q_a, q_b, c):
        """(pair, dpair) from one angle: the same numbers as the two methods, at half the cost."""
        t = _theta(np.asarray(c, dtype=float))
        cos_t = np.cos(t)
        b_t = _sin_minus_theta_cos(t, np.sin(t), cos_t)
        same = np.pi * cos_t + b_t
        ll, lb = self.l**2 + self.b**2, 2.0 * self.l * self.b
        pair = np.sqrt(np.asarray(q_a) * q_b) / (2 * np.pi) * (ll * same - lb * b_t)
        if t.shape != pair.shape:  # dpair takes the broadcast shape of the variances too
            t = np.broadcast_to(t, pair.shape)
        return pair, (ll * (np.pi - t) + lb * t) / (2 * np.pi)

    def gap(self, q, c):
        """E[phi(U)^2] - E[phi(U) phi(V)] for equal variances q, no cancellation near c = 1."""
        c = np.asarray(c, dtype=float)
        b_t = _sin_minus_theta_cos(_theta(c))
        ll, lb = self.l**2 + self.b**2, 2.0 * self.l * self.b
        return np.asarray(q) / (2 * np.pi) * (ll * (np.pi * (1.0 - c) - b_t) + lb * b_t)


class Erf:
    """Kernels of phi = erf (Williams 1997)."""

    def mean_sq(self, q):
        q = np.asarray(q, dtype=float)
        return 2.0 / np.pi * np.arcsin(2 * q / (1 + 2 * q))

    def mean_dsq(self, q):
        return 4.0 / np.pi / np.sqrt(1 + 4 * np.asarray(q, dtype=float))

    def dmean_sq(self, q):
        q = np.asarray(q, dtype=float)
        return 4.0 / np.pi / ((1 + 2 * q) * np.sqrt(1 + 4 * q))

    def mean_d2sq(self, q):
        q = np.asarray(q, dtype=float)
        return 16.0 / np.pi * q / (1 + 4 * q) ** 1.5

    def pair(self, q_a, q_b, c):
        q_a, q_b = np.asarray(q_a, dtype=float), np.asarray(q_b, dtype=float)
        sig = np.asarray(c) * np.sqrt(q_a * q_b)
        return 2.0 / np.pi * np.arcsin(2 * sig / np.sqrt((1 + 2 * q_a) * (1 + 2 * q_b)))

    def dpair(self, q_a, q_b, c):
        q_a, q_b = np.asarray(q_a, dtype=float), np.asarray(q_b, dtype=float)
        c = np.asarray(c, dtype=float)
        # (1 + 2qa)(1 + 2qb) - 4 c^2 qa qb, written so that it stays positive
        det = 1 + 2 * q_a + 2 * q_b + 4 * q_a * q_b * (1 - c) * (1 + c)
        return 4.0 / np.pi / np.sqrt(det)

    def pair_moments(self, q_a, q_b, c):
        """(pair, dpair)."""
        return self.pair(q_a, q_b, c), self.dpair(q_a, q_b, c)

    def gap(self, q, c):
        """(2/pi)(arcsin x - arcsin(x c)), x = 2q/(1+2q), as one atan2 (stable for c >= 0)."""
        q, c = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(c, dtype=float))
        x = 2 * q / (1 + 2 * q)
        cp = np.maximum(c, 0.0)
        r1, r2 = np.sqrt(1 - x * x), np.sqrt(1 - (x * cp) ** 2)
        sin_d = x * (1 - cp) * (1 + cp) / (r2 + cp * r1)
        stable = 2.0 / np.pi * np.arctan2(sin_d, r1 * r2 + x * x * cp)
        direct = self.mean_sq(q) - self.pair(q, q, c)
        return np.where(c >= 0, stable, direct)
