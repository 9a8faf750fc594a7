"""Every picture scalelab draws. matplotlib is imported here only, never by computations.

Each ``plot_*`` function takes the records a computation returned plus a path, writes a PNG
and returns the path. Area modules (``_lora``, ``_eoc``, ...) hold the functions; this module
re-exports them.
"""

from ._common import savefig as savefig

__all__ = ["savefig"]
