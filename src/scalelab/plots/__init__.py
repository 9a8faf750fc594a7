"""Every picture scalelab draws. matplotlib is imported here only, never by computations.

Each ``plot_*`` function takes the records a computation returned plus a path, writes a PNG
and returns the path. Area modules (``lora``, ``eoc``, ...) hold the functions; this module
re-exports them.
"""

from .bounds import plot_bound_vs_test as plot_bound_vs_test
from .bounds import plot_stochastic_pruning as plot_stochastic_pruning
from .common import savefig as savefig
from .covariance import plot_cleaner_comparison as plot_cleaner_comparison
from .covariance import plot_top_eigenvalue_bias as plot_top_eigenvalue_bias
from .data import plot_collapse as plot_collapse
from .data import plot_data_pruning_accuracy as plot_data_pruning_accuracy
from .data import plot_liprune_accuracy as plot_liprune_accuracy
from .data import plot_lood_vs_empirical as plot_lood_vs_empirical
from .data import plot_text_collapse as plot_text_collapse
from .diagnostics import plot_alignment as plot_alignment
from .diagnostics import plot_finite_width_depth as plot_finite_width_depth
from .diagnostics import plot_output_field as plot_output_field
from .diagnostics import plot_profile as plot_profile
from .diagnostics import plot_width_depth_commute as plot_width_depth_commute
from .eoc import plot_correlation_convergence as plot_correlation_convergence
from .eoc import plot_eoc_curves as plot_eoc_curves
from .eoc import plot_loss_vs_lr as plot_loss_vs_lr
from .eoc import plot_output_fields as plot_output_fields
from .eoc import plot_phase_diagrams as plot_phase_diagrams
from .eoc import plot_training_losses as plot_training_losses
from .finetune import plot_finetune_curves as plot_finetune_curves
from .lgi import plot_lgi_bound as plot_lgi_bound
from .lgi import plot_lgi_fits as plot_lgi_fits
from .lora import plot_lora_init_features as plot_lora_init_features
from .lora import plot_lora_init_loss_vs_lr as plot_lora_init_loss_vs_lr
from .lora import plot_lora_init_max_lr as plot_lora_init_max_lr
from .lora import plot_loraplus_heatmaps as plot_loraplus_heatmaps
from .lora import plot_loraplus_ratio_vs_width as plot_loraplus_ratio_vs_width
from .lora import plot_speedup_protocol as plot_speedup_protocol
from .lora_width import plot_loraplus_width as plot_loraplus_width
from .lora_width import plot_loraplus_width_curves as plot_loraplus_width_curves
from .ntk import plot_ntk_depth_profile as plot_ntk_depth_profile
from .ntk import plot_ntk_regression as plot_ntk_regression
from .ntk import plot_ntk_width_convergence as plot_ntk_width_convergence
from .prune import plot_pruning_accuracy as plot_pruning_accuracy
from .residual import plot_budget_accuracy as plot_budget_accuracy
from .residual import plot_deep_training as plot_deep_training
from .residual import plot_depth_scaling as plot_depth_scaling
from .residual import plot_lr_transfer as plot_lr_transfer

__all__ = [
    "plot_alignment", "plot_bound_vs_test", "plot_budget_accuracy", "plot_cleaner_comparison",
    "plot_collapse", "plot_correlation_convergence", "plot_data_pruning_accuracy",
    "plot_deep_training", "plot_depth_scaling", "plot_eoc_curves", "plot_finetune_curves",
    "plot_finite_width_depth", "plot_lgi_bound", "plot_lgi_fits", "plot_liprune_accuracy",
    "plot_lood_vs_empirical", "plot_lora_init_features", "plot_lora_init_loss_vs_lr",
    "plot_lora_init_max_lr", "plot_loraplus_heatmaps", "plot_loraplus_ratio_vs_width",
    "plot_loraplus_width", "plot_loraplus_width_curves", "plot_loss_vs_lr", "plot_lr_transfer",
    "plot_ntk_depth_profile", "plot_ntk_regression", "plot_ntk_width_convergence",
    "plot_output_field", "plot_output_fields", "plot_phase_diagrams", "plot_profile",
    "plot_pruning_accuracy", "plot_speedup_protocol", "plot_stochastic_pruning",
    "plot_text_collapse", "plot_top_eigenvalue_bias", "plot_training_losses",
    "plot_width_depth_commute", "savefig",
]
