"""scalelab.nn."""

# Residual scaling, stochastic depth, Depth-µP (issue 5).
from .activations import activation_module as activation_module
from .depth_mup import depth_mup_optimizer as depth_mup_optimizer
from .depth_mup import depth_mup_param_groups as depth_mup_param_groups
from .drop_path import DropPath as DropPath
from .drop_path import drop_path as drop_path
from .init import detect_activation as detect_activation
from .init import eoc_normal_ as eoc_normal_
from .init import init_eoc_ as init_eoc_
from .init import init_gaussian_ as init_gaussian_
from .lm_loss import ScoredCausalLM as ScoredCausalLM
from .lm_loss import linear_cross_entropy as linear_cross_entropy
from .lm_loss import scored_causal_lm_loss as scored_causal_lm_loss
from .lm_loss import unfused_reason as unfused_reason
from .models import ConvResNet as ConvResNet
from .models import ResidualMLP as ResidualMLP
from .residual import ScaledResidual as ScaledResidual
from .residual import block_controller as block_controller
from .residual import branch_scales as branch_scales
from .residual import residual_blocks as residual_blocks
from .residual import scale_residual_ as scale_residual_
from .residual import scaled_residual as scaled_residual
from .survival import block_sensitivities as block_sensitivities
from .survival import survival_rates as survival_rates

# isort: split
# NTK-parametrised reference models and the torch closed-form kernels (issue 16).
from .kernels import torch_nngp_kernel as torch_nngp_kernel
from .models import NTKMLP as NTKMLP
from .models import NTKLinear as NTKLinear
from .models import NTKResidualMLP as NTKResidualMLP

# isort: split
# One home for the activation table and the reference models (issue 21).
from .activations import TORCH_ACTIVATIONS as TORCH_ACTIVATIONS
from .activations import module_activation as module_activation
from .reference import MODEL_FAMILIES as MODEL_FAMILIES
from .reference import build_model as build_model
from .reference import reference_mlp as reference_mlp
from .reference import reference_model as reference_model
from .tensors import model_device as model_device
from .tensors import model_dtype as model_dtype
from .tensors import xy_tensors as xy_tensors
