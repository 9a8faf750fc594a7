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

from .cleaners import CLEANING_METHODS as CLEANING_METHODS
from .cleaners import clean_correlation as clean_correlation
from .cleaners import clip_eigenvalues as clip_eigenvalues
from .cleaners import ledoit_wolf_intensity as ledoit_wolf_intensity
from .cleaners import rie_eigenvalues as rie_eigenvalues
from .matrix import check_correlation_input as check_correlation_input
from .matrix import check_square_symmetric as check_square_symmetric
from .matrix import is_correlation_matrix as is_correlation_matrix
from .matrix import project_to_correlation as project_to_correlation
from .matrix import sample_correlation as sample_correlation
from .portfolio import min_variance_weights as min_variance_weights
from .portfolio import out_of_sample_risk_ratio as out_of_sample_risk_ratio
from .portfolio import portfolio_risk as portfolio_risk
from .rmt import bbp_threshold as bbp_threshold
from .rmt import debias_top_eigenvalue as debias_top_eigenvalue
from .rmt import marchenko_pastur_density as marchenko_pastur_density
from .rmt import marchenko_pastur_edges as marchenko_pastur_edges
from .rmt import spiked_top_eigenvalue as spiked_top_eigenvalue
from .simulate import factor_correlation as factor_correlation
from .simulate import random_factor_loadings as random_factor_loadings
from .simulate import simulate_factor_model as simulate_factor_model
from .simulate import simulate_spiked_samples as simulate_spiked_samples

if TYPE_CHECKING:
    from .autoencoder import DenoisingAutoencoderCleaner as DenoisingAutoencoderCleaner

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

_LAZY = {"DenoisingAutoencoderCleaner": ".autoencoder"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
