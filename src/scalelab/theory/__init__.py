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
from .collapse import CollapseTrace as CollapseTrace
from .collapse import collapse_purity as collapse_purity
from .collapse import deviation_limit as deviation_limit
from .collapse import max_synthetic_fraction as max_synthetic_fraction
from .collapse import mixed_deviation as mixed_deviation
from .collapse import simulate_collapse as simulate_collapse
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
from .kernels import nngp_kernel as nngp_kernel
from .kernels import nngp_kernels as nngp_kernels
from .kernels import pair_derivative_expectations as pair_derivative_expectations
from .kernels import pair_expectations as pair_expectations
from .kernels import resnet_kernel as resnet_kernel
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
from .ntk import KernelPair as KernelPair
from .ntk import ntk_kernel as ntk_kernel
from .ntk import resnet_ntk as resnet_ntk
from .ntk_depth import DecayFit as DecayFit
from .ntk_depth import NTKDepthProfile as NTKDepthProfile
from .ntk_depth import decay_fit as decay_fit
from .ntk_depth import normalised_kernel as normalised_kernel
from .ntk_depth import ntk_depth_profile as ntk_depth_profile
from .ntk_depth import resnet_ntk_depth_profile as resnet_ntk_depth_profile
from .ntk_depth import trivial_limit as trivial_limit

__all__ = [
    "Activation", "activation_names", "ACTIVATIONS", "as_activation", "chi1", "collapse_purity",
    "CollapseTrace", "convergence_rate", "ConvergenceRate", "correlation_fixed_point",
    "correlation_gap_map", "correlation_map", "correlation_map_slope", "decay_fit", "DecayFit",
    "default_sigma_b", "depth_scales", "deviation_limit", "edge_of_chaos", "eoc_curve", "EOCPoint",
    "expect", "expect2", "expect_pair", "fixed_point", "fixed_points", "FixedPoint",
    "from_callable", "get_activation", "KernelPair", "max_synthetic_fraction", "mixed_deviation",
    "nngp_kernel", "nngp_kernels", "normalised_kernel", "ntk_depth_profile", "ntk_kernel",
    "NTKDepthProfile", "pair_derivative_expectations", "pair_expectations", "phase",
    "phase_diagram", "phase_point", "PhaseDiagram", "PhasePoint", "resnet_kernel", "resnet_ntk",
    "resnet_ntk_depth_profile", "simulate_collapse", "trivial_limit", "variance_map",
    "variance_map_slope",
]
