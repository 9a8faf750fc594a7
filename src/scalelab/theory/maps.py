"""Signal-propagation maps of a deep random MLP (arXiv 1902.06853, Poole et al. 2016,
Schoenholz et al. 2017).

Net: ``y^l = W^l phi(y^{l-1}) + b^l``, ``W_ij ~ N(0, sigma_w^2 / fan_in)``,
``b_i ~ N(0, sigma_b^2)``. In the infinite-width limit a pre-activation's variance follows
the variance map q' = sigma_b^2 + sigma_w^2 E[phi(sqrt(q) Z)^2], and the correlation c of
two inputs of variance q follows the correlation map
c' = (sigma_b^2 + sigma_w^2 E[phi(U) phi(V)]) / q'. ``chi1 = sigma_w^2 E[phi'(sqrt(q) Z)^2]``
is the slope of the correlation map at c = 1: below 1 ordered, above 1 chaotic.

Every map is vectorised (arguments broadcast) and takes ``act`` as a name, an
:class:`~scalelab.theory.activations.Activation` or a user callable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._solve import geometric_bracket, illinois
from .activations import Activation, as_activation

#: Largest variance the fixed-point search visits before calling the iteration divergent.
Q_MAX = 1e12


@dataclass(frozen=True)
class FixedPoint:
    """A fixed point q* of the variance map, its slope there, and whether it attracts."""

    q: float
    slope: float
    stable: bool


def check_values(name: str, value, *, lo: float | None = None, hi: float | None = None,
                 open_lo: bool = False) -> np.ndarray:
    """``value`` as a float array; a ValueError naming ``name`` if any entry is out of range."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    bad = ~np.isfinite(arr)
    if lo is not None:
        bad |= (arr <= lo) if open_lo else (arr < lo)
    if hi is not None:
        bad |= arr > hi
    if np.any(bad):
        first = float(arr.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])
        rng = {(0.0, None, False): ">= 0", (0.0, None, True): "> 0",
               (-1.0, 1.0, False): "in [-1, 1]", (0.0, 2.0, False): "in [0, 2]"}
        allowed = rng.get((lo, hi, open_lo), "finite")
        raise ValueError(f"{name} must be {allowed}, got {first!r}")
    return arr




def _out(x):
    return float(x) if np.ndim(x) == 0 else x


def variance_map(act, sigma_w, sigma_b, q):
    """q' = sigma_b^2 + sigma_w^2 E[phi(sqrt(q) Z)^2] (vectorised).

    Args:
        act: activation name, :class:`Activation` or callable.
        sigma_w: weight scale (W_ij ~ N(0, sigma_w^2 / fan_in)); sigma_b: bias std.
        q: pre-activation variance(s), >= 0.
    arXiv 1902.06853 (Poole et al. 2016).
    """
    a = as_activation(act)
    sw, sb = check_values("sigma_w", sigma_w, lo=0.0, open_lo=True), check_values("sigma_b", sigma_b, lo=0.0)
    q = check_values("q", q, lo=0.0)
    return _out(sb**2 + sw**2 * a.mean_sq(q))


def variance_map_slope(act, sigma_w, sigma_b, q):
    """d q' / d q = sigma_w^2 d/dq E[phi(sqrt(q) Z)^2] (``sigma_b`` does not enter)."""
    a = as_activation(act)
    sw = check_values("sigma_w", sigma_w, lo=0.0, open_lo=True)
    check_values("sigma_b", sigma_b, lo=0.0)
    return _out(sw**2 * a.dmean_sq(check_values("q", q, lo=0.0)))


def correlation_map(act, sigma_w, sigma_b, q, c):
    """c' = (sigma_b^2 + sigma_w^2 E[phi(U) phi(V)]) / variance_map(q) (vectorised).

    Two inputs of variance ``q`` and correlation ``c`` in [-1, 1]. Computed as
    ``1 - sigma_w^2 (E[phi(U)^2] - E[phi(U) phi(V)]) / q'`` with the gap evaluated directly,
    so 1 - c' keeps its relative accuracy as c -> 1.
    """
    return _out(1.0 - correlation_gap_map(act, sigma_w, sigma_b, q,
                                          1.0 - check_values("c", c, lo=-1.0, hi=1.0)))


def correlation_gap_map(act, sigma_w, sigma_b, q, gap):
    """1 - c' as a function of ``gap`` = 1 - c in [0, 2]: the correlation map near c = 1.

    Iterating this map keeps 1 - c_l to full relative precision even when it is far below
    machine epsilon relative to 1 (useful for the polynomial convergence on the EOC).
    """
    a = as_activation(act)
    sw, sb = check_values("sigma_w", sigma_w, lo=0.0, open_lo=True), check_values("sigma_b", sigma_b, lo=0.0)
    q = check_values("q", q, lo=0.0)
    gap = check_values("gap", gap, lo=0.0, hi=2.0)
    q_next = sb**2 + sw**2 * a.mean_sq(q)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sw**2 * a.gap(q, 1.0 - gap) / q_next
    return _out(np.where(q_next > 0, out, 0.0))


