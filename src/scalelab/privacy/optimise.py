"""Queries that maximise LOOD, found with torch Adam (arXiv 2309.17310, section on optimal
queries; the official code optimises the query inputs with Adam in JAX).

The gradient with respect to the queries comes from torch autodiff through
:func:`scalelab.nn.torch_nngp_kernel` (the NNGP recursion in torch, closed forms, exact: the
arc-cosine kernel for piecewise-linear activations through the origin — relu, leaky_relu,
abs, linear — and Williams' kernel for erf). Other activations: pass a torch-differentiable
kernel callable instead. torch is imported inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import check_choice, check_int, check_positive
from .lood import (
    DEFAULT_KERNEL,
    VARIANTS,
    as_rows,
    as_targets,
    check_same_dim,
    infer_num_classes,
    kernel_matrix,
)


def torch_nngp_kernel(spec: dict | None = None) -> Callable:
    """A torch function ``(X1, X2) -> K(X1, X2)`` equal to :func:`scalelab.theory.nngp_kernel`.

    ``spec`` as in :data:`DEFAULT_KERNEL` (missing keys take its values). Kept here for LOOD's
    spec dicts; the kernel itself lives in :func:`scalelab.nn.torch_nngp_kernel` (the one home
    of scalelab's torch kernels, docs/kernels.md), which this calls.
    """
    from ..nn.kernels import torch_nngp_kernel as kernel_fn

    spec = {**DEFAULT_KERNEL, **(spec or {})}
    return kernel_fn(spec["act"], spec["sigma_w"], spec["sigma_b"], spec["depth"])


@dataclass
class QueryOptimisation:
    """Result of :func:`optimise_queries`: the best queries found and the LOOD trace."""

    queries: np.ndarray
    lood: float
    initial_lood: float
    history: list[float] = field(default_factory=list)


def optimise_queries(X_train, Y_train, x_extra, y_extra, init_queries, *,
                     kernel: dict | Callable | None = None, noise: float = 0.05,
                     variant: str = "kl", steps: int = 200, lr: float = 0.05,
                     num_classes: int | None = None) -> QueryOptimisation:
    """Maximise LOOD over the query inputs with Adam, starting from ``init_queries`` (q, d).

    Args:
        kernel: an NNGP spec dict (torch closed forms, see module) or a callable
            ``(X1, X2) -> K`` on float64 torch tensors, differentiable.
        steps, lr: Adam steps and learning rate (on the raw query inputs).
        Other arguments as in :func:`scalelab.privacy.lood`.

    Returns:
        :class:`QueryOptimisation` with the best queries seen (by LOOD) and the LOOD after each
        step (``history``). arXiv 2309.17310.
    """
    import torch

    check_choice("variant", variant, VARIANTS)
    noise = check_positive("noise", noise)
    steps = check_int("steps", steps)
    lr = check_positive("lr", lr)
    Q0 = as_rows("init_queries", init_queries)
    xs = check_same_dim(Q0.shape[1], X_train=as_rows("X_train", X_train, allow_empty=True),
                   x_extra=as_rows("x_extra", x_extra))
    Xt, Xe = xs["X_train"], xs["x_extra"]
    nc = num_classes if num_classes is not None else infer_num_classes(Y_train, y_extra)
    Ye = as_targets("y_extra", y_extra, Xe.shape[0], nc)
    Yt = as_targets("Y_train", Y_train, Xt.shape[0], nc).reshape(-1, Ye.shape[1])
    kfun = kernel if callable(kernel) else torch_nngp_kernel(kernel)
    # PSD check of the kernel on every input involved at the start (numpy Gram).
    kernel_matrix(kernel if kernel is not None else DEFAULT_KERNEL,
                  np.concatenate([Xt, Xe, Q0]))

    t = torch.float64
    T = torch.from_numpy(Xt).to(t)
    A = torch.from_numpy(np.concatenate([Xt, Xe])).to(t)
    YT, YA = torch.from_numpy(Yt).to(t), torch.from_numpy(np.concatenate([Yt, Ye])).to(t)
    with torch.no_grad():
        LT = (torch.linalg.cholesky(kfun(T, T) + noise * torch.eye(len(T), dtype=t))
              if len(T) else None)
        LA = torch.linalg.cholesky(kfun(A, A) + noise * torch.eye(len(A), dtype=t))

    def posterior(Q, X, L, Y):
        K_qq = kfun(Q, Q)
        if L is None:
            return torch.zeros(Q.shape[0], Y.shape[1], dtype=t), K_qq
        V = torch.linalg.solve_triangular(L, kfun(X, Q), upper=False)  # (n, q)
        W = torch.linalg.solve_triangular(L, Y, upper=False)  # (n, k)
        return V.T @ W, K_qq - V.T @ V

    def value(Q):
        mu0, c0 = posterior(Q, T, LT, YT)
        mu1, c1 = posterior(Q, A, LA, YA)
        if variant == "mean":
            return 0.5 * ((mu0 - mu1) ** 2).mean()
        k = mu0.shape[1]
        eye = 1e-12 * torch.eye(Q.shape[0], dtype=t)  # keeps Cholesky alive at exact duplicates
        L1, L0 = torch.linalg.cholesky(c1 + eye), torch.linalg.cholesky(c0 + eye)
        W = torch.linalg.solve_triangular(L1, c0 - c1, upper=False)
        tr = torch.trace(torch.linalg.solve_triangular(L1.T, W, upper=True))
        maha = (torch.linalg.solve_triangular(L1, mu1 - mu0, upper=False) ** 2).sum()
        logdet = 2 * (torch.log(torch.diagonal(L1)).sum() - torch.log(torch.diagonal(L0)).sum())
        return 0.5 * (k * tr + maha + k * logdet)

    Q = torch.from_numpy(Q0.copy()).to(t).requires_grad_(True)
    opt = torch.optim.Adam([Q], lr=lr)
    with torch.no_grad():
        best = first = float(value(Q))
    best_q, history = Q0.copy(), []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = -value(Q)
        loss.backward()
        opt.step()
        with torch.no_grad():
            v = float(value(Q))
        history.append(v)
        if math.isfinite(v) and v > best:
            best, best_q = v, Q.detach().numpy().copy()
    return QueryOptimisation(queries=best_q, lood=best, initial_lood=first, history=history)
