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
- :func:`lojasiewicz_fit` / :func:`lgi_bound` / :class:`LGIRecorder` — the uniform Lojasiewicz
  gradient inequality along a training path and its generalisation bound (arXiv 2202.10670).

Pictures: :func:`scalelab.plots.plot_profile`, ``plot_alignment``, ``plot_output_field``.
"""

from .alignment import centered_alignment as centered_alignment
from .alignment import label_matrix as label_matrix
from .alignment import layer_alignment as layer_alignment
from .alignment import layer_tangent_kernels as layer_tangent_kernels
from .diagnose import PROFILE_INPUTS as PROFILE_INPUTS
from .diagnose import Diagnosis as Diagnosis
from .diagnose import diagnose_network as diagnose_network
from .diagnose import eoc_theory_profile as eoc_theory_profile
from .field import output_field as output_field
from .lojasiewicz import LGIFit as LGIFit
from .lojasiewicz import LGIRecorder as LGIRecorder
from .lojasiewicz import full_batch_loss_and_grad_norm as full_batch_loss_and_grad_norm
from .lojasiewicz import lgi_bound as lgi_bound
from .lojasiewicz import lojasiewicz_fit as lojasiewicz_fit
from .lojasiewicz import read_trajectory as read_trajectory
from .models import from_torchscript as from_torchscript
from .models import load_state_dict_file as load_state_dict_file
from .models import reference_mlp as reference_mlp
from .models import reference_model as reference_model
from .ntk import empirical_ntk as empirical_ntk
from .profile import DEFAULT_LAYER_TYPES as DEFAULT_LAYER_TYPES
from .profile import LayerStats as LayerStats
from .profile import kernel_summary as kernel_summary
from .profile import propagation_profile as propagation_profile
from .profile import select_layers as select_layers

__all__ = [
    "centered_alignment", "DEFAULT_LAYER_TYPES", "diagnose_network", "Diagnosis", "empirical_ntk",
    "eoc_theory_profile", "from_torchscript", "full_batch_loss_and_grad_norm", "kernel_summary",
    "label_matrix", "layer_alignment", "layer_tangent_kernels", "LayerStats", "lgi_bound",
    "LGIFit", "LGIRecorder", "load_state_dict_file", "lojasiewicz_fit", "output_field",
    "PROFILE_INPUTS", "propagation_profile", "read_trajectory", "reference_mlp", "reference_model",
    "select_layers",
]
