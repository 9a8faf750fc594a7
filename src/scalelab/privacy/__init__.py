"""Leave-one-out distinguishability (LOOD) on NNGP Gaussian processes (arXiv 2309.17310).

``lood(X_train, Y_train, x_extra, y_extra, queries, kernel=...)`` is the KL divergence between
the GP posterior predictives at the queries trained without and with the extra point(s);
``lood_per_point`` scores every training point; ``optimise_queries`` finds the queries that
leak the most (torch Adam, imported lazily).
"""

from .lood import DEFAULT_KERNEL as DEFAULT_KERNEL
from .lood import VARIANTS as VARIANTS
from .lood import check_psd as check_psd
from .lood import gaussian_kl as gaussian_kl
from .lood import kernel_matrix as kernel_matrix
from .lood import lood as lood
from .lood import lood_between as lood_between
from .lood import lood_per_point as lood_per_point
from .optimise import QueryOptimisation as QueryOptimisation
from .optimise import optimise_queries as optimise_queries
from .optimise import torch_nngp_kernel as torch_nngp_kernel

__all__ = ["DEFAULT_KERNEL", "VARIANTS", "QueryOptimisation", "check_psd", "gaussian_kl",
           "kernel_matrix", "lood", "lood_between", "lood_per_point", "optimise_queries",
           "torch_nngp_kernel"]
