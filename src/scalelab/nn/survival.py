"""Survival rates for stochastic depth at a fixed budget, and block sensitivities for SenseMode.

``p_l`` here is the SURVIVAL probability of block ``l``; :func:`~scalelab.nn.drop_path` and
:class:`~scalelab.nn.ScaledResidual` take the drop probability ``1 - p_l``. The budget is the
expected number of active blocks, ``sum_l p_l``.

Paper: Hayou & Ayed, "Regularization in ResNet with Stochastic Depth", arXiv 2106.03091;
linear mode from Huang et al. arXiv 1603.09382.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..errors import check_choice, check_fraction, check_int

SURVIVAL_MODES = ("uniform", "linear", "sensemode")


def survival_rates(depth: int, budget: float, mode: str = "uniform",
                   sensitivities: Sequence[float] | None = None,
                   p_min: float = 0.05) -> list[float]:
    """``depth`` survival probabilities in (0, 1] that sum to ``budget`` (to 1e-9).

    Args:
        depth: number of residual blocks ``L``.
        budget: expected number of active blocks, in (0, L].
        mode: ``"uniform"`` (``p_l = budget / L``), ``"linear"`` (Huang et al.'s
            ``p_l = 1 - (l/L)(1 - p_L)``, with ``p_L = 1 - 2(L - budget)/(L + 1)`` so the sum
            is the budget; needs ``budget > (L - 1)/2``), or ``"sensemode"`` (see below).
        sensitivities: per-block sensitivities ``s_l`` (``sensemode`` only; e.g. from
            :func:`block_sensitivities`).
        p_min: lower bound of the ``sensemode`` rates, in (0, 1]; needs ``budget >= L*p_min``.

    SenseMode (interpretation, docs/residual.md; the paper gives it in prose only):
    ``p_l = clip(c * w_l, p_min, 1)`` with ``w_l = s_l - min(0, min_k s_k)`` (proportional
    to the sensitivity when all are >= 0; shifted so the smallest is 0 when some are
    negative, as loss increases at initialisation often are) plus a floor of
    ``1e-9 * max(w)`` so that every budget in ``[L*p_min, L]`` is reachable; all-equal
    weights give uniform rates. The sum
    is continuous and increasing in ``c``: ``c`` is found by bisection, then solved exactly
    on the final set of unclipped blocks, so the rates meet the budget and stay within
    ``[p_min, 1]`` (clipping once and rescaling would break the bounds). The rates are
    non-decreasing in the sensitivity.

    Returns:
        A list of ``depth`` floats.

    Paper: arXiv 2106.03091 (budget, SenseMode); arXiv 1603.09382 (linear).
    """
    depth = check_int("depth", depth)
    check_choice("mode", mode, SURVIVAL_MODES)
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a number in (0, depth={depth}], got {budget!r}") from None
    if not (0.0 < budget <= depth):
        raise ValueError(f"budget must be in (0, depth={depth}] (the expected number of active "
                         f"blocks), got {budget!r}")
    if mode == "uniform":
        return [budget / depth] * depth
    if mode == "linear":
        minimum = (depth - 1) / 2
        if budget <= minimum:
            raise ValueError(f"budget must be > (depth - 1)/2 = {minimum:g} for mode='linear' "
                             f"(the last block's survival p_L would be <= 0), got {budget!r}")
        p_last = 1.0 - 2.0 * (depth - budget) / (depth + 1)
        return [1.0 - (k / depth) * (1.0 - p_last) for k in range(1, depth + 1)]
    return _sensemode(depth, budget, sensitivities, p_min)


def _sensemode(depth: int, budget: float, sensitivities, p_min: float) -> list[float]:
    p_min = check_fraction("p_min", p_min, low_open=True)
    if sensitivities is None:
        raise ValueError("sensitivities is required for mode='sensemode' (one value per block, "
                         "e.g. from block_sensitivities); got None")
    s = np.asarray([float(v) for v in sensitivities], dtype=np.float64)
    if s.shape != (depth,):
        raise ValueError(f"sensitivities must have one value per block ({depth}), got {s.size}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"sensitivities must be finite, got {s.tolist()!r}")
    minimum = depth * p_min
    if budget < minimum * (1 - 1e-12):
        raise ValueError(f"budget must be >= depth*p_min = {minimum:g} for mode='sensemode', "
                         f"got {budget!r}")
    w = s - min(0.0, float(s.min()))
    w = np.ones(depth) if w.max() <= 0 else w + 1e-9 * w.max()
    if budget <= minimum:
        return [p_min] * depth
    if budget >= depth:
        return [1.0] * depth

    def total(c: float) -> float:
        return float(np.clip(c * w, p_min, 1.0).sum())

    lo, hi = math.log(p_min / w.max()), math.log(1.0 / w.min())  # total = L*p_min ... L
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(math.exp(mid)) < budget else (lo, mid)
        if hi - lo < 1e-13:
            break
    c = math.exp(0.5 * (lo + hi))
    # Exact solve on the final clipping pattern: budget = n_low*p_min + n_high + c * sum(w_free).
    low, high = c * w <= p_min, c * w >= 1.0
    free = ~(low | high)
    p = np.where(low, p_min, 1.0)
    if free.any():
        c_exact = (budget - low.sum() * p_min - high.sum()) / w[free].sum()
        p[free] = np.clip(c_exact * w[free], p_min, 1.0)
    return [float(v) for v in p]


def _batches(data) -> list[tuple]:
    """An ``(x, y)`` batch or an iterable of them, as a list of pairs."""
    import torch

    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [tuple(data)]
    batches = [tuple(b) for b in data]
    if not batches or any(len(b) != 2 for b in batches):
        raise ValueError("data must be an (x, y) batch or a non-empty iterable of (x, y) batches")
    return batches


SENSITIVITY_KINDS = ("curvature", "symmetric", "loss")


def _gate_tangent(model, ctl, x):
    """``zeta = d model(x) / d delta`` where ``delta`` multiplies block ``ctl``'s branch
    contribution ``scale * branch(y)``, at the multiplier evaluation uses (1, or ``1 - p`` for
    a ``scale_by_keep=False`` block: the mean network); by forward-mode AD through the scale."""
    import torch
    import torch.autograd.forward_ad as fwAD

    kept, drop = ctl.scale, ctl.drop_prob
    mean = 1.0 if ctl.scale_by_keep else 1.0 - drop
    with fwAD.dual_level():
        one = torch.tensor(1.0, dtype=torch.float64)  # 0-d: keeps the model's dtype
        ctl.scale = kept * fwAD.make_dual(mean * one, one)
        ctl.drop_prob = 0.0  # the multiplier now carries the mean-network factor
        try:
            tangent = fwAD.unpack_dual(model(x)).tangent
        finally:
            ctl.scale, ctl.drop_prob = kept, drop
    return torch.zeros_like(model(x)) if tangent is None else tangent


def _output_curvature(loss_fn, out, y, v) -> float:
    """``v^T H v`` with ``H`` the Hessian of ``loss_fn(out, y)`` in ``out`` (double backward)."""
    import torch

    with torch.enable_grad():
        o = out.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(o, y), o, create_graph=True)
        (hv,) = torch.autograd.grad((grad * v).sum(), o)
    return float((hv * v).sum())


def block_sensitivities(model, data, loss_fn: Callable | None = None,
                        blocks: Iterable | None = None, kind: str = "curvature") -> list[float]:
    """Per-block sensitivity ``g_l``: the loss curvature along block ``l``'s gate (default).

    ``kind="curvature"`` (default; the paper's non-negative second-order quantity ``g_l``):
    with ``delta_l`` a gate multiplying block ``l``'s branch contribution
    ``scale_l * branch_l(y)`` and ``zeta_l = d f / d delta_l`` (by forward-mode AD) at the
    gate value evaluation uses (1; ``1 - drop_prob`` for a ``scale_by_keep=False`` block,
    i.e. on the mean network), ``g_l = zeta_l^T H zeta_l``, ``H`` the Hessian of the batch
    loss in the output. For cross-entropy it is the mean over examples of
    ``sum_k pi_k zeta_k^2 - (sum_k pi_k zeta_k)^2`` (``pi`` = softmax), a variance; it is
    >= 0 for any loss convex in the output. It is the coefficient in the penalty stochastic
    depth adds to second order, ``(1/2) sum_l Var(delta_l) g_l``: ``Var = p_l (1 - p_l)``
    for unscaled masks (``scale_by_keep=False``, survival ``p_l``), ``(1 - p_l) / p_l`` for
    inverted scaling. For a model linear in the gates and a quadratic loss the expansion is
    exact (the tests check it by enumerating every mask).

    ``kind="symmetric"`` keeps the even part of the loss change when block ``l`` is dropped
    (``z`` = that output change): ``(loss(out + z) + loss(out - z))/2 - loss(out)``, which
    is ``z^T H z / 2`` to second order and >= 0 for a loss convex in the output.

    ``kind="loss"`` (the earlier default, kept selectable): the plain increase
    ``loss(without l) - loss(full)`` when block ``l``'s branch is removed
    (``y_l = y_{l-1}``). At initialisation its first-order part is noise: values are often
    negative and their ranking changes from seed to seed, so it is a poor SenseMode input
    (docs/residual.md).

    Interpretation (docs/residual.md): measured on the model as it is (call it at
    initialisation for SenseMode), in eval mode (so with ``scale_by_keep=False`` drop
    probabilities, on the mean network), averaged over the batches given; the curvature
    kind neglects the loss gradient times ``d^2 f / d delta_l^2`` (the Gauss-Newton form).
    Cost: one forward-mode pass per block and batch (the other kinds: one forward pass).

    Args:
        model: a network whose blocks are :class:`~scalelab.nn.ScaledResidual` or converted
            by :func:`~scalelab.nn.scale_residual_`.
        data: an ``(x, y)`` batch or an iterable of them (a few batches).
        loss_fn: ``loss_fn(output, y) -> scalar`` (a batch mean); default cross-entropy.
        blocks: the blocks to measure (default :func:`~scalelab.nn.residual_blocks`).
        kind: ``"curvature"`` (default), ``"symmetric"`` or ``"loss"``.

    Returns:
        One float per block, in block order (>= 0 up to rounding for the first two kinds
        when the loss is convex in the output).

    Paper: arXiv 2106.03091 (sensitivity g_l of block l).
    """
    import torch
    import torch.nn.functional as F

    from .residual import block_controller, residual_blocks

    blocks = list(residual_blocks(model) if blocks is None else blocks)
    if not blocks:
        raise ValueError("model has no residual blocks (ScaledResidual or converted by "
                         "scale_residual_); pass blocks=")
    check_choice("kind", kind, SENSITIVITY_KINDS)
    controllers = [block_controller(b) for b in blocks]
    loss_fn = loss_fn or F.cross_entropy
    batches = _batches(data)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    sens = [0.0] * len(blocks)
    try:
        with torch.no_grad():
            for x, y in batches:
                out = model(x)
                base = float(loss_fn(out, y))
                for i, ctl in enumerate(controllers):
                    if kind == "curvature":
                        value = _output_curvature(loss_fn, out, y, _gate_tangent(model, ctl, x))
                        sens[i] += value / len(batches)
                        continue
                    kept, ctl.scale = ctl.scale, 0.0
                    try:
                        dropped = model(x)
                    finally:
                        ctl.scale = kept
                    if kind == "loss":
                        value = float(loss_fn(dropped, y)) - base
                    else:
                        z = dropped - out
                        value = (float(loss_fn(out + z, y)) + float(loss_fn(out - z, y))) / 2 - base
                    sens[i] += value / len(batches)
    finally:
        for m, was_training in modes.items():
            m.training = was_training
    return sens
