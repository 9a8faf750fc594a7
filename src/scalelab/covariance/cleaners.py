"""Classic correlation-matrix cleaners behind one interface, :func:`clean_correlation`.

- ``"sample"``: the input, unchanged (the baseline).
- ``"clip"``: eigenvalue clipping at the Marchenko-Pastur edge (Laloux, Cizeau, Bouchaud &
  Potters 1999): eigenvalues at or below ``(1 + sqrt q)^2`` are replaced by their mean, so
  the trace (N) and every eigenvector are kept and only the bulk eigenvalues change.
- ``"ledoit-wolf"``: linear shrinkage towards the identity with the Ledoit-Wolf (2004)
  intensity, computed by scikit-learn on the standardised samples.
- ``"rie"``: the rotationally invariant estimator of Bun, Bouchaud & Potters (2016, 2017),
  with the usual regularisation (see :func:`rie_eigenvalues`).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_choice, check_int, check_positive
from .matrix import check_correlation_input, check_samples, project_to_correlation, standardize
from .rmt import marchenko_pastur_edges

CLEANING_METHODS = ("sample", "clip", "ledoit-wolf", "rie")


def _from_spectrum(eigenvectors: np.ndarray, eigenvalues: np.ndarray) -> np.ndarray:
    out = (eigenvectors * eigenvalues) @ eigenvectors.T
    return (out + out.T) / 2


def clip_eigenvalues(eigenvalues, q: float) -> np.ndarray:
    """Replace the eigenvalues at or below the MP edge ``(1 + sqrt q)^2`` by their mean.

    The sum (trace) is kept exactly. If none is in the bulk the input comes back unchanged.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).copy()
    _, edge = marchenko_pastur_edges(q)
    bulk = lam <= edge
    if bulk.any():
        lam[bulk] = lam[bulk].mean()
    return lam


def rie_eigenvalues(eigenvalues, q: float, *, eta: float | None = None,
                    debias_small: bool = True) -> np.ndarray:
    """Cleaned eigenvalues of the rotationally invariant estimator (RIE), for ``q < 1``.

    With ``z_k = lambda_k - i eta`` and ``g_k = (1/N) sum_{j != k} 1 / (z_k - lambda_j)`` the
    Stieltjes transform of the sample spectrum,

        xi_k = lambda_k / |1 - q + q z_k g_k|^2.

    Interpretation (ours): the sum leaves out ``j = k``. Its own term ``i / (N eta) =
    i N^{-1/2}`` is harmless inside the bulk but wrecks isolated outliers: with it, the
    market mode of a factor model (lambda ~ 30, N = 100) is shrunk by a third or more and the
    RIE loses to the raw sample matrix; without it the RIE lands close to the oracle
    ``u_k^T C u_k``.

    The usual regularisation (Bun, Bouchaud & Potters 2017, Phys. Rep. 666, sec. 8):
    ``eta = N^{-1/2}``; the small eigenvalues, which the finite-N formula biases downwards,
    are multiplied by ``max(1, Gamma_k)`` with
    ``Gamma_k = sigma^2 |1 - q + q z_k g_MP(z_k)|^2 / lambda_k``, where ``g_MP`` is the
    Stieltjes transform of a Marchenko-Pastur law of variance
    ``sigma^2 = lambda_min / (1 - sqrt q)^2`` (the pure-noise law whose lower edge is the
    smallest sample eigenvalue); finally the xi are rescaled to keep the trace.

    Args:
        eigenvalues: the N sample eigenvalues, all > 0.
        q: N / T, in (0, 1).
        eta: imaginary part of the spectral argument; default ``N^{-1/2}``.
        debias_small: apply the ``Gamma`` correction.

    Reference: Bun, Bouchaud & Potters, "Cleaning large correlation matrices: tools from
    random matrix theory", Phys. Rep. 666 (2017), arXiv 1610.08104; Bun, Allez, Bouchaud &
    Potters, IEEE Trans. Inf. Theory 62 (2016), arXiv 1502.06736.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    n = lam.size
    q = check_positive("q", q)
    if q >= 1:
        raise ValueError(f"q must be < 1 for the RIE (needs T > N), got q={q:.4g}")
    if np.any(lam <= 0):
        raise ValueError(f"eigenvalues must all be > 0 for the RIE, got min {lam.min():.3g}")
    eta = n ** -0.5 if eta is None else check_positive("eta", eta)
    z = lam - 1j * eta
    resolvent = 1.0 / (z[:, None] - lam[None, :])  # (N, N): 1 / (z_k - lambda_j)
    np.fill_diagonal(resolvent, 0.0)  # leave-one-out: see the docstring
    g = resolvent.sum(axis=1) / n  # (N,) Stieltjes transform at each z_k
    xi = lam / np.abs(1.0 - q + q * z * g) ** 2
    if debias_small:
        sq = math.sqrt(q)
        lam_min = float(lam.min())
        s2 = lam_min / (1.0 - sq) ** 2
        lam_max = s2 * (1.0 + sq) ** 2
        # Product of principal roots picks the branch with g_MP(z) ~ 1/z at infinity.
        root = np.sqrt(z - lam_min) * np.sqrt(z - lam_max)
        g_mp = (z + s2 * (q - 1.0) - root) / (2.0 * q * z * s2)
        gamma = s2 * np.abs(1.0 - q + q * z * g_mp) ** 2 / lam
        xi = xi * np.maximum(1.0, gamma)
    return xi * (lam.sum() / xi.sum())


def ledoit_wolf_intensity(samples) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity of the standardised ``samples`` (scikit-learn)."""
    try:
        from sklearn.covariance import ledoit_wolf_shrinkage
    except ImportError as e:  # pragma: no cover - scikit-learn is in the [data] extra
        raise ImportError("method='ledoit-wolf' needs scikit-learn: pip install scikit-learn") from e
    return float(ledoit_wolf_shrinkage(standardize(samples), assume_centered=True))


