"""Signal-propagation numerics of deep random networks (numpy/scipy only, no torch state).

Gaussian expectations (:mod:`.gaussian`), activations with derivatives and closed-form
kernels (:mod:`.activations`, :mod:`.closed_forms`), the variance and correlation maps
(:mod:`.maps`) and the Edge of Chaos (:mod:`.eoc`). arXiv 1902.06853.
"""

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import Activation as Activation
from .activations import activation_names as activation_names
from .activations import as_activation as as_activation
from .activations import from_callable as from_callable
from .activations import get_activation as get_activation
from .eoc import ConvergenceRate as ConvergenceRate
from .eoc import EOCPoint as EOCPoint
from .eoc import PhaseDiagram as PhaseDiagram
from .eoc import PhasePoint as PhasePoint
from .eoc import convergence_rate as convergence_rate
from .eoc import default_sigma_b as default_sigma_b
from .eoc import edge_of_chaos as edge_of_chaos
from .eoc import eoc_curve as eoc_curve
from .eoc import phase as phase
from .eoc import phase_diagram as phase_diagram
from .eoc import phase_point as phase_point
from .gaussian import expect as expect
from .gaussian import expect2 as expect2
from .gaussian import expect_pair as expect_pair
from .maps import FixedPoint as FixedPoint
from .maps import chi1 as chi1
from .maps import correlation_fixed_point as correlation_fixed_point
from .maps import correlation_gap_map as correlation_gap_map
from .maps import correlation_map as correlation_map
from .maps import correlation_map_slope as correlation_map_slope
from .maps import depth_scales as depth_scales
from .maps import fixed_point as fixed_point
from .maps import fixed_points as fixed_points
from .maps import variance_map as variance_map
from .maps import variance_map_slope as variance_map_slope

__all__ = [
    "ACTIVATIONS", "Activation", "ConvergenceRate", "EOCPoint", "FixedPoint", "PhaseDiagram",
    "PhasePoint", "activation_names", "as_activation", "chi1", "convergence_rate",
    "correlation_fixed_point", "correlation_gap_map", "correlation_map", "correlation_map_slope",
    "default_sigma_b", "depth_scales", "edge_of_chaos", "eoc_curve", "expect", "expect2",
    "expect_pair", "fixed_point", "fixed_points", "from_callable", "get_activation", "phase",
    "phase_diagram", "phase_point", "variance_map", "variance_map_slope",
]

# Kernels: infinite-width MLP (NNGP) and 1/sqrt(L) ResNet covariances (issue 7).
from .kernels import nngp_kernel as nngp_kernel  # noqa: E402
from .kernels import nngp_kernels as nngp_kernels  # noqa: E402
from .kernels import pair_expectations as pair_expectations  # noqa: E402
from .kernels import resnet_kernel as resnet_kernel  # noqa: E402

__all__ += ["nngp_kernel", "nngp_kernels", "pair_expectations", "resnet_kernel"]

# Model collapse of a categorical model re-fit on its own samples (issue 8).
from .collapse import CollapseTrace as CollapseTrace  # noqa: E402
from .collapse import collapse_purity as collapse_purity  # noqa: E402
from .collapse import deviation_limit as deviation_limit  # noqa: E402
from .collapse import max_synthetic_fraction as max_synthetic_fraction  # noqa: E402
from .collapse import mixed_deviation as mixed_deviation  # noqa: E402
from .collapse import simulate_collapse as simulate_collapse  # noqa: E402

__all__ += ["CollapseTrace", "collapse_purity", "deviation_limit", "max_synthetic_fraction",
            "mixed_deviation", "simulate_collapse"]

# Neural tangent kernels and their depth profiles (issue 16).
from .kernels import pair_derivative_expectations as pair_derivative_expectations  # noqa: E402
from .ntk import KernelPair as KernelPair  # noqa: E402
from .ntk import ntk_kernel as ntk_kernel  # noqa: E402
from .ntk import resnet_ntk as resnet_ntk  # noqa: E402
from .ntk_depth import DecayFit as DecayFit  # noqa: E402
from .ntk_depth import NTKDepthProfile as NTKDepthProfile  # noqa: E402
from .ntk_depth import decay_fit as decay_fit  # noqa: E402
from .ntk_depth import normalised_kernel as normalised_kernel  # noqa: E402
from .ntk_depth import ntk_depth_profile as ntk_depth_profile  # noqa: E402
from .ntk_depth import resnet_ntk_depth_profile as resnet_ntk_depth_profile  # noqa: E402
from .ntk_depth import trivial_limit as trivial_limit  # noqa: E402

__all__ += ["DecayFit", "KernelPair", "NTKDepthProfile", "decay_fit", "normalised_kernel",
            "ntk_depth_profile", "ntk_kernel", "pair_derivative_expectations", "resnet_ntk",
            "resnet_ntk_depth_profile", "trivial_limit"]
