"""How fast the infinite-width NTK forgets its inputs with depth ("the curse of depth").

The normalised NTK ``Theta~_ab = Theta_ab / sqrt(Theta_aa Theta_bb)`` of a deep MLP tends,
as depth grows, to a *trivial* kernel: 1 on the diagonal and one constant ``Theta~_inf`` off
it, whatever the inputs (arXiv 1905.13654; "The Curse of Depth in Kernel Regime", PMLR 163,
2022). :func:`ntk_depth_profile` measures, per depth, the distance
``max_{a != b} |Theta~_ab - Theta~_inf|``, the off-diagonal spread
``max_{a != b} Theta~_ab - min_{a != b} Theta~_ab`` (0 exactly when the kernel forgets the
inputs; no limit needed), and the condition number of ``Theta~``, then fits the decay of the
distance both ways: exponential (log-linear) and power law (log-log).

The constant ``Theta~_inf`` (``limit=None``) is derived in docs/kernels.md — an
interpretation that the tests check numerically at large depth, not a value the papers'
public text gives: 1 in the ordered phase (``K^l`` tends to a constant kernel, ``Kdot`` to
chi1 < 1), 0 in the chaotic phase (the diagonal grows like ``chi1^L`` and the off-diagonal
like ``Kdot(c*)^L`` with ``Kdot(c*) < chi1``), and on the Edge of Chaos ``1 / (1 + p)`` with
``prod_{k > l} Kdot^k ~ (l/L)^p``: ``p = 2`` (1/3) when ``phi'`` is continuous and ``p = 3``
(1/4) when ``phi'`` jumps at 0 (ReLU-like), from ``1 - c_l ~ beta / l`` and
``~ C / l^2`` (:func:`~scalelab.theory.convergence_rate`). ReLU-like nets without bias, and
those in the chaotic phase (where the bias fades), are scale-invariant: 1/4 too.

:func:`resnet_ntk_depth_profile` does the same for the ``1/sqrt(L)`` ResNet, whose limit is
the infinite-depth NTK (``resnet_ntk(..., infinite=True)``) — not a trivial kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .activations import as_activation
from .kernels import as_inputs, mlp_layers
from .ntk import resnet_ntk

#: Distances at or below this are rounding noise and are left out of the decay fits: 1e-12
#: when phi' is continuous; 1e-7 when it jumps (ReLU-like), because ``E[phi' phi']`` moves
#: like ``sqrt(1 - c)`` and a correlation rounded by 1e-16 moves it by ~1e-8.
FIT_FLOOR = 1e-12
FIT_FLOOR_KINKED = 1e-7


@dataclass(frozen=True)
class DecayFit:
    """Two fits of a decaying quantity ``d(L)``: ``A exp(-rate L)`` and ``B L^(-exponent)``.

    Least squares on ``log d`` against ``L`` (exponential) and against ``log L`` (power law),
    over the points above the rounding floor (``FIT_FLOOR`` / ``FIT_FLOOR_KINKED``); ``r2_*``
    are their coefficients of determination (same response, same number of parameters:
    comparable), ``better`` the fit with the larger one. NaN (and ``better="none"``) with
    fewer than 3 usable points.
    """

    rate: float
    exponent: float
    r2_exponential: float
    r2_power: float
    better: str
    n_points: int

    @property
    def depth_scale(self) -> float:
        """``1 / rate``: the depth over which the distance falls by a factor e."""
        return 1.0 / self.rate if self.rate > 0 else math.inf


@dataclass(frozen=True)
class NTKDepthProfile:
    """Per-depth summary of a normalised NTK (see the module docstring).

    ``phase`` is ``"ordered"``, ``"chaotic"`` or ``"edge"`` for MLPs and ``"resnet"`` for the
    residual net; ``limit`` is ``Theta~_inf`` (a float for MLPs, the normalised infinite-depth
    NTK for the ResNet); ``distance``, ``spread``, ``condition`` have one entry per depth.
    """

    activation: str
    architecture: str
    sigma_w: float | None
    sigma_b: float | None
    phase: str
    depths: np.ndarray
    limit: float | np.ndarray
    distance: np.ndarray
    spread: np.ndarray
    condition: np.ndarray
    fit: DecayFit


def normalised_kernel(K) -> np.ndarray:
    """``K_ab / sqrt(K_aa K_bb)`` (a ValueError if a diagonal entry is not > 0)."""
    K = np.asarray(K, dtype=float)
    d = np.diag(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or not np.all(d > 0):
        raise ValueError("K must be a square matrix with a positive diagonal, got shape "
                         f"{K.shape} and diagonal minimum {d.min() if d.size else None!r}")
    s = np.sqrt(d)
    return K / np.outer(s, s)


def decay_fit(depths: Sequence[float], distance: Sequence[float], *,
              floor: float = FIT_FLOOR) -> DecayFit:
    """:class:`DecayFit` of ``distance`` against ``depths`` (the points above ``floor``)."""
    L = np.asarray(depths, dtype=float)
    d = np.asarray(distance, dtype=float)
    ok = np.isfinite(d) & (d > floor) & (L > 0)
    if ok.sum() < 3:
        return DecayFit(math.nan, math.nan, math.nan, math.nan, "none", int(ok.sum()))
    y = np.log(d[ok])
    fits = []
    for x in (L[ok], np.log(L[ok])):
        slope, icpt = np.polyfit(x, y, 1)
        ss_res = float(np.sum((y - (slope * x + icpt)) ** 2))
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        fits.append((-float(slope), 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan))
    (rate, r2e), (expo, r2p) = fits
    better = "exponential" if r2e > r2p else "power law"
    return DecayFit(rate, expo, r2e, r2p, better, int(ok.sum()))


def _depths(depths) -> np.ndarray:
    try:
        arr = np.asarray(depths, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"depths must be a sequence of integers >= 1, got {depths!r}") from None
    if arr.size < 1 or not np.all(np.isfinite(arr)) or np.any(arr < 1) or \
            np.any(arr != np.round(arr)):
        raise ValueError(f"depths must be a non-empty sequence of integers >= 1, got {depths!r}")
    return np.unique(arr.astype(int))


def trivial_limit(act, sigma_w: float, sigma_b: float) -> float:
    """``Theta~_inf``: the off-diagonal value the normalised MLP NTK tends to with depth.

    1 (ordered), 0 (chaotic), 1/3 or 1/4 (Edge of Chaos, ``phi'`` continuous or jumping at
    0); see the module docstring and docs/kernels.md (derived there; an interpretation,
    checked numerically by the tests). A ValueError where no trivial limit is known (a
    linear net, a variance that dies or diverges, a jump of ``phi'`` away from 0): pass
    ``limit=`` to :func:`ntk_depth_profile` then.
    """
    from .eoc import phase
    from .maps import fixed_points

    a = as_activation(act)
    sw, sb = float(sigma_w), float(sigma_b)
    where = f"act={a.name!r}, sigma_w={sw!r}, sigma_b={sb!r}"
    if a.relu_like:
        right, left = a.slopes
        if right == left:
            raise ValueError(f"a linear network's normalised NTK keeps its inputs ({where}): "
                             "no trivial limit")
        chi = sw**2 * (right**2 + left**2) / 2
        if sb > 0 and abs(chi - 1) <= 1e-9:
            raise ValueError(f"no trivial limit is derived for a ReLU-like net with chi1 = 1 "
                             f"and sigma_b > 0 ({where}); pass limit=")
        return 1.0 if (sb > 0 and chi < 1) else 0.25
    ph = phase(a, sw, sb)
    q = float(fixed_points(a, sw, sb))
    if not np.isfinite(q) or q <= 0:
        raise ValueError(f"the variance {'diverges' if not np.isfinite(q) else 'dies (q* = 0)'} "
                         f"({where}): no trivial limit is derived; pass limit=")
    if ph == "ordered":
        return 1.0
    if ph == "chaotic":
        return 0.0
    jumps = {k: a.derivative_jump(k) for k in a.kinks}
    jumping = [k for k, j in jumps.items() if abs(j) > 1e-6]
    if not jumping:
        return 1.0 / 3.0
    if jumping == [0.0]:
        return 0.25
    raise ValueError(f"phi' jumps away from 0 ({where}): no trivial limit is derived; "
                     "pass limit=")


def _summaries(T: np.ndarray, limit, depth: int) -> tuple[float, float, float]:
    if not np.all(np.isfinite(T)) or not np.all(np.diag(T) > 0):
        raise ValueError(f"the NTK at depth {depth} has a zero or non-finite diagonal entry "
                         "(a zero input with sigma_b = 0?): it cannot be normalised")
    Tn = normalised_kernel(T)
    off = ~np.eye(Tn.shape[0], dtype=bool)
    dist = float(np.max(np.abs(Tn - limit)[off]))
    spread = float(np.max(Tn[off]) - np.min(Tn[off]))
    return dist, spread, float(np.linalg.cond(Tn))


def _check_pairs(X) -> np.ndarray:
    X = as_inputs(X)
    if X.shape[0] < 2:
        raise ValueError(f"X must hold at least 2 inputs (a depth profile compares pairs), "
                         f"got {X.shape[0]}")
    return X


def ntk_depth_profile(act, sigma_w: float, sigma_b: float, depths: Sequence[int], X, *,
                      limit: float | None = None,
                      progress: Callable[[Iterable, int], Iterable] | None = None
                      ) -> NTKDepthProfile:
    """Distance of the normalised MLP NTK to its trivial limit, per depth, and its decay.

    Args:
        act, sigma_w, sigma_b: the network of :func:`~scalelab.theory.ntk_kernel`.
        depths: the depths (numbers of linear layers) to record; one recursion runs to the
            largest.
        X: at least 2 inputs, one per row (distinct, or the pair never separates).
        limit: ``Theta~_inf``; None takes :func:`trivial_limit` (ValueError where none is known).
        progress: optional ``progress(iterable, total)`` wrapping the layer loop (a progress
            bar, e.g. ``scalelab._progress.track``).
    Returns:
        :class:`NTKDepthProfile` (``fit`` on ``distance``). arXiv 1905.13654; PMLR 163 (2022).
    """
    from .eoc import phase

    a = as_activation(act)
    X = _check_pairs(X)
    ds = _depths(depths)
    lim = trivial_limit(a, sigma_w, sigma_b) if limit is None else float(limit)
    rows = []
    layers = enumerate(mlp_layers(a, sigma_w, sigma_b, int(ds[-1]), X, ntk=True), start=1)
    for level, (_K, T) in (layers if progress is None else progress(layers, int(ds[-1]))):
        if level in ds:
            rows.append(_summaries(T, lim, level))
    dist, spread, cond = (np.array(v) for v in zip(*rows, strict=True))
    return NTKDepthProfile(a.name, "mlp", float(sigma_w), float(sigma_b),
                           phase(a, sigma_w, sigma_b), ds, lim, dist, spread, cond,
                           decay_fit(ds, dist, floor=_floor(a)))


def resnet_ntk_depth_profile(act, depths: Sequence[int], X, *, rtol: float = 1e-10,
                             progress: Callable[[Iterable, int], Iterable] | None = None
                             ) -> NTKDepthProfile:
    """The same profile for the ``1/sqrt(L)`` ResNet of :func:`~scalelab.theory.resnet_ntk`.

    ``limit`` is the normalised infinite-depth NTK (``infinite=True``, ODE tolerance ``rtol``),
    an input-dependent kernel: ``distance`` measures convergence to it (the finite recursion
    is its Euler scheme, so O(1/L) is expected), ``spread`` whether the inputs are forgotten.
    One recursion per depth (the branch scale depends on L); ``progress`` as in
    :func:`ntk_depth_profile`. arXiv 2302.00453.
    """
    a = as_activation(act)
    X = _check_pairs(X)
    ds = _depths(depths)
    lim = normalised_kernel(resnet_ntk(a, None, X, infinite=True, rtol=rtol))
    rows = [_summaries(resnet_ntk(a, int(L), X), lim, int(L))
            for L in (ds if progress is None else progress(ds, len(ds)))]
    dist, spread, cond = (np.array(v) for v in zip(*rows, strict=True))
    return NTKDepthProfile(a.name, "resnet", None, None, "resnet", ds, lim, dist, spread, cond,
                           decay_fit(ds, dist, floor=_floor(a)))


def _floor(a) -> float:
    return FIT_FLOOR if a.smooth_derivative else FIT_FLOOR_KINKED
