"""Looking inside networks: propagation profiles, layer alignment, output fields.

- :func:`propagation_profile` — per-layer variance, input correlation and gradient norm
  (forward/backward hooks, any ``nn.Module``).
- :func:`layer_alignment` — centred alignment of each layer's tangent kernel with the labels
  (arXiv 2110.11749); :func:`layer_tangent_kernels` gives the kernels themselves.
- :func:`empirical_ntk` — the finite-width neural tangent kernel ``J J^T`` (torch.func).
- :func:`output_field` — the output over a grid of [0, 1]^2 (the Edge-of-Chaos pictures).
- :func:`from_torchscript` / :func:`load_state_dict_file` — a user's model for ``scalelab
  diagnose``; the reference models are :func:`scalelab.nn.reference_model` (still importable
  from here as aliases).
- :func:`diagnose_network` — all three on one batch, as a :class:`Diagnosis` record (what
  ``scalelab diagnose`` prints and plots).
- :func:`reference_model` / :func:`from_torchscript` — the models ``scalelab diagnose`` reads.
- :func:`lojasiewicz_fit` / :func:`lgi_bound` / :class:`LGIRecorder` — the uniform Lojasiewicz
  gradient inequality along a training path and its generalisation bound (arXiv 2202.10670).

Pictures: :func:`scalelab.plots.plot_profile`, ``plot_alignment``, ``plot_output_field``.
"""

from ._alignment import centered_alignment as centered_alignment
from ._alignment import label_matrix as label_matrix
from ._alignment import layer_alignment as layer_alignment
from ._alignment import layer_tangent_kernels as layer_tangent_kernels
from ._diagnose import PROFILE_INPUTS as PROFILE_INPUTS
from ._diagnose import Diagnosis as Diagnosis
from ._diagnose import diagnose_network as diagnose_network
from ._diagnose import eoc_theory_profile as eoc_theory_profile
from ._field import output_field as output_field
from ._lojasiewicz import LGIFit as LGIFit
from ._lojasiewicz import LGIRecorder as LGIRecorder
from ._lojasiewicz import full_batch_loss_and_grad_norm as full_batch_loss_and_grad_norm
from ._lojasiewicz import lgi_bound as lgi_bound
from ._lojasiewicz import lojasiewicz_fit as lojasiewicz_fit
from ._lojasiewicz import read_trajectory as read_trajectory
from ._models import from_torchscript as from_torchscript
from ._models import load_state_dict_file as load_state_dict_file
from ._models import reference_mlp as reference_mlp  # alias of scalelab.nn.reference_mlp
from ._models import reference_model as reference_model  # alias of scalelab.nn.reference_model
from ._profile import DEFAULT_LAYER_TYPES as DEFAULT_LAYER_TYPES
from ._profile import LayerStats as LayerStats
from ._profile import kernel_summary as kernel_summary
from ._profile import propagation_profile as propagation_profile
from ._profile import select_layers as select_layers

__all__ = [
    "DEFAULT_LAYER_TYPES", "LayerStats", "centered_alignment", "from_torchscript",
    "kernel_summary", "label_matrix", "layer_alignment", "layer_tangent_kernels",
    "load_state_dict_file", "output_field", "propagation_profile", "reference_mlp",
    "reference_model", "select_layers",
]

# The empirical (finite-width) NTK (issue 16).
from ._ntk import empirical_ntk as empirical_ntk  # noqa: E402

__all__ += ["empirical_ntk"]
__all__ += ["PROFILE_INPUTS", "Diagnosis", "diagnose_network", "eoc_theory_profile"]
__all__ += ["LGIFit", "LGIRecorder", "full_batch_loss_and_grad_norm", "lgi_bound",
            "lojasiewicz_fit", "read_trajectory"]
