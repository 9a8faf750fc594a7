"""scalelab: training neural networks at scale, from infinite-width and infinite-depth theory.

``import scalelab`` is light: it never imports transformers, peft or accelerate. The
signal-propagation numerics of :mod:`scalelab.theory` are re-exported here; torch layers live
in :mod:`scalelab.nn`, LoRA+ in :mod:`scalelab.lora`, pictures in :mod:`scalelab.plots`.
"""

from __future__ import annotations

from ._errors import ScalelabWarning as ScalelabWarning

__version__ = "0.1.0"

__all__ = ["ScalelabWarning", "__version__"]
