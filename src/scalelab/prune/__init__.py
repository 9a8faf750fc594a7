"""Weight pruning: at initialisation (arXiv 2002.08797), stochastic masks (arXiv 2110.11804).

Scores (magnitude, random, SNIP, GraSP, SynFlow), exact top-k masks applied through
``torch.nn.utils.prune``, the per-neuron rescaling trick that puts a pruned network back on
the Edge of Chaos, and SBP-SR (sensitivity-based pruning of a Stable ResNet).
``prune_at_init(model, sparsity, method=...)`` does it all and returns a :class:`PruneReport`.
Every method is an entry of a registry (:func:`get_method`, :func:`list_methods`,
:func:`register_method`); a new method is one new module.

Stochastic masks (:func:`stochastic_masks_`): a trainable Bernoulli keep-probability per
weight, on the same ``torch.nn.utils.prune`` machinery, fine-tuned from a deterministic mask
(:func:`train_masks`) and turned back into an exact mask by :func:`threshold_masks_`.
"""

from . import data as data
from .at_init import METHODS as METHODS
from .at_init import prune_at_init as prune_at_init
from .estimators import expected_masked_mse as expected_masked_mse
from .estimators import local_reparam_linear as local_reparam_linear
from .estimators import lrt_std as lrt_std
from .estimators import relaxed_bernoulli as relaxed_bernoulli
from .layers import is_stochastic as is_stochastic
from .masks import apply_masks_ as apply_masks_
from .masks import prunable_layers as prunable_layers
from .masks import topk_masks as topk_masks
from .masks import unmask_ as unmask_
from .posterior import MaskDistribution as MaskDistribution
from .posterior import load_mask_distribution_ as load_mask_distribution_
from .posterior import mask_distribution as mask_distribution
from .posterior import mask_kl as mask_kl
from .registry import MaskRequest as MaskRequest
from .registry import PruneMethod as PruneMethod
from .registry import compute_masks as compute_masks
from .registry import get_method as get_method
from .registry import list_methods as list_methods
from .registry import register_method as register_method
from .registry import score_method as score_method
from .registry import unregister_method as unregister_method
from .report import LayerReport as LayerReport
from .report import LayerRescale as LayerRescale
from .report import PruneReport as PruneReport
from .report import mask_report as mask_report
from .rescale import record_dense_norms_ as record_dense_norms_
from .rescale import rescale_to_eoc_ as rescale_to_eoc_
from .scores import grasp_scores as grasp_scores
from .scores import magnitude_scores as magnitude_scores
from .scores import random_scores as random_scores
from .scores import snip_scores as snip_scores
from .stochastic import ESTIMATORS as ESTIMATORS
from .stochastic import StochasticMask as StochasticMask
from .stochastic import StochasticMasks as StochasticMasks
from .stochastic import remove_stochastic_masks_ as remove_stochastic_masks_
from .stochastic import sampled_network as sampled_network
from .stochastic import stochastic_masks_ as stochastic_masks_
from .stochastic import threshold_masks_ as threshold_masks_
from .stochastic_train import MaskTraining as MaskTraining
from .stochastic_train import train_masks as train_masks
from .synflow import synflow_masks as synflow_masks
from .synflow import synflow_scores as synflow_scores

__all__ = [
    "apply_masks_", "compute_masks", "ESTIMATORS", "expected_masked_mse", "get_method",
    "grasp_scores", "is_stochastic", "LayerReport", "LayerRescale", "list_methods",
    "load_mask_distribution_", "local_reparam_linear", "lrt_std", "magnitude_scores",
    "mask_distribution", "mask_kl", "mask_report", "MaskDistribution", "MaskRequest",
    "MaskTraining", "METHODS", "prunable_layers", "prune_at_init", "PruneMethod", "PruneReport",
    "random_scores", "record_dense_norms_", "register_method", "relaxed_bernoulli",
    "remove_stochastic_masks_", "rescale_to_eoc_", "sampled_network", "score_method",
    "snip_scores", "stochastic_masks_", "StochasticMask", "StochasticMasks", "synflow_masks",
    "synflow_scores", "threshold_masks_", "topk_masks", "train_masks", "unmask_",
    "unregister_method",
]
