"""Random-matrix facts for sample covariance matrices: Marchenko-Pastur and the BBP spike.

Setting (docs/methods.md, Covariance cleaning): N variables, T samples, q = N / T, population
covariance the identity plus at most a few spikes. Sample eigenvalues of pure noise fill the
Marchenko-Pastur bulk [(1 - sqrt q)^2, (1 + sqrt q)^2]; a population spike l above the Baik-Ben
Arous-Peche threshold 1 + sqrt q pops out of the bulk at

    lambda = l (1 + q / (l - 1))     (> l: the sample overestimates the spike),

and a spike below the threshold sticks to the bulk edge (1 + sqrt q)^2. Inverting gives the
de-biasing estimator

    l = ((lambda + 1 - q) + sqrt((lambda + 1 - q)^2 - 4 lambda)) / 2.

References: Marchenko & Pastur (1967); Baik, Ben Arous & Peche (2005), Ann. Probab. 33;
the Bloomberg technical report "On the Overestimation of the Largest Eigenvalue of a
Covariance Matrix" (2017).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_choice, check_positive

BELOW_EDGE_POLICIES = ("threshold", "nan")


def marchenko_pastur_edges(q: float) -> tuple[float, float]:
    """The bulk edges ``((1 - sqrt q)^2, (1 + sqrt q)^2)`` for aspect ratio ``q = N / T > 0``."""
    s = math.sqrt(check_positive("q", q))
    return (1.0 - s) ** 2, (1.0 + s) ** 2


def marchenko_pastur_density(x, q: float) -> np.ndarray | float:
    """Density of the continuous part of the Marchenko-Pastur law (unit variance).

    ``rho(x) = sqrt((lambda_+ - x)(x - lambda_-)) / (2 pi q x)`` on the bulk, 0 outside.
    For ``q <= 1`` it integrates to 1. For ``q > 1`` the law also has a point mass
    ``1 - 1/q`` at 0 (the ``N - T`` zero eigenvalues), which this density leaves out, so it
    integrates to ``1/q``.

    Args:
        x: point(s) where to evaluate (array-like or a number).
        q: aspect ratio N / T, > 0.
    """
    lo, hi = marchenko_pastur_edges(q)
    xa = np.asarray(x, dtype=np.float64)
    inside = (xa > lo) & (xa < hi)
    safe = np.where(inside, xa, 1.0)
    rho = np.where(inside, np.sqrt(np.clip((hi - safe) * (safe - lo), 0, None))
                   / (2 * np.pi * q * safe), 0.0)
    return float(rho) if rho.ndim == 0 else rho


def bbp_threshold(q: float) -> float:
    """The detectability threshold ``1 + sqrt q`` of a population spike (BBP 2005)."""
    return 1.0 + math.sqrt(check_positive("q", q))


def spiked_top_eigenvalue(spike, q: float) -> np.ndarray | float:
    """Large-N limit of the sample top eigenvalue for a population spike ``l`` (others 1).

    ``l (1 + q / (l - 1))`` when ``l > 1 + sqrt q``, else the bulk edge ``(1 + sqrt q)^2``
    (the two agree at the threshold, so the map is continuous and increasing).

    Args:
        spike: population top eigenvalue(s) ``l >= 1`` (any positive number is accepted;
            below the threshold the answer is the edge).
        q: aspect ratio N / T, > 0.

    Reference: Baik, Ben Arous & Peche (2005).
    """
    q = check_positive("q", q)
    ell = _check_positive_array("spike", spike)
    thr = 1.0 + math.sqrt(q)
    above = ell > thr
    safe = np.where(above, ell, 2.0 * thr)
    lam = np.where(above, safe * (1.0 + q / (safe - 1.0)), thr**2)
    return float(lam) if lam.ndim == 0 else lam


def debias_top_eigenvalue(top_eigenvalue, q: float, *, below_edge: str = "threshold"):
    """Estimate the population spike from the sample top eigenvalue (inverse BBP relation).

    For ``lambda`` above the bulk edge ``(1 + sqrt q)^2`` this returns
    ``((lambda + 1 - q) + sqrt((lambda + 1 - q)^2 - 4 lambda)) / 2``, which exactly inverts
    :func:`spiked_top_eigenvalue`. At or below the edge a spike is undetectable (any
    ``l <= 1 + sqrt q`` gives the same sample top eigenvalue), and the answer is the
    policy ``below_edge``: ``"threshold"`` (default) returns ``1 + sqrt q``, the largest
    spike consistent with the data and the value the formula reaches at the edge (so the
    estimator stays continuous); ``"nan"`` returns NaN.

    Args:
        top_eigenvalue: sample top eigenvalue(s), positive finite number(s).
        q: aspect ratio N / T, in (0, inf).
        below_edge: ``"threshold"`` or ``"nan"``.

    Returns:
        A float for a scalar input, else an array of the same shape.

    Reference: Baik, Ben Arous & Peche (2005); "On the Overestimation of the Largest
    Eigenvalue of a Covariance Matrix" (Bloomberg technical report, 2017).
    """
    q = check_positive("q", q)
    check_choice("below_edge", below_edge, BELOW_EDGE_POLICIES)
    lam = _check_positive_array("top_eigenvalue", top_eigenvalue)
    thr = 1.0 + math.sqrt(q)
    above = lam > thr**2
    b = lam + 1.0 - q
    disc = np.clip(b * b - 4.0 * lam, 0.0, None)
    ell = np.where(above, (b + np.sqrt(disc)) / 2.0, thr if below_edge == "threshold" else np.nan)
    return float(ell) if ell.ndim == 0 else ell


def _check_positive_array(name: str, value) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number (or array of them), got {value!r}") from None
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        shown = value if a.size <= 4 else f"array with min {np.nanmin(a):.4g}"
        raise ValueError(f"{name} must be a finite number > 0 (or array of them), got {shown!r}")
    return a
