"""Covariance cleaning: top-eigenvalue bias correction and correlation-matrix denoising.

The two Bloomberg technical reports of 2017 (docs/methods.md, Covariance cleaning): the sample top
eigenvalue overestimates the population one (BBP relation, :func:`debias_top_eigenvalue`
inverts it), and a denoising autoencoder can clean a noisy correlation matrix
(:class:`DenoisingAutoencoderCleaner`), compared with the classic cleaners behind
:func:`clean_correlation` (clipping, Ledoit-Wolf, RIE).

numpy/scipy only at import; torch is imported when :class:`DenoisingAutoencoderCleaner` is
first accessed (module ``__getattr__``), scikit-learn when Ledoit-Wolf is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cleaners import CLEANING_METHODS as CLEANING_METHODS
from ._cleaners import clean_correlation as clean_correlation
from ._cleaners import clip_eigenvalues as clip_eigenvalues
from ._cleaners import ledoit_wolf_intensity as ledoit_wolf_intensity
from ._cleaners import rie_eigenvalues as rie_eigenvalues
from ._matrix import check_correlation_input as check_correlation_input
from ._matrix import check_square_symmetric as check_square_symmetric
from ._matrix import is_correlation_matrix as is_correlation_matrix
from ._matrix import project_to_correlation as project_to_correlation
from ._matrix import sample_correlation as sample_correlation
from ._portfolio import min_variance_weights as min_variance_weights
from ._portfolio import out_of_sample_risk_ratio as out_of_sample_risk_ratio
from ._portfolio import portfolio_risk as portfolio_risk
from ._rmt import bbp_threshold as bbp_threshold
from ._rmt import debias_top_eigenvalue as debias_top_eigenvalue
from ._rmt import marchenko_pastur_density as marchenko_pastur_density
from ._rmt import marchenko_pastur_edges as marchenko_pastur_edges
from ._rmt import spiked_top_eigenvalue as spiked_top_eigenvalue
from ._simulate import factor_correlation as factor_correlation
from ._simulate import random_factor_loadings as random_factor_loadings
from ._simulate import simulate_factor_model as simulate_factor_model
from ._simulate import simulate_spiked_samples as simulate_spiked_samples

if TYPE_CHECKING:
    from ._autoencoder import DenoisingAutoencoderCleaner as DenoisingAutoencoderCleaner

__all__ = [
    "CLEANING_METHODS",
    "DenoisingAutoencoderCleaner",
    "bbp_threshold",
    "check_correlation_input",
    "check_square_symmetric",
    "clean_correlation",
    "clip_eigenvalues",
    "debias_top_eigenvalue",
    "factor_correlation",
    "is_correlation_matrix",
    "ledoit_wolf_intensity",
    "marchenko_pastur_density",
    "marchenko_pastur_edges",
    "min_variance_weights",
    "out_of_sample_risk_ratio",
    "portfolio_risk",
    "project_to_correlation",
    "random_factor_loadings",
    "rie_eigenvalues",
    "sample_correlation",
    "simulate_factor_model",
    "simulate_spiked_samples",
    "spiked_top_eigenvalue",
]

_LAZY = {"DenoisingAutoencoderCleaner": "._autoencoder"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
