"""Layer tangent kernels and their centred alignment with the labels (arXiv 2110.11749).

For a layer ``l`` with parameters ``theta_l`` (weight and bias together), the layer tangent
kernel on a batch is ``K_l = sum_k J_{l,k} J_{l,k}^T``, ``J_{l,k} = d f_k(X) / d theta_l``
(N x P_l), the sum running over the output dimensions ``k``. Its alignment with one-hot
labels ``Y`` is the centred kernel alignment
``A_l = <H K_l H, H Y Y^T H>_F / (||H K_l H||_F ||H Y Y^T H||_F)``, ``H = I - 11^T / N``.

Two ways to build ``K_l``, both exact:

- ``nn.Linear`` layers called once on 2-D inputs use ``d f_k / d W = delta_k a^T``:
  ``K_l = sum_k (Delta_k Delta_k^T) * (A A^T + 1)`` (elementwise product; the ``+ 1`` is the
  bias), with ``A`` the layer's inputs and ``Delta_k`` the gradients of ``f_k`` with respect to
  its outputs — one batched backward pass per output dimension.
- every other module owning parameters (Conv, norms, embeddings, custom ones) uses
  per-example gradients from ``torch.func.vmap(grad(...))`` (a Python loop over examples
  where vmap cannot run the model), in chunks of examples that fit ``max_elements``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from ..errors import check_int
from ._utils import as_batch, check_model, eval_mode, first_tensor


def centered_alignment(K, Y) -> float:
    """``<HKH, H Y Y^T H>_F / (||HKH||_F ||H Y Y^T H||_F)`` in [-1, 1] (NaN if a norm is 0).

    Args:
        K: a kernel matrix (N, N).
        Y: label matrix (N, C) (one-hot or any targets; a 1-D array is one column).
    Invariant to scaling ``K`` by any c > 0 and to adding a constant to it.
    """
    K = np.asarray(K, dtype=float)
    Y = np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be a square matrix (N, N), got shape {K.shape}")
    if Y.ndim != 2 or Y.shape[0] != K.shape[0]:
        raise ValueError(f"Y must have N={K.shape[0]} rows (one per example), got shape "
                         f"{Y.shape}")
    kc, tc = _center(K), _center(Y @ Y.T)
    nk, nt = np.linalg.norm(kc), np.linalg.norm(tc)
    if nk == 0 or nt == 0 or not (math.isfinite(nk) and math.isfinite(nt)):
        return math.nan
    return float(np.clip(np.sum(kc * tc) / (nk * nt), -1.0, 1.0))


def _center(M: np.ndarray) -> np.ndarray:
    return M - M.mean(0, keepdims=True) - M.mean(1, keepdims=True) + M.mean()


def label_matrix(y, n: int) -> np.ndarray:
    """``y`` as an (n, C) float matrix: integer labels (n,) become one-hot; (n, C) is kept."""
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 1:
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
            raise ValueError(f"y must be integer labels >= 0 (n,) or a one-hot matrix (n, C), "
                             f"got a 1-D array of dtype {arr.dtype}")
        out = np.zeros((arr.shape[0], int(arr.max()) + 1 if arr.size else 0))
        out[np.arange(arr.shape[0]), arr] = 1.0
        arr = out
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"y must hold one label per example (n={n}): integer labels (n,) or "
                         f"one-hot (n, C), got shape {arr.shape}")
    return arr.astype(float)


def _owners(model: nn.Module) -> dict[str, tuple[nn.Module, list[tuple[str, nn.Parameter]]]]:
    """Modules owning trainable parameters directly -> (module, [(full name, param)])."""
    owners = {}
    for mname, m in model.named_modules():
        ps = [(f"{mname}.{p}" if mname else p, t)
              for p, t in m.named_parameters(recurse=False) if t.requires_grad]
        if ps:
            owners[mname] = (m, ps)
    return owners


def layer_tangent_kernels(model: nn.Module, x, *, linear_shortcut: bool = True,
                          max_elements: int = 2**24) -> list[tuple[str, np.ndarray]]:
    """The layer tangent kernel ``K_l`` (N x N) of every module that owns trainable parameters.

    Args:
        model: an eager ``nn.Module``, run in eval mode (modes restored afterwards). Examples
            must not interact in the forward pass (true in eval mode for MLPs, CNNs and
            transformers; each example is its own sequence). ``.grad`` is not touched.
        x: a batch of N inputs (N, ...). The model's output for it is (N, ...); all its
            dimensions but the batch are the output dimensions ``k`` (flattened).
        linear_shortcut: use the exact ``nn.Linear`` formula of the module docstring (False
            sends every layer through per-example gradients; the results agree).
        max_elements: bound on the floats of per-example gradients held at once (two blocks
            of ``m`` examples x the group's parameter count); layers are grouped and examples
            chunked to fit, recomputing gradients for every pair of example chunks.
    Returns:
        ``[(module name, K_l as a float64 array (N, N))]`` in forward order (first call);
        modules the forward pass never calls are left out.

    Cost, with ``C`` output dimensions and ``P_l`` parameters in layer ``l``: memory
    O(sum_l N^2) for the kernels plus O(N (in_l + out_l)) per Linear layer, and at most
    ``max_elements`` floats of per-example gradients for the others; time ``C`` batched
    backward passes plus O(C N^2 (in_l + out_l)) per Linear layer, and for the others
    ``C x r(r+1)/2`` vmapped per-example backward passes over chunks of N/r examples plus
    O(C N^2 P_l). arXiv 2110.11749 (layer tangent kernel).
    """
    check_model(model)
    x = as_batch(model, x)
    max_elements = check_int("max_elements", max_elements)
    n = x.shape[0]
    owners = _owners(model)
    if not owners:
        raise ValueError("model has no trainable parameters: no layer tangent kernel to compute")
    order: list[str] = []
    calls: dict[str, int] = defaultdict(int)
    linear_io: dict[str, tuple] = {}
    shared = _shared_params(model)

    def pre_hook_for(name):
        def hook(_m, _inp):
            if calls[name] == 0:
                order.append(name)
            calls[name] += 1
        return hook

    def io_hook_for(name):
        def hook(_m, inp, out):
            # versions: an in-place op after the layer would invalidate the shortcut
            linear_io[name] = (inp[0].detach(), out, inp[0]._version, out._version)
        return hook

    handles = []
    for name, (m, ps) in owners.items():
        handles.append(m.register_forward_pre_hook(pre_hook_for(name)))
        if linear_shortcut and type(m) is nn.Linear and not any(id(p) in shared for _, p in ps):
            handles.append(m.register_forward_hook(io_hook_for(name)))
    with eval_mode(model), torch.enable_grad():
        try:
            out = first_tensor(model(x))
        finally:
            for h in handles:
                h.remove()
        if out.dim() < 1 or out.shape[0] != n:
            raise ValueError(f"the model's output must have the batch first (N={n}, ...), got "
                             f"shape {tuple(out.shape)}")
        flat = out.reshape(n, -1)  # (N, C)
        fast = [nm for nm in order if nm in linear_io and calls[nm] == 1
                and linear_io[nm][0].dim() == 2
                and (linear_io[nm][0]._version, linear_io[nm][1]._version) == linear_io[nm][2:]]
        slow = [nm for nm in order if nm not in fast]
        kernels = {nm: torch.zeros(n, n, dtype=torch.float64) for nm in order}
        if fast:
            _linear_kernels(flat, {nm: (owners[nm][0], *linear_io[nm][:2]) for nm in fast}, kernels)
        linear_io.clear()
        if slow:
            _generic_kernels(model, x, flat.shape[1], {nm: owners[nm][1] for nm in slow},
                             kernels, max_elements)
    return [(nm, kernels[nm].numpy()) for nm in order]


def _shared_params(model: nn.Module) -> set[int]:
    """ids of parameters registered in more than one module (tied weights)."""
    seen: dict[int, int] = defaultdict(int)
    for m in model.modules():
        for _, p in m.named_parameters(recurse=False, remove_duplicate=False):
            seen[id(p)] += 1
    return {k for k, v in seen.items() if v > 1}


def _linear_kernels(flat: torch.Tensor, layers: dict, kernels: dict) -> None:
    """K_l = sum_k (Delta_k Delta_k^T) * (A A^T [weight] + 1 [bias]) for nn.Linear layers."""
    names = list(layers)
    masks = {}
    for nm, (m, a, _y) in layers.items():
        a = a.double()  # (N, in)
        mask = torch.zeros(a.shape[0], a.shape[0], dtype=torch.float64)
        if m.weight.requires_grad:
            mask += a @ a.T
        if m.bias is not None and m.bias.requires_grad:
            mask += 1.0
        masks[nm] = mask
    outs = [layers[nm][2] for nm in names]
    for k in range(flat.shape[1]):
        deltas = torch.autograd.grad(flat[:, k].sum(), outs, retain_graph=True,
                                     allow_unused=True)
        for nm, d in zip(names, deltas, strict=True):
            if d is not None:
                d = d.detach().double()  # (N, out)
                kernels[nm] += (d @ d.T) * masks[nm]


def _groups(sizes: dict[str, int], n: int, budget: int) -> list[list[str]]:
    """Consecutive layers grouped so that two chunks of all N examples' gradients fit."""
    groups, cur, total = [], [], 0
    for nm, s in sizes.items():
        if cur and 2 * n * (total + s) > budget:
            groups.append(cur)
            cur, total = [], 0
        cur.append(nm)
        total += s
    groups.append(cur)
    return groups


def _generic_kernels(model, x, n_out: int, layers: dict, kernels: dict, budget: int) -> None:
    """K_l from per-example gradients, layer groups x example chunks, for every output k."""
    n = x.shape[0]
    sizes = {nm: sum(p.numel() for _, p in ps) for nm, ps in layers.items()}
    for group in _groups(sizes, n, budget):
        params = {pn: p for nm in group for pn, p in layers[nm]}
        per_layer = {nm: [pn for pn, _ in layers[nm]] for nm in group}
        m = max(1, min(n, budget // (2 * sum(sizes[nm] for nm in group))))
        chunks = [slice(i, min(i + m, n)) for i in range(0, n, m)]
        for k in range(n_out):
            for ia, sa in enumerate(chunks):
                ga = _per_example(model, params, per_layer, x[sa], k)
                for sb in chunks[ia:]:
                    gb = ga if sb == sa else _per_example(model, params, per_layer, x[sb], k)
                    for nm in group:
                        block = (ga[nm] @ gb[nm].T).detach().double()
                        kernels[nm][sa, sb] += block
                        if sb != sa:
                            kernels[nm][sb, sa] += block.T


def _per_example(model, params: dict, per_layer: dict, xs: torch.Tensor, k: int) -> dict:
    """{layer: (m, P_l)} gradients of output k of each example in ``xs`` w.r.t. the layer."""
    from torch.func import functional_call, grad, vmap

    def f_k(p, xi):
        return first_tensor(functional_call(model, p, (xi.unsqueeze(0),))).reshape(-1)[k]

    try:
        g = vmap(grad(f_k), in_dims=(None, 0))(params, xs)
    except RuntimeError:  # vmap cannot run this model (data-dependent control flow, ...)
        g = _per_example_loop(model, params, xs, k)
    return {nm: torch.cat([g[pn].reshape(xs.shape[0], -1) for pn in pns], dim=1)
            for nm, pns in per_layer.items()}


def _per_example_loop(model, params: dict, xs: torch.Tensor, k: int) -> dict:
    names, tensors = list(params), list(params.values())
    rows = {pn: [] for pn in names}
    for i in range(xs.shape[0]):
        out = first_tensor(model(xs[i:i + 1])).reshape(-1)[k]
        gs = torch.autograd.grad(out, tensors, allow_unused=True)
        for pn, t, gi in zip(names, tensors, gs, strict=True):
            rows[pn].append(torch.zeros_like(t) if gi is None else gi)
    return {pn: torch.stack(v) for pn, v in rows.items()}


def layer_alignment(model: nn.Module, x, y, **kwargs) -> list[float]:
    """Centred alignment of each layer's tangent kernel with the labels, in forward order.

    Args:
        model: an eager ``nn.Module`` (see :func:`layer_tangent_kernels`).
        x: a batch of N inputs.
        y: integer labels (N,) or one-hot / target matrix (N, C).
        **kwargs: ``linear_shortcut``, ``max_elements`` of :func:`layer_tangent_kernels`
            (its docstring states the memory and time cost).
    Returns:
        One float in [-1, 1] per module that owns trainable parameters (weight and bias
        together), in forward order (NaN where the centred kernel is zero).

    arXiv 2110.11749 (docs/methods.md, Signal propagation diagnostics).
    """
    n = as_batch(check_model(model), x).shape[0]
    targets = label_matrix(y, n)
    return [centered_alignment(K, targets) for _, K in layer_tangent_kernels(model, x, **kwargs)]
