"""Where a model's tensors live, and ``(x, y)`` data as tensors: the lookups every layer shares.

- :func:`model_device` / :func:`model_dtype` — the device and dtype of a model's first
  parameter (a model without parameters: the given default);
- :func:`xy_tensors` — ``(x, y)`` tensors from an ``(x, y)`` pair of tensors or arrays, or
  from an ``ArrayDataset``'s training split (``x_train``, ``y_train``).

Used by the pruning scores, data pruning and the diagnostics (one rule each).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_CPU = torch.device("cpu")


def model_device(model: nn.Module, default: torch.device | None = _CPU) -> torch.device | None:
    """The device of ``model``'s first parameter; ``default`` (CPU) when it has none.

    Interpretation: a model spread over several devices reports its first parameter's.
    """
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else default


def model_dtype(model: nn.Module, default: torch.dtype | None = None) -> torch.dtype | None:
    """The dtype of ``model``'s first parameter; ``default`` (None: torch's default dtype)
    when it has none."""
    p = next(iter(model.parameters()), None)
    if p is not None:
        return p.dtype
    return torch.get_default_dtype() if default is None else default


def xy_tensors(data) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(x, y)`` as tensors, or None when ``data`` is neither accepted form.

    Args:
        data: an object with ``x_train`` and ``y_train`` (an ``ArrayDataset``: returned as
            they are), or a tuple / list of two tensors or arrays (arrays go through
            ``np.asarray`` then ``torch.as_tensor``; tensors are returned as they are).
    Returns:
        ``(x, y)`` (nothing copied when they are tensors already), or None: the caller says
        what it accepts. Shapes are not checked here: each caller states its own rule (one
        label per row, at least one row, ...) in its own error.
    """
    if hasattr(data, "x_train") and hasattr(data, "y_train"):
        return data.x_train, data.y_train
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (t if torch.is_tensor(t) else torch.as_tensor(np.asarray(t)) for t in data)
        return x, y
    return None