def correlation_map_slope(act, sigma_w, sigma_b, q, c):
    """dc'/dc = sigma_w^2 E[phi'(U) phi'(V)] * q / q' (equal to chi1 at a fixed point, c = 1)."""
    a = as_activation(act)
    sw, sb = check_values("sigma_w", sigma_w, lo=0.0, open_lo=True), check_values("sigma_b", sigma_b, lo=0.0)
    q, c = check_values("q", q, lo=0.0), check_values("c", c, lo=-1.0, hi=1.0)
    return _out(sw**2 * a.dpair(q, q, c) * q / (sb**2 + sw**2 * a.mean_sq(q)))


# --- fixed points ----------------------------------------------------------------------------
def _pl_fixed(a: Activation, sw, sb, q0):
    slope = sw**2 * (a.slopes[0] ** 2 + a.slopes[1] ** 2) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(slope < 1, sb**2 / (1 - slope), np.where(sb == 0, q0, np.nan))
    return q


def fixed_points(act, sigma_w, sigma_b, q0=1.0) -> np.ndarray:
    """Vectorised :func:`fixed_point`: the q* reached from ``q0``, NaN where it diverges."""
    a = as_activation(act)
    sw, sb, q0 = np.broadcast_arrays(check_values("sigma_w", sigma_w, lo=0.0, open_lo=True),
                                     check_values("sigma_b", sigma_b, lo=0.0),
                                     check_values("q0", q0, lo=0.0, open_lo=True))
    shape = sw.shape
    if a.relu_like:
        return _out(_pl_fixed(a, sw, sb, q0))
    sw, sb, q0 = (v.reshape(-1).astype(float) for v in (sw, sb, q0))

    def g(q, idx):
        return sb[idx] ** 2 + sw[idx] ** 2 * a.mean_sq(q) - q

    idx_all = np.arange(q0.size)
    g0 = g(q0, idx_all)
    out = np.where(g0 == 0, q0, np.nan)
    steps = int(np.ceil(np.log(Q_MAX) / np.log(2.0))) + 30
    for direction in (1, -1):  # iteration moves up where V(q0) > q0, down where V(q0) < q0
        sel = np.flatnonzero(g0 * direction > 0)
        if sel.size == 0:
            continue
        ratio = 2.0 if direction > 0 else 0.5
        stop = (lambda v: v <= 0) if direction > 0 else (lambda v: v >= 0)
        prev, cur, gp, gc, found = geometric_bracket(
            lambda x, i, sel=sel: g(x, sel[i]), q0[sel], g0[sel], ratio, steps + 40, stop)
        if direction > 0:
            found &= cur <= Q_MAX * np.maximum(q0[sel], 1.0)
            lo, hi, flo, fhi = prev, cur, gp, gc
        else:
            lo, hi, flo, fhi = cur, prev, gc, gp
        roots = np.full(sel.size, np.nan if direction > 0 else 0.0)  # down and never back: 0
        k = np.flatnonzero(found)
        if k.size:
            roots[k] = illinois(lambda x, i, k=k, sel=sel: g(x, sel[k[i]]), lo[k], hi[k], flo[k],
                                fhi[k])
        out[sel] = roots
    return _out(out.reshape(shape))


def fixed_point(act, sigma_w: float, sigma_b: float, q0: float = 1.0) -> FixedPoint:
    """The fixed point of the variance map reached by iterating it from ``q0``.

    The variance map is increasing for every registered activation, so the iteration moves
    monotonically to the nearest fixed point in the direction of ``V(q0) - q0``; scalelab
    finds it by walking geometrically (factor 2) until the sign of ``V(q) - q`` changes,
    then refining the bracket (so a pair of fixed points closer than a factor 2 could be
    skipped — an interpretation for non-monotone maps). ReLU-like activations use the
    closed form (``q' = sigma_b^2 + chi1 q``); with ``chi1 = 1`` and ``sigma_b = 0`` every q
    is fixed and ``q0`` is returned.

    Returns:
        ``FixedPoint(q, slope, stable)``: ``slope`` is the variance map's slope at q*;
        ``stable`` is ``slope < 1``, or, where the slope is 1 (neutral), whether the map
        pulls nearby variances in (``V(q) < q`` just above q*).
    Raises:
        ValueError: if the iteration diverges (q grows past 1e12).
    arXiv 1902.06853, section 3.
    """
    a = as_activation(act)
    sw, sb = float(sigma_w), float(sigma_b)
    q = float(fixed_points(a, sw, sb, q0))
    if math.isnan(q):
        raise ValueError(f"the variance map diverges from q0={q0!r} for act={a.name!r}, "
                         f"sigma_w={sw!r}, sigma_b={sb!r}: no finite fixed point")
    slope = float(variance_map_slope(a, sw, sb, q))
    return FixedPoint(q=q, slope=slope, stable=fixed_point_attracts(a, sw, sb, q, slope))


