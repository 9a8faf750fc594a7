"""Simulated data with a known truth: factor-model correlations and spiked covariances.

A factor model (market + sectors) gives the "true" correlation matrices the cleaners are
scored against and the autoencoder is trained on; the single-spike covariance is the
setting of the BBP relation.
"""

from __future__ import annotations

import numpy as np

from ..errors import check_int, check_positive


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def random_factor_loadings(n_assets: int, n_factors: int = 5, *, seed=None) -> np.ndarray:
    """Loadings ``B`` (n_assets x n_factors) of a market + sectors factor model.

    Interpretation (a stylised equity market, our choice): factor 0 is the market, with
    a matrix-wide strength ``s ~ U(0.25, 0.65)`` and per-asset loadings ``s * U(0.7, 1.3)``;
    each asset belongs to one of the ``n_factors - 1`` sectors (uniformly at random) with
    loading ``U(0.15, 0.5)``. Every row has squared norm < 1, so the idiosyncratic
    variance ``1 - |b_i|^2`` is positive.

    Args:
        n_assets: N >= 2.
        n_factors: K >= 1 (1 means the market alone).
        seed: int, None or a ``numpy.random.Generator``.
    """
    n = check_int("n_assets", n_assets, minimum=2)
    k = check_int("n_factors", n_factors, minimum=1)
    rng = _rng(seed)
    b = np.zeros((n, k))
    b[:, 0] = rng.uniform(0.25, 0.65) * rng.uniform(0.7, 1.3, size=n)
    if k > 1:
        sector = rng.integers(1, k, size=n)
        b[np.arange(n), sector] = rng.uniform(0.15, 0.5, size=n)
    return b


def factor_correlation(loadings) -> np.ndarray:
    """The correlation ``B B^T + diag(1 - |b_i|^2)`` of a unit-variance factor model."""
    b = np.asarray(loadings, dtype=np.float64)
    c = b @ b.T
    np.fill_diagonal(c, 1.0)
    return c


def simulate_factor_model(n_assets: int, n_samples: int, *, n_factors: int = 5,
                          seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Draw a random factor model and ``n_samples`` Gaussian observations from it.

    ``x_t = B f_t + sqrt(1 - |b_i|^2) eps_t`` with ``f_t, eps_t`` standard normal, so every
    variable has unit variance and the population covariance is the correlation.

    Returns:
        ``(true_correlation, samples)``: an (N, N) correlation matrix and a (T, N) array.
    """
    t = check_int("n_samples", n_samples, minimum=2)
    rng = _rng(seed)
    b = random_factor_loadings(n_assets, n_factors, seed=rng)
    idio = np.sqrt(1.0 - np.sum(b * b, axis=1))
    f = rng.standard_normal((t, b.shape[1]))
    eps = rng.standard_normal((t, b.shape[0]))
    return factor_correlation(b), f @ b.T + eps * idio


def simulate_spiked_samples(n_variables: int, n_samples: int, spike: float, *,
                            seed=None) -> np.ndarray:
    """``n_samples`` Gaussian rows with covariance ``I + (spike - 1) v v^T``, ``v`` random.

    ``v`` is a uniformly random unit vector, so the population eigenvalues are ``spike``
    once and 1 otherwise: the BBP setting.
    """
    n = check_int("n_variables", n_variables, minimum=1)
    t = check_int("n_samples", n_samples, minimum=2)
    ell = check_positive("spike", spike)
    rng = _rng(seed)
    v = rng.standard_normal(n)
    v /= np.linalg.norm(v)
    z = rng.standard_normal((t, n))
    # Sigma^{1/2} = I + (sqrt(l) - 1) v v^T
    return z + (np.sqrt(ell) - 1.0) * np.outer(z @ v, v)