def clean_correlation(C, T: int, method: str = "clip", *, samples=None,
                      renormalize: bool = False) -> np.ndarray:
    """Clean a sample correlation matrix ``C`` (N x N) estimated from ``T`` samples.

    Args:
        C: the sample correlation matrix: square, finite, symmetric, unit diagonal.
        T: number of samples behind ``C`` (integer >= 2); sets ``q = N / T``.
        method: one of ``"sample"``, ``"clip"``, ``"ledoit-wolf"``, ``"rie"`` (module doc).
        samples: the ``(T, N)`` data; required by ``"ledoit-wolf"`` (its intensity is
            estimated from the samples' fourth moments), ignored otherwise. The result is
            ``(1 - delta) C + delta I`` with ``delta`` from scikit-learn, which equals
            ``sklearn.covariance.LedoitWolf`` on the standardised samples when ``C`` is their
            correlation.
        renormalize: rescale the result to a unit diagonal (after flooring eigenvalues at 0)
            with :func:`project_to_correlation`. Off by default, so ``"clip"`` and ``"rie"``
            return the textbook estimators (trace N kept, eigenvectors of ``C`` kept, diagonal
            close to but not exactly 1).

    Returns:
        The cleaned N x N matrix (symmetric; positive definite for ``"ledoit-wolf"``,
        ``"rie"``, and for ``"clip"`` when ``C`` is PSD with a non-empty bulk).
    """
    method = check_choice("method", method, CLEANING_METHODS)
    c = check_correlation_input(C, "C")
    t = check_int("T", T, minimum=2)
    n = c.shape[0]
    q = n / t
    if method == "sample":
        out = c
    elif method == "ledoit-wolf":
        if samples is None:
            raise ValueError("samples is required for method='ledoit-wolf' (the (T, N) data "
                             "behind C); got None")
        x = check_samples(samples)
        if x.shape != (t, n):
            raise ValueError(f"samples must have shape (T, N) = ({t}, {n}), got {x.shape}")
        delta = ledoit_wolf_intensity(x)
        out = (1.0 - delta) * c + delta * np.eye(n)
    else:
        lam, vec = np.linalg.eigh(c)
        if method == "clip":
            out = _from_spectrum(vec, clip_eigenvalues(lam, q))
        else:
            if q >= 1:
                raise ValueError(f"method='rie' needs T > N (q = N/T < 1), got N={n}, T={t}; "
                                 "use 'clip' or 'ledoit-wolf'")
            if lam[0] <= 0:
                raise ValueError(f"C must be positive definite for method='rie', got smallest "
                                 f"eigenvalue {lam[0]:.3g}")
            out = _from_spectrum(vec, rie_eigenvalues(lam, q))
    out = np.array(out, dtype=np.float64)
    return project_to_correlation(out) if renormalize else out
