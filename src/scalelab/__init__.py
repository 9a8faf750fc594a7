"""scalelab: training neural networks at scale, from infinite-width and infinite-depth theory.

``import scalelab`` is light: it never imports transformers, peft or accelerate. The
signal-propagation numerics of :mod:`scalelab.theory` are re-exported here; torch layers live
in :mod:`scalelab.nn`, LoRA+ in :mod:`scalelab.lora`, pictures in :mod:`scalelab.plots`.
"""

from __future__ import annotations

from ._errors import ScalelabWarning as ScalelabWarning

# Signal propagation (scalelab.theory, issue 4).
from .theory import EOCPoint as EOCPoint
from .theory import FixedPoint as FixedPoint
from .theory import chi1 as chi1
from .theory import correlation_map as correlation_map
from .theory import depth_scales as depth_scales
from .theory import edge_of_chaos as edge_of_chaos
from .theory import eoc_curve as eoc_curve
from .theory import fixed_point as fixed_point
from .theory import get_activation as get_activation
from .theory import phase as phase
from .theory import variance_map as variance_map

__version__ = "0.1.0"

__all__ = ["ScalelabWarning", "__version__"]
__all__ += ["EOCPoint", "FixedPoint", "chi1", "correlation_map", "depth_scales",
            "edge_of_chaos", "eoc_curve", "fixed_point", "get_activation", "phase",
            "variance_map"]

# Kernels (scalelab.theory.kernels, issue 7).
from .theory import nngp_kernel as nngp_kernel  # noqa: E402
from .theory import resnet_kernel as resnet_kernel  # noqa: E402

__all__ += ["nngp_kernel", "resnet_kernel"]

# Neural tangent kernels (scalelab.theory.ntk, issue 16).
from .theory import ntk_kernel as ntk_kernel  # noqa: E402
from .theory import resnet_ntk as resnet_ntk  # noqa: E402

__all__ += ["ntk_kernel", "resnet_ntk"]
