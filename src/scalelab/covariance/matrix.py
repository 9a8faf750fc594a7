"""Checks and projections for correlation matrices, and the sample correlation itself.

Every estimator in :mod:`scalelab.covariance` validates its input here, so the one-line
``ValueError`` messages (non-square, non-symmetric, NaN, not unit-diagonal) read the same
everywhere.
"""

from __future__ import annotations

import numpy as np

from ..errors import check_int, check_positive

SYMMETRY_RTOL = 1e-8
DIAGONAL_ATOL = 1e-6


def check_square_symmetric(matrix, name: str = "C") -> np.ndarray:
    """Return ``matrix`` as a float64 array, or raise ``ValueError`` if it is not usable.

    Args:
        matrix: array-like, expected square, finite and symmetric (up to a relative
            tolerance of ``1e-8`` of its largest entry; the result is exactly symmetrised).
        name: the argument name used in error messages.
    """
    try:
        a = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric square matrix, got {type(matrix).__name__}") from None
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {a.shape}")
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise ValueError(f"{name} must contain only finite numbers, got {bad} NaN/inf entries")
    asym = float(np.max(np.abs(a - a.T)))
    tol = SYMMETRY_RTOL * max(1.0, float(np.max(np.abs(a))))
    if asym > tol:
        raise ValueError(f"{name} must be symmetric, got max |{name} - {name}.T| = {asym:.3g} "
                         f"(allowed <= {tol:.1g})")
    return (a + a.T) / 2


def check_correlation_input(matrix, name: str = "C") -> np.ndarray:
    """Like :func:`check_square_symmetric`, and the diagonal must be 1 (within ``1e-6``)."""
    a = check_square_symmetric(matrix, name)
    d = np.diag(a)
    if np.max(np.abs(d - 1.0)) > DIAGONAL_ATOL:
        raise ValueError(f"{name} must have a unit diagonal (a correlation matrix), got diagonal "
                         f"entries in [{d.min():.4g}, {d.max():.4g}]")
    np.fill_diagonal(a, 1.0)
    return a


def is_correlation_matrix(matrix, *, atol: float = 1e-8) -> bool:
    """True if ``matrix`` is square, finite, symmetric, unit-diagonal and PSD (all within ``atol``)."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.all(np.isfinite(a)):
        return False
    if np.max(np.abs(a - a.T)) > atol or np.max(np.abs(np.diag(a) - 1.0)) > atol:
        return False
    return bool(np.linalg.eigvalsh((a + a.T) / 2)[0] >= -atol)


def project_to_correlation(matrix, *, min_eigenvalue: float = 0.0) -> np.ndarray:
    """Map a symmetric matrix to a valid correlation matrix (symmetric, unit diagonal, PSD).

    Symmetrise, clip the eigenvalues from below at ``min_eigenvalue`` (>= 0), then rescale
    to a unit diagonal, ``D^{-1/2} M D^{-1/2}`` — a congruence, so PSD is kept. A matrix that
    already is a correlation matrix comes back unchanged up to rounding. This is a one-shot
    projection, not Higham's (2002) Frobenius-nearest correlation matrix.

    Args:
        matrix: square, finite, symmetric array.
        min_eigenvalue: eigenvalue floor before the diagonal rescaling; a positive value keeps
            the result invertible (its smallest eigenvalue is then > 0).
    """
    a = check_square_symmetric(matrix, "matrix")
    floor = check_positive("min_eigenvalue", min_eigenvalue, allow_zero=True)
    w, v = np.linalg.eigh(a)
    if w[0] < floor:
        a = (v * np.maximum(w, floor)) @ v.T
    d = np.diag(a).copy()
    # A row whose variance was clipped to 0 has no correlation to speak of: make it independent.
    dead = d <= np.finfo(np.float64).tiny
    d[dead] = 1.0
    a[dead, :] = 0.0
    a[:, dead] = 0.0
    s = 1.0 / np.sqrt(d)
    out = a * s[:, None] * s[None, :]
    out = (out + out.T) / 2
    np.fill_diagonal(out, 1.0)
    return out


def check_samples(samples, name: str = "samples", *, min_rows: int = 2) -> np.ndarray:
    """Return ``samples`` as a finite float64 ``(T, N)`` array with ``T >= min_rows``."""
    try:
        x = np.array(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric (T, N) array, got {type(samples).__name__}") from None
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (T, N) array, got shape {x.shape}")
    check_int(f"{name}.shape[0] (T)", x.shape[0], minimum=min_rows)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must contain only finite numbers, got NaN/inf entries")
    if np.any(x.std(axis=0) == 0):
        raise ValueError(f"{name} has a constant column; its correlation is undefined")
    return x


def sample_correlation(samples) -> np.ndarray:
    """The Pearson sample correlation of ``samples`` ``(T, N)`` (one observation per row)."""
    x = check_samples(samples)
    c = np.corrcoef(x, rowvar=False)
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    return c


def standardize(samples) -> np.ndarray:
    """Centre each column and divide by its (ddof=0) standard deviation."""
    x = check_samples(samples)
    x = x - x.mean(axis=0)
    return x / x.std(axis=0)
