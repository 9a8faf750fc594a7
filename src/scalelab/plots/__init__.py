"""Every picture scalelab draws. matplotlib is imported here only, never by computations.

Each ``plot_*`` function takes the records a computation returned plus a path, writes a PNG
and returns the path. Area modules (``_lora``, ``_eoc``, ...) hold the functions; this module
re-exports them.
"""

from ._common import savefig as savefig
from ._covariance import plot_cleaner_comparison as plot_cleaner_comparison
from ._covariance import plot_top_eigenvalue_bias as plot_top_eigenvalue_bias
from ._eoc import plot_correlation_convergence as plot_correlation_convergence
from ._eoc import plot_eoc_curves as plot_eoc_curves
from ._eoc import plot_loss_vs_lr as plot_loss_vs_lr
from ._eoc import plot_output_fields as plot_output_fields
from ._eoc import plot_phase_diagrams as plot_phase_diagrams
from ._eoc import plot_training_losses as plot_training_losses
from ._finetune import plot_finetune_curves as plot_finetune_curves
from ._lora import plot_lora_init_features as plot_lora_init_features
from ._lora import plot_lora_init_loss_vs_lr as plot_lora_init_loss_vs_lr
from ._lora import plot_lora_init_max_lr as plot_lora_init_max_lr
from ._lora import plot_loraplus_heatmaps as plot_loraplus_heatmaps
from ._lora import plot_loraplus_ratio_vs_width as plot_loraplus_ratio_vs_width
from ._lora import plot_speedup_protocol as plot_speedup_protocol

__all__ = ["savefig", "plot_cleaner_comparison", "plot_top_eigenvalue_bias",
           "plot_finetune_curves",
           "plot_lora_init_features", "plot_lora_init_loss_vs_lr", "plot_lora_init_max_lr", "plot_loraplus_heatmaps",
           "plot_loraplus_ratio_vs_width", "plot_speedup_protocol"]
__all__ += ["plot_correlation_convergence", "plot_eoc_curves", "plot_loss_vs_lr",
            "plot_output_fields",
            "plot_phase_diagrams", "plot_training_losses"]
from ._residual import plot_budget_accuracy as plot_budget_accuracy  # noqa: E402
from ._residual import plot_deep_training as plot_deep_training  # noqa: E402
from ._residual import plot_depth_scaling as plot_depth_scaling  # noqa: E402
from ._residual import plot_lr_transfer as plot_lr_transfer  # noqa: E402

__all__ += ["plot_budget_accuracy", "plot_depth_scaling", "plot_lr_transfer"]
__all__ += ["plot_deep_training"]

from ._diagnostics import plot_alignment as plot_alignment  # noqa: E402
from ._diagnostics import plot_finite_width_depth as plot_finite_width_depth  # noqa: E402
from ._diagnostics import plot_output_field as plot_output_field  # noqa: E402
from ._diagnostics import plot_profile as plot_profile  # noqa: E402
from ._diagnostics import plot_width_depth_commute as plot_width_depth_commute  # noqa: E402

__all__ += ["plot_alignment", "plot_finite_width_depth", "plot_output_field", "plot_profile",
            "plot_width_depth_commute"]

from ._prune import plot_pruning_accuracy as plot_pruning_accuracy  # noqa: E402

__all__ += ["plot_pruning_accuracy"]

from ._data import plot_collapse as plot_collapse  # noqa: E402
from ._data import plot_data_pruning_accuracy as plot_data_pruning_accuracy  # noqa: E402
from ._data import plot_lood_vs_empirical as plot_lood_vs_empirical  # noqa: E402
from ._data import plot_text_collapse as plot_text_collapse  # noqa: E402

__all__ += ["plot_collapse", "plot_data_pruning_accuracy", "plot_lood_vs_empirical",
            "plot_text_collapse"]

from ._ntk import plot_ntk_depth_profile as plot_ntk_depth_profile  # noqa: E402
from ._ntk import plot_ntk_regression as plot_ntk_regression  # noqa: E402
from ._ntk import plot_ntk_width_convergence as plot_ntk_width_convergence  # noqa: E402

__all__ += ["plot_ntk_depth_profile", "plot_ntk_regression", "plot_ntk_width_convergence"]

from ._bounds import plot_bound_vs_test as plot_bound_vs_test  # noqa: E402
from ._bounds import plot_stochastic_pruning as plot_stochastic_pruning  # noqa: E402

__all__ += ["plot_bound_vs_test", "plot_stochastic_pruning"]
from ._lgi import plot_lgi_bound as plot_lgi_bound  # noqa: E402
from ._lgi import plot_lgi_fits as plot_lgi_fits  # noqa: E402

__all__ += ["plot_lgi_bound", "plot_lgi_fits"]
from ._data import plot_liprune_accuracy as plot_liprune_accuracy  # noqa: E402

__all__ += ["plot_liprune_accuracy"]
from ._lora_width import plot_loraplus_width as plot_loraplus_width  # noqa: E402
from ._lora_width import plot_loraplus_width_curves as plot_loraplus_width_curves  # noqa: E402

__all__ += ["plot_loraplus_width", "plot_loraplus_width_curves"]
