"""A network's output over a 2-D grid of inputs: the Edge-of-Chaos pictures (arXiv 1902.06853).

A random tanh network in the chaotic phase maps the unit square to noise; on the Edge of
Chaos the same picture is smooth. :func:`output_field` evaluates the model on a regular grid
of ``[0, 1]^2`` — directly for models with 2-D inputs, or on a plane through input space
(``origin + s * u + t * v``) for any other input shape.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import check_int
from ..nn import model_device, model_dtype
from ._utils import check_model, eval_mode, first_tensor


def output_field(model: nn.Module, resolution: int = 64, *, output_index: int = 0,
                 plane=None, batch_size: int = 4096) -> np.ndarray:
    """The model's output over a ``resolution x resolution`` grid of ``[0, 1]^2``.

    Args:
        model: an eager ``nn.Module`` (run in eval mode, without gradients).
        resolution: grid points per side, endpoints included (>= 2).
        output_index: which output coordinate (of the flattened per-example output) to map.
        plane: None for a model taking 2-D inputs ``(s, t)``; else ``(origin, u, v)`` (three
            tensors/arrays of the model's input shape) and the input at ``(s, t)`` is
            ``origin + s u + t v`` — e.g. the plane through three data points
            ``(x0, x1 - x0, x2 - x0)``.
        batch_size: grid points per forward pass.
    Returns:
        A float64 array ``F`` (resolution, resolution) with ``F[i, j]`` the output at
        ``s = j / (resolution - 1)``, ``t = i / (resolution - 1)``: rows follow the second
        coordinate, so ``imshow(F, origin="lower", extent=(0, 1, 0, 1))`` draws it upright.
    """
    check_model(model)
    resolution = check_int("resolution", resolution, minimum=2)
    output_index = check_int("output_index", output_index, minimum=0)
    batch_size = check_int("batch_size", batch_size)
    dtype, device = model_dtype(model), model_device(model)
    g = torch.linspace(0.0, 1.0, resolution, dtype=torch.float64)
    tt, ss = torch.meshgrid(g, g, indexing="ij")  # rows: t (second coordinate)
    st = torch.stack([ss.reshape(-1), tt.reshape(-1)], dim=1)  # (R*R, 2)
    if plane is None:
        points = st
    else:
        origin, u, v = _plane(plane)
        points = (origin[None] + st[:, 0].reshape(-1, *[1] * u.dim()) * u[None]
                  + st[:, 1].reshape(-1, *[1] * v.dim()) * v[None])
    values = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, points.shape[0], batch_size):
            chunk = points[i:i + batch_size].to(device=device, dtype=dtype)
            try:
                out = first_tensor(model(chunk)).reshape(chunk.shape[0], -1)
            except RuntimeError as e:
                if plane is not None:
                    raise
                raise ValueError(f"output_field: the model does not take 2-D inputs (s, t) "
                                 f"({str(e).splitlines()[0][:80]}); pass plane=(origin, u, v) "
                                 f"in its input space") from None
            if output_index >= out.shape[1]:
                raise ValueError(f"output_index must be < {out.shape[1]} (the model's outputs "
                                 f"per example), got {output_index}")
            values.append(out[:, output_index].double().cpu())
    return torch.cat(values).reshape(resolution, resolution).numpy()


def _plane(plane) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        origin, u, v = (torch.as_tensor(np.asarray(t, dtype=np.float64)) if not
                        isinstance(t, torch.Tensor) else t.detach().double().cpu()
                        for t in plane)
    except (TypeError, ValueError):
        raise ValueError("plane must be (origin, u, v): three arrays of the model's input "
                         "shape") from None
    if not (origin.shape == u.shape == v.shape):
        raise ValueError(f"plane's origin, u, v must share one shape, got {tuple(origin.shape)}, "
                         f"{tuple(u.shape)}, {tuple(v.shape)}")
    return origin, u, v
