"""Closed-form infinite-width kernels in torch: differentiable in the inputs.

The one home of scalelab's torch kernels. The numpy kernels (any activation, quadrature where
no closed form exists) are :func:`scalelab.theory.nngp_kernel` / ``ntk_kernel``; finite-width
(empirical) kernels of a given network are :func:`scalelab.diagnostics.empirical_ntk` and
``layer_tangent_kernels``. docs/kernels.md says which lives where.

:func:`torch_nngp_kernel` is the NNGP recursion of :func:`scalelab.theory.nngp_kernel` written
in torch with the closed forms — the arc-cosine kernel (Cho & Saul 2009) for piecewise-linear
activations through the origin (relu, leaky_relu, abs, linear) and Williams' (1997) kernel
for erf — so that autodiff reaches the inputs (LOOD's query optimisation, arXiv 2309.17310,
uses it). torch is imported inside the returned function only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import check_int, check_positive


def torch_nngp_kernel(act, sigma_w: float, sigma_b: float, depth: int) -> Callable:
    """A torch function ``(X1, X2) -> K(X1, X2)`` equal to :func:`scalelab.theory.nngp_kernel`.

    Args:
        act: a piecewise-linear activation through the origin or erf (a name or an
            ``Activation``); anything else is a ValueError (no torch closed form).
        sigma_w, sigma_b, depth: as in :func:`scalelab.theory.nngp_kernel`.
    Returns:
        ``kernel(X1, X2)`` on float64 tensors (n, d) and (m, d) -> (n, m), differentiable in
        both arguments. Correlations are clamped to ``+-(1 - 1e-12)`` inside the angle so
        that its gradient stays finite (a ~1e-12 relative change of the value at c = +-1).
    """
    from ..theory.activations import as_activation
    from ..theory.closed_forms import Erf

    a = as_activation(act)
    sw = check_positive("sigma_w", sigma_w)
    sb = check_positive("sigma_b", sigma_b, allow_zero=True)
    depth = check_int("depth", depth)
    if a.slopes is not None:
        right, left = a.slopes
        kind = "pl"
    elif isinstance(a.kernel, Erf) and not a.params:
        kind = "erf"
    else:
        raise ValueError(f"torch closed forms exist for piecewise-linear activations and erf "
                         f"only, got act {a!r}; pass a torch-differentiable kernel callable "
                         "instead")

    def pair(qa, qb, s):
        """E[phi(U) phi(V)] for variances qa (n, 1), qb (1, m) and covariance s (n, m)."""
        import torch

        if kind == "erf":
            return 2 / math.pi * torch.asin(2 * s / torch.sqrt((1 + 2 * qa) * (1 + 2 * qb)))
        root = torch.sqrt(qa * qb)
        # Clamp away from +-1 so that the gradient of the angle stays finite.
        c = torch.clamp(s / root, -1 + 1e-12, 1 - 1e-12)
        t = 2 * torch.atan2(torch.sqrt(1 - c), torch.sqrt(1 + c))
        sin_minus = torch.sin(t) - t * torch.cos(t)
        same = math.pi * torch.cos(t) + sin_minus  # sin t + (pi - t) cos t
        ll, lb = right**2 + left**2, 2 * right * left
        return root / (2 * math.pi) * (ll * same - lb * sin_minus)

    def diag(q):
        import torch

        if kind == "erf":
            return 2 / math.pi * torch.asin(2 * q / (1 + 2 * q))
        return (right**2 + left**2) / 2 * q

    def kernel(X1, X2):
        d = X1.shape[1]
        s = sb**2 + sw**2 * (X1 @ X2.T) / d
        q1 = sb**2 + sw**2 * (X1 * X1).sum(1, keepdim=True) / d  # (n, 1)
        q2 = sb**2 + sw**2 * (X2 * X2).sum(1, keepdim=True).T / d  # (1, m)
        for _ in range(depth - 1):
            s = sb**2 + sw**2 * pair(q1, q2, s)
            q1, q2 = sb**2 + sw**2 * diag(q1), sb**2 + sw**2 * diag(q2)
        return s

    return kernel
