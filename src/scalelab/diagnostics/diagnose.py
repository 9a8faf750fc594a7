"""One diagnosis of a network on a batch: propagation profile (with the infinite-width theory
of an EOC MLP), layer alignment and output field — what ``scalelab diagnose`` prints and plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._progress import track
from ..errors import check_int
from .alignment import centered_alignment, label_matrix, layer_tangent_kernels
from .field import output_field
from .profile import LayerStats, kernel_summary, propagation_profile

#: Inputs the profile and its theory overlay use by default (pairs cost O(n^2)).
PROFILE_INPUTS = 16


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose_network` measured.

    ``profile``: one :class:`LayerStats` per layer on the first ``profile_examples`` inputs;
    ``profile_theory``: ``{"variance": [...], "correlation": [...]}`` per Linear layer of the
    infinite-width EOC MLP, or None; ``alignment``: ``{"layers": names, "values": [...]}``
    (centred tangent-kernel / label alignment per layer) or None when not asked;
    ``field``: the output over ``[0, 1]^2`` (resolution, resolution) and ``plane``: whether
    that square is a plane through three inputs (inputs not 2-D) rather than input space.
    """

    profile: list[LayerStats]
    profile_examples: int
    profile_theory: dict | None
    alignment: dict | None
    field: np.ndarray
    plane: bool

    def summary(self) -> dict[str, Any]:
        """The numbers as a JSON-ready mapping (the field as min / max / std)."""
        doc: dict[str, Any] = {"profile": self.profile, "profile_examples": self.profile_examples,
                               "profile_theory": self.profile_theory}
        if self.alignment is not None:
            doc["alignment"] = self.alignment
        doc["output_field"] = dict(resolution=int(self.field.shape[0]), plane=self.plane,
                                   min=float(self.field.min()), max=float(self.field.max()),
                                   std=float(self.field.std()))
        return doc


def eoc_theory_profile(act: str, x, n_layers: int, sigma_b: float | None = None) -> dict:
    """Infinite-width variance and mean pairwise correlation after each of ``n_layers`` Linear
    layers of an MLP at the Edge of Chaos of ``act`` (bias std ``sigma_b``; default per
    activation), on the inputs ``x`` (n, d): :func:`scalelab.theory.nngp_kernels` summarised
    by :func:`kernel_summary` (arXiv 1902.06853)."""
    from ..theory import edge_of_chaos, nngp_kernels

    pt = edge_of_chaos(act, sigma_b)
    xs = x.double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    summary = [kernel_summary(K) for K in nngp_kernels(act, pt.sigma_w, pt.sigma_b, n_layers, xs)]
    return {"variance": [s[0] for s in summary], "correlation": [s[1] for s in summary]}


def diagnose_network(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     layers: Sequence[str] | None = None, eoc_act: str | None = None,
                     sigma_b: float | None = None, alignment: bool = True, resolution: int = 64,
                     profile_inputs: int = PROFILE_INPUTS, progress: bool = False) -> Diagnosis:
    """Profile, layer alignment and output field of ``model`` on the batch ``(x, y)``.

    Args:
        model: an eager ``nn.Module`` taking ``x``.
        x: inputs (B, d); y: integer class labels (B,).
        layers: which layers the profile follows (see :func:`propagation_profile`; e.g. the
            residual stream ``["input", "blocks.0", ..., "output"]``); None for the default.
        eoc_act: for an MLP initialised at the Edge of Chaos of this activation, the
            infinite-width theory of its profile (``sigma_b`` its bias std, default per
            activation); None for no theory.
        alignment: also compute the layer alignment (one backward pass per output).
        resolution: output-field grid points per side.
        profile_inputs: the profile (and its theory) use the first this many inputs.
        progress: a progress bar on stderr over the three steps.
    Returns:
        A :class:`Diagnosis`. The output field covers ``[0, 1]^2`` when inputs are 2-D, else
        the plane ``x0 + s (x1 - x0) + t (x2 - x0)``.
    Raises:
        ValueError: the model cannot take ``x`` (its shape is named).
    References: arXiv 2110.11749 (alignment), arXiv 1902.06853 (EOC profile and field).
    """
    profile_inputs = check_int("profile_inputs", profile_inputs)
    steps = ["profile", "alignment", "output field"] if alignment else ["profile", "output field"]
    prof, theory, align, field, plane = None, None, None, None, None
    xp = x[:profile_inputs]
    for step in track(steps, "diagnosing", disable=None if progress else True):
        if step == "profile":
            try:
                prof = propagation_profile(model, xp, layers=layers)
            except RuntimeError as e:
                raise ValueError(f"the model cannot take inputs of shape {tuple(x.shape[1:])}: "
                                 f"{str(e).splitlines()[0][:100]}") from None
            if eoc_act is not None:
                theory = eoc_theory_profile(eoc_act, xp, len(prof), sigma_b)
        elif step == "alignment":
            kernels = layer_tangent_kernels(model, x)
            labels = label_matrix(y, x.shape[0])
            align = dict(layers=[nm for nm, _ in kernels],
                         values=[centered_alignment(K, labels) for _, K in kernels])
        else:
            plane = None if x.shape[1] == 2 else (x[0], x[1] - x[0], x[2 % len(x)] - x[0])
            field = output_field(model, resolution, plane=plane)
    return Diagnosis(profile=prof, profile_examples=int(xp.shape[0]), profile_theory=theory,
                     alignment=align, field=field, plane=plane is not None)
