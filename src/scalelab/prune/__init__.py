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

from ._at_init import METHODS as METHODS
from ._at_init import prune_at_init as prune_at_init
from ._layers import is_stochastic as is_stochastic
from ._masks import apply_masks_ as apply_masks_
from ._masks import prunable_layers as prunable_layers
from ._masks import topk_masks as topk_masks
from ._masks import unmask_ as unmask_
from ._registry import MaskRequest as MaskRequest
from ._registry import PruneMethod as PruneMethod
from ._registry import compute_masks as compute_masks
from ._registry import get_method as get_method
from ._registry import list_methods as list_methods
from ._registry import register_method as register_method
from ._registry import score_method as score_method
from ._registry import unregister_method as unregister_method
from ._report import LayerReport as LayerReport
from ._report import LayerRescale as LayerRescale
from ._report import PruneReport as PruneReport
from ._report import mask_report as mask_report
from ._rescale import record_dense_norms_ as record_dense_norms_
from ._rescale import rescale_to_eoc_ as rescale_to_eoc_
from ._scores import grasp_scores as grasp_scores
from ._scores import magnitude_scores as magnitude_scores
from ._scores import random_scores as random_scores
from ._scores import snip_scores as snip_scores
from ._synflow import synflow_masks as synflow_masks
from ._synflow import synflow_scores as synflow_scores

__all__ = [
    "METHODS", "LayerRescale", "LayerReport", "PruneReport", "apply_masks_", "grasp_scores",
    "magnitude_scores", "prunable_layers", "prune_at_init", "random_scores",
    "record_dense_norms_", "rescale_to_eoc_", "snip_scores", "synflow_masks", "synflow_scores",
    "topk_masks",
]
__all__ += ["MaskRequest", "PruneMethod", "compute_masks", "get_method", "is_stochastic",
            "list_methods", "mask_report", "register_method", "score_method", "unmask_",
            "unregister_method"]

# Stochastic masks (arXiv 2110.11804): fine-tuned keep-probabilities, thresholded back.
from ._estimators import expected_masked_mse as expected_masked_mse  # noqa: E402
from ._estimators import local_reparam_linear as local_reparam_linear  # noqa: E402
from ._estimators import lrt_std as lrt_std  # noqa: E402
from ._estimators import relaxed_bernoulli as relaxed_bernoulli  # noqa: E402
from ._posterior import MaskDistribution as MaskDistribution  # noqa: E402
from ._posterior import load_mask_distribution_ as load_mask_distribution_  # noqa: E402
from ._posterior import mask_distribution as mask_distribution  # noqa: E402
from ._posterior import mask_kl as mask_kl  # noqa: E402
from ._stochastic import ESTIMATORS as ESTIMATORS  # noqa: E402
from ._stochastic import StochasticMask as StochasticMask  # noqa: E402
from ._stochastic import StochasticMasks as StochasticMasks  # noqa: E402
from ._stochastic import remove_stochastic_masks_ as remove_stochastic_masks_  # noqa: E402
from ._stochastic import sampled_network as sampled_network  # noqa: E402
from ._stochastic import stochastic_masks_ as stochastic_masks_  # noqa: E402
from ._stochastic import threshold_masks_ as threshold_masks_  # noqa: E402
from ._stochastic_train import MaskTraining as MaskTraining  # noqa: E402
from ._stochastic_train import train_masks as train_masks  # noqa: E402

__all__ += ["ESTIMATORS", "MaskDistribution", "MaskTraining", "StochasticMask",
            "StochasticMasks", "expected_masked_mse", "load_mask_distribution_",
            "local_reparam_linear", "lrt_std", "relaxed_bernoulli",
            "mask_distribution", "mask_kl", "remove_stochastic_masks_", "sampled_network",
            "stochastic_masks_", "threshold_masks_", "train_masks"]

# Data pruning (scores and subset selection, arXiv 2302.06960): scalelab.prune.data.
from . import data as data  # noqa: E402
