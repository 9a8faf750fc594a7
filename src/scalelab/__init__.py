"""scalelab: training neural networks at scale, from infinite-width and infinite-depth theory.

``import scalelab`` is light: it never imports transformers, peft or accelerate. The
signal-propagation numerics of :mod:`scalelab.theory` are re-exported here; torch layers live
in :mod:`scalelab.nn`, LoRA+ in :mod:`scalelab.lora`, pictures in :mod:`scalelab.plots`.
"""

from __future__ import annotations

from .errors import ScalelabWarning as ScalelabWarning
from .theory import EOCPoint as EOCPoint
from .theory import FixedPoint as FixedPoint
from .theory import chi1 as chi1
from .theory import correlation_map as correlation_map
from .theory import depth_scales as depth_scales
from .theory import edge_of_chaos as edge_of_chaos
from .theory import eoc_curve as eoc_curve
from .theory import fixed_point as fixed_point
from .theory import get_activation as get_activation
from .theory import nngp_kernel as nngp_kernel
from .theory import ntk_kernel as ntk_kernel
from .theory import phase as phase
from .theory import resnet_kernel as resnet_kernel
from .theory import resnet_ntk as resnet_ntk
from .theory import variance_map as variance_map

__all__ = [
    "__version__", "chi1", "correlation_map", "depth_scales", "edge_of_chaos", "eoc_curve",
    "EOCPoint", "fixed_point", "FixedPoint", "get_activation", "nngp_kernel", "ntk_kernel",
    "phase", "resnet_kernel", "resnet_ntk", "ScalelabWarning", "variance_map",
]

__version__ = "0.1.0"
