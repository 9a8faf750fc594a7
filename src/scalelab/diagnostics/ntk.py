"""The empirical (finite-width) neural tangent kernel ``J J^T`` of any ``nn.Module``.

``J`` is the Jacobian of the model's outputs on a batch with respect to all its trainable
parameters; ``Theta[a, b] = sum_k <d f_k(x_a) / d theta, d f_k(x_b) / d theta>`` (summed over
the output dimensions ``k``), or ``Theta[a, b, k]`` per output. Per-example Jacobians come
from ``torch.func`` (``vmap(jacrev(...))`` over ``functional_call``; a Python loop of
``autograd.grad`` where vmap cannot run the model), in blocks of ``chunk`` examples: the
kernel is assembled block by block, so only two blocks of Jacobians are ever held.

At initialisation of a network in NTK parametrisation (:class:`scalelab.nn.NTKMLP`) it tends
to the infinite-width kernel :func:`scalelab.theory.ntk_kernel` as the width grows, with
fluctuations of order 1/sqrt(width) (Jacot et al. 2018; docs/kernels.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import check_int
from ._utils import as_batch, check_model, eval_mode, first_tensor

#: Default bound on the Jacobian entries held at once (two blocks): 2^27 floats.
MAX_ELEMENTS = 2**27


def empirical_ntk(model: nn.Module, X, *, chunk: int | None = None, per_output: bool = False,
                  max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """The finite-width NTK of ``model`` on the batch ``X``: ``J J^T``.

    Args:
        model: an eager ``nn.Module``, run in eval mode (modes restored afterwards); examples
            must not interact in the forward pass. ``.grad`` is not touched.
        X: a batch of N inputs (N, ...) (tensor or array; floats cast to the model's dtype).
            The model's output is (N, ...); all its dimensions but the batch are the output
            dimensions (C of them, flattened).
        chunk: examples per Jacobian block; None takes the largest block such that two
            blocks hold at most ``max_elements`` entries (at least 1).
        per_output: False: the kernel summed over outputs, (N, N); True: one kernel per
            output, (N, N, C) (the cross-output terms, which vanish at infinite width, are
            not formed).
        max_elements: the memory bound used when ``chunk`` is None.
    Returns:
        A float64 array (N, N) or (N, N, C); blocks are multiplied in the model's dtype and
        accumulated in float64.

    Memory: two blocks of ``chunk x C x P`` Jacobian entries in the model's dtype (P trainable
    parameters) plus the result. Example: a 2,048-wide :class:`scalelab.nn.NTKMLP` with three
    linear layers on 784-dimensional digits has P = 5.8M parameters, so with one
    output the default bound 2^27 entries gives ``chunk = 11`` and holds 2 x 11 x 5.8M float32
    = 0.51 GB at a time for any number of inputs (200 inputs: 19 blocks, 190 block products).
    Time: O(N^2 C P) for the products plus the per-example gradients, recomputed once per
    block pair (an overhead of about 3 / chunk).
    Paper: Jacot et al. 2018 (NTK); arXiv 1905.13654.
    """
    check_model(model)
    x = as_batch(model, X, "X")
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters: its tangent kernel is empty")
    n = x.shape[0]
    with eval_mode(model):
        with torch.no_grad():
            out = first_tensor(model(x[:1]))
        n_out = int(math.prod(out.shape[1:]))
        total = sum(p.numel() for p in params.values())
        if chunk is None:
            m = max(1, min(n, check_int("max_elements", max_elements) // (2 * n_out * total)))
        else:
            m = min(n, check_int("chunk", chunk))
        blocks = [slice(i, min(i + m, n)) for i in range(0, n, m)]
        shape = (n, n, n_out) if per_output else (n, n)
        K = torch.zeros(shape, dtype=torch.float64)
        jac = _jacobian(model, params)
        for ia, sa in enumerate(blocks):
            ja = jac(x[sa])
            for sb in blocks[ia:]:
                jb = ja if sb == sa else jac(x[sb])
                block = _product(ja, jb, per_output)
                K[sa, sb] += block
                if sb != sa:
                    K[sb, sa] += block.transpose(0, 1)
            del ja
    return K.numpy()


def _product(ja: dict, jb: dict, per_output: bool) -> torch.Tensor:
    """sum over parameters of J_a J_b^T: (m_a, m_b) or (m_a, m_b, C), in float64."""
    total = None
    for name, a in ja.items():
        b = jb[name]
        a2, b2 = a.reshape(a.shape[0], a.shape[1], -1), b.reshape(b.shape[0], b.shape[1], -1)
        if per_output:
            part = torch.einsum("akp,bkp->abk", a2, b2)  # (m_a, m_b, C)
        else:
            part = a2.reshape(a2.shape[0], -1) @ b2.reshape(b2.shape[0], -1).T  # (m_a, m_b)
        part = part.double()
        total = part if total is None else total + part
    return total


def _jacobian(model: nn.Module, params: dict):
    """A function ``xs -> {name: (m, C, *param.shape)}`` of per-example Jacobians."""
    from torch.func import functional_call, jacrev, vmap

    buffers = dict(model.named_buffers())
    detached = {k: p.detach() for k, p in params.items()}

    def f(p, xi):
        return first_tensor(functional_call(model, (p, buffers), (xi.unsqueeze(0),))).reshape(-1)

    batched = vmap(jacrev(f), in_dims=(None, 0))

    def jac(xs: torch.Tensor) -> dict:
        try:
            return batched(detached, xs)
        except RuntimeError:  # vmap cannot run this model (data-dependent control flow, ...)
            return _jacobian_loop(model, params, xs)

    return jac


def _jacobian_loop(model: nn.Module, params: dict, xs: torch.Tensor) -> dict:
    """The same Jacobians by one backward pass per example and output."""
    names, tensors = list(params), list(params.values())
    rows: dict[str, list] = {k: [] for k in names}
    with torch.enable_grad():
        for i in range(xs.shape[0]):
            out = first_tensor(model(xs[i:i + 1])).reshape(-1)
            per_k = []
            for k in range(out.shape[0]):
                gs = torch.autograd.grad(out[k], tensors, retain_graph=k + 1 < out.shape[0],
                                         allow_unused=True)
                per_k.append([torch.zeros_like(t) if g is None else g for t, g in
                              zip(tensors, gs, strict=True)])
            for j, name in enumerate(names):
                rows[name].append(torch.stack([g[j] for g in per_k]))
    return {k: torch.stack(v).detach() for k, v in rows.items()}
