"""Minimum-variance portfolios: the out-of-sample test of a cleaned correlation matrix.

With unit-variance assets, the minimum-variance weights built from an estimate ``E`` are
``w = E^{-1} 1 / (1^T E^{-1} 1)``; their true (out-of-sample) risk is ``w^T C w`` for the
population correlation ``C``, never below the optimum ``1 / (1^T C^{-1} 1)``. The ratio of
the two measures how much estimation noise costs (Bun, Bouchaud & Potters 2017, sec. 9).
"""

from __future__ import annotations

import numpy as np

from .matrix import check_square_symmetric


def min_variance_weights(estimate) -> np.ndarray:
    """Fully invested minimum-variance weights ``E^{-1} 1 / (1^T E^{-1} 1)``.

    A singular ``estimate`` uses its pseudo-inverse.
    """
    e = check_square_symmetric(estimate, "estimate")
    ones = np.ones(e.shape[0])
    try:
        y = np.linalg.solve(e, ones)
    except np.linalg.LinAlgError:
        y = np.linalg.pinv(e, hermitian=True) @ ones
    total = float(y.sum())
    if not np.isfinite(total) or abs(total) < 1e-300:
        raise ValueError("estimate gives no fully invested minimum-variance portfolio "
                         "(1^T E^{-1} 1 is 0 or not finite)")
    return y / total


def portfolio_risk(weights, covariance) -> float:
    """The variance ``w^T C w`` of portfolio ``weights`` under ``covariance``."""
    w = np.asarray(weights, dtype=np.float64)
    c = check_square_symmetric(covariance, "covariance")
    if w.shape != (c.shape[0],):
        raise ValueError(f"weights must have shape ({c.shape[0]},), got {w.shape}")
    return float(w @ c @ w)


def out_of_sample_risk_ratio(estimate, true_correlation) -> float:
    """True risk of the min-variance portfolio built on ``estimate``, over the optimal one (>= 1)."""
    w = min_variance_weights(estimate)
    best = min_variance_weights(true_correlation)
    return portfolio_risk(w, true_correlation) / portfolio_risk(best, true_correlation)