#: The q at which q-dependent maps are evaluated for a ReLU-like activation when no q is
#: given (its EOC point has ``q=None``): every q is then a fixed point and chi1, the map
#: slopes and the correlation map do not depend on q, so any q gives the same numbers; 1.0
#: is the convention (docs/eoc.md, "ReLU-like").
RELU_LIKE_Q = 1.0


def fixed_point_attracts(a: Activation, sw: float, sb: float, q: float, slope: float) -> bool:
    """Whether the fixed point ``q`` of the variance map (with ``slope`` there) attracts: slope
    < 1, or at slope 1 the map falls below the diagonal just above ``q`` (ReLU-like: neutral,
    counted as attracting)."""
    if abs(slope - 1.0) > 1e-9:
        return slope < 1.0
    if a.relu_like:
        return True  # every q is fixed and chi1 does not depend on q: neutral, kept
    h = 1e-3 * max(q, 1e-3)
    return bool(variance_map(a, sw, sb, q + h) < q + h)




def chi1(act, sigma_w, sigma_b, q=None):
    """chi1 = sigma_w^2 E[phi'(sqrt(q) Z)^2]: at ``q`` when given, else at ``fixed_point``'s q*.

    chi1 < 1: ordered phase; > 1: chaotic; = 1: Edge of Chaos. For ReLU-like activations
    chi1 does not depend on q (and no fixed point is needed). Vectorised when ``q`` is given.
    """
    a = as_activation(act)
    sw = check_values("sigma_w", sigma_w, lo=0.0, open_lo=True)
    check_values("sigma_b", sigma_b, lo=0.0)
    if q is None:
        q = RELU_LIKE_Q if a.relu_like else fixed_point(a, float(sigma_w), float(sigma_b)).q
    return _out(sw**2 * a.mean_dsq(check_values("q", q, lo=0.0)))


def correlation_fixed_point(act, sigma_w: float, sigma_b: float, q: float) -> tuple[float, float]:
    """The stable fixed point c* of the correlation map at variance ``q``, and the slope there.

    c* = 1 when chi1 <= 1; in the chaotic phase, the largest c* < 1 (found on a grid of
    [-1, 1) refined by regula falsi).
    """
    a = as_activation(act)
    c1 = float(chi1(a, sigma_w, sigma_b, q))
    if c1 <= 1.0:
        return 1.0, c1
    grid = np.concatenate([np.linspace(-1.0, 0.98, 45), 1.0 - np.logspace(-2, -8, 13)])
    f = 1.0 - correlation_gap_map(a, sigma_w, sigma_b, q, 1.0 - grid) - grid
    sign_change = np.flatnonzero((f[:-1] >= 0) & (f[1:] < 0))
    if sign_change.size == 0:
        raise ValueError(f"no correlation fixed point below 1 for act={a.name!r}, "
                         f"sigma_w={sigma_w!r}, sigma_b={sigma_b!r}")
    j = sign_change[-1]

    def fc(x, idx):
        return 1.0 - correlation_gap_map(a, sigma_w, sigma_b, q, 1.0 - x) - x

    c_star = float(illinois(fc, grid[j:j + 1], grid[j + 1:j + 2], f[j:j + 1], f[j + 1:j + 2])[0])
    return c_star, float(correlation_map_slope(a, sigma_w, sigma_b, q, c_star))


def depth_scales(act, sigma_w: float, sigma_b: float, q: float | None = None
                 ) -> tuple[float, float]:
    """(xi_q, xi_c): depths over which variances and correlations approach their fixed points.

    xi_q = -1 / ln(slope of the variance map at q*), xi_c = -1 / ln(slope of the correlation
    map at its stable fixed point c*) (Schoenholz et al. 2017). A slope >= 1 means no
    exponential approach: ``math.inf`` (so xi_c is infinite on the EOC, and xi_q too for
    ReLU-like activations, whose variance map has slope 1 there; for smooth activations
    xi_q stays finite on the EOC). ``q`` defaults to ``fixed_point(...).q``.
    """
    a = as_activation(act)
    if q is None:
        q = fixed_point(a, sigma_w, sigma_b).q
    slope_q = float(variance_map_slope(a, sigma_w, sigma_b, q))
    c1 = float(chi1(a, sigma_w, sigma_b, q))
    slope_c = c1 if c1 <= 1.0 + 1e-9 else correlation_fixed_point(a, sigma_w, sigma_b, q)[1]
    return _xi(slope_q), _xi(slope_c)


def _xi(slope: float) -> float:
    if slope >= 1.0 - 1e-9:
        return math.inf
    if slope <= 0.0:
        return 0.0
    return -1.0 / math.log(slope)
