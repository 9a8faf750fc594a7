"""The Edge of Chaos: where chi1 = 1 at the variance map's fixed point (arXiv 1902.06853).

With ``sigma_w^2 = 1 / E[phi'(sqrt(q) Z)^2]`` (so chi1 = 1), the variance fixed-point
equation becomes one equation in q: ``q - E[phi^2] / E[phi'^2] = sigma_b^2``. scalelab
tabulates its left side on a geometric grid spanning q in [1e-18, 1e12] (all of (0, inf) in
practice: q* can be in the tens or far beyond), takes the smallest q where it crosses
``sigma_b^2``, and refines every point of a curve at once (vectorised regula falsi). chi1 is
then evaluated at that q* (it is 1 to rounding), and ``stable`` says whether q* attracts.

ReLU-like activations (piecewise linear through the origin, slopes l and b) have a single
EOC point: ``sigma_b = 0``, ``sigma_w = sqrt(2 / (l^2 + b^2))``; every q is then a fixed point
(``q`` is None) and chi1 does not depend on q, so the network stays on the EOC whatever the
input scale — reported ``stable=True`` (an interpretation: the variance map's slope is 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._solve import illinois
from .activations import Activation, as_activation
from .maps import RELU_LIKE_Q, check_values, fixed_point_attracts, fixed_points

#: Default sigma_b of smooth activations; ReLU-like ones use 0. SiLU and GELU get larger
#: values because their EOC fixed point repels below sigma_b ~ 0.73 and ~ 0.41.
DEFAULT_SIGMA_B: dict[str, float] = {"silu": 0.8, "gelu": 0.5, "gelu_tanh": 0.5}
SMOOTH_DEFAULT_SIGMA_B = 0.2

_Q_GRID = 2.0 ** np.arange(-60.0, 41.0)  # 1e-18 .. 1e12


@dataclass(frozen=True)
class EOCPoint:
    """A point (sigma_b, sigma_w) on the Edge of Chaos, with its q*, chi1 there and stability."""

    sigma_b: float
    sigma_w: float
    q: float | None
    chi1: float
    stable: bool

    @property
    def q_eval(self) -> float:
        """The q to evaluate maps at: q*, or :data:`~scalelab.theory.maps.RELU_LIKE_Q` (1.0)
        for a ReLU-like point (``q`` is None: every q is a fixed point, nothing depends on q)."""
        return RELU_LIKE_Q if self.q is None else self.q


@dataclass(frozen=True)
class PhasePoint:
    """One (sigma_w, sigma_b) classified: the fixed point q* reached from q0 = 1 (NaN where the
    variance diverges), chi1 there (for ReLU-like activations at any q: it does not depend on
    q; NaN where a smooth activation's variance diverges) and the phase that chi1 decides."""

    activation: str
    sigma_w: float
    sigma_b: float
    q: float
    chi1: float
    phase: str


@dataclass(frozen=True)
class ConvergenceRate:
    """On the EOC, ``1 - c_l ~ constant / l**power`` (power 2 for ReLU-like, 1 for smooth)."""

    power: int
    constant: float
    q: float | None


@dataclass(frozen=True)
class PhaseDiagram:
    """chi1 at the fixed point reached from q0 = 1 on a (sigma_w, sigma_b) grid.

    ``chi1[i, j]`` and ``q[i, j]`` belong to ``sigma_w[i]``, ``sigma_b[j]``; NaN where the
    variance diverges. ``eoc`` is the EOC curve over the same sigma_b range.
    """

    activation: str
    sigma_b: np.ndarray
    sigma_w: np.ndarray
    chi1: np.ndarray
    q: np.ndarray
    eoc: list[EOCPoint]


def default_sigma_b(act) -> float:
    """0 for ReLU-like activations; 0.2 for smooth ones, except silu 0.8 and gelu(_tanh) 0.5."""
    a = as_activation(act)
    return 0.0 if a.relu_like else DEFAULT_SIGMA_B.get(a.name, SMOOTH_DEFAULT_SIGMA_B)


def _relu_like_point(a: Activation, sigma_b: float) -> EOCPoint:
    if sigma_b != 0:
        raise ValueError(f"sigma_b must be 0 for the ReLU-like activation {a.name!r}: its Edge "
                         f"of Chaos is the single point sigma_b=0, sigma_w=sqrt(2/(l^2+b^2)); "
                         f"got {sigma_b!r}")
    m2 = (a.slopes[0] ** 2 + a.slopes[1] ** 2) / 2
    if m2 == 0:
        raise ValueError(f"act {a.name!r} is identically zero: it has no Edge of Chaos")
    sw = math.sqrt(1.0 / m2)
    return EOCPoint(sigma_b=0.0, sigma_w=sw, q=None, chi1=sw**2 * m2, stable=True)


def _solve_q(a: Activation, sb2: np.ndarray) -> np.ndarray:
    """The smallest q > 0 with q - E[phi^2]/E[phi'^2] = sigma_b^2 (0 or NaN where none)."""
    h_grid = _Q_GRID - a.mean_sq(_Q_GRID) / a.mean_dsq(_Q_GRID)
    # Where |h| is within rounding of q the sign of h means nothing: no root is taken there.
    trusted = np.abs(h_grid) > 1e-9 * _Q_GRID
    out = np.full(sb2.shape, np.nan)
    phi0 = float(a.fn(np.zeros(1))[0])
    zero = (sb2 == 0) & (phi0 == 0)  # q* = 0 solves the equations exactly (limit of the curve)
    out[zero] = 0.0
    f = h_grid[None, :] - sb2[:, None]  # (S, G)
    change = (np.signbit(f[:, :-1]) != np.signbit(f[:, 1:])) & trusted[:-1] & trusted[1:]
    change[zero] = False
    has = change.any(axis=1)
    k = np.flatnonzero(has)
    if k.size:
        j = np.argmax(change[k], axis=1)

        def func(q, i):
            return q - a.mean_sq(q) / a.mean_dsq(q) - sb2[k[i]]

        out[k] = illinois(func, _Q_GRID[j], _Q_GRID[j + 1], f[k, j], f[k, j + 1])
    return out


def _points(a: Activation, sigma_bs: np.ndarray) -> list[EOCPoint | None]:
    if a.relu_like:
        return [_relu_like_point(a, float(sb)) for sb in sigma_bs]
    q = _solve_q(a, sigma_bs**2)
    ok = np.isfinite(q)
    d = np.full(q.shape, np.nan)
    d[ok] = a.mean_dsq(q[ok])
    slope = np.full(q.shape, np.nan)
    slope[ok] = a.dmean_sq(q[ok]) / d[ok]
    pts: list[EOCPoint | None] = []
    for sb, qi, di, si in zip(sigma_bs, q, d, slope, strict=True):
        if not np.isfinite(qi):
            pts.append(None)
            continue
        sw = math.sqrt(1.0 / di)
        pts.append(EOCPoint(sigma_b=float(sb), sigma_w=sw, q=float(qi), chi1=float(sw**2 * di),
                            stable=fixed_point_attracts(a, sw, float(sb), float(qi), float(si))))
    return pts


def _no_solution(a: Activation, sb: float) -> ValueError:
    return ValueError(f"no Edge of Chaos point for act={a.name!r} at sigma_b={sb!r}: "
                      f"q - E[phi^2]/E[phi'^2] never equals sigma_b^2 for q in (0, 1e12)")


def edge_of_chaos(act, sigma_b: float | None = None) -> EOCPoint:
    """The EOC point at ``sigma_b``: sigma_w (not squared) with chi1 = 1 at the fixed point q*.

    Args:
        act: activation name, :class:`Activation` or callable.
        sigma_b: bias std; default :func:`default_sigma_b` (0 for ReLU-like, where it must be 0).
    Returns:
        ``EOCPoint(sigma_b, sigma_w, q, chi1, stable)``. A repelling q* (SiLU/GELU at small
        sigma_b) is returned with ``stable=False``, never dropped. At ``sigma_b = 0`` an
        activation with phi(0) = 0 gets the end of its curve, q* = 0, sigma_w = 1/|phi'(0)|.
    Raises:
        ValueError: sigma_b != 0 for a ReLU-like activation, or no solution (e.g. softplus,
        whose q - E[phi^2]/E[phi'^2] is negative for every q).
    arXiv 1902.06853, section 3 (EOC), Proposition 1 (ReLU-like).
    """
    a = as_activation(act)
    sb = default_sigma_b(a) if sigma_b is None else float(check_values("sigma_b", sigma_b, lo=0.0))
    pt = _points(a, np.array([sb]))[0]
    if pt is None:
        raise _no_solution(a, sb)
    return pt


def eoc_curve(act, sigma_bs, *, skip_missing: bool = False) -> list[EOCPoint]:
    """:func:`edge_of_chaos` at every sigma_b (solved together, vectorised).

    A sigma_b without a solution is a ValueError, or is left out with ``skip_missing=True``.
    """
    a = as_activation(act)
    sbs = np.atleast_1d(check_values("sigma_bs", sigma_bs, lo=0.0)).reshape(-1)
    out = []
    for sb, pt in zip(sbs, _points(a, sbs), strict=True):
        if pt is None and not skip_missing:
            raise _no_solution(a, float(sb))
        if pt is not None:
            out.append(pt)
    return out


def phase_point(act, sigma_w: float, sigma_b: float, *, tol: float = 1e-6) -> PhasePoint:
    """The phase of one point, with the fixed point and chi1 it was decided on.

    Args:
        act: activation name, :class:`Activation` or callable.
        sigma_w, sigma_b: the weight and bias stds (sigma_w > 0, sigma_b >= 0).
        tol: ``|chi1 - 1| <= tol`` is "edge".
    Returns:
        ``PhasePoint(activation, sigma_w, sigma_b, q, chi1, phase)``: phase "ordered"
        (chi1 < 1), "chaotic" (chi1 > 1, or the variance diverges) or "edge"; chi1 is taken
        at the fixed point q reached from q0 = 1. For ReLU-like activations chi1 =
        sigma_w^2 (l^2 + b^2) / 2 whatever q (an interpretation for sigma_b > 0, where no
        fixed point exists at chi1 = 1; q is then NaN). arXiv 1902.06853.
    """
    a = as_activation(act)
    sw = float(check_values("sigma_w", sigma_w, lo=0.0, open_lo=True))
    sb = float(check_values("sigma_b", sigma_b, lo=0.0))
    q = float(fixed_points(a, sw, sb))
    at = RELU_LIKE_Q if a.relu_like else q
    c1 = math.nan if math.isnan(at) else sw**2 * float(a.mean_dsq(at))
    if math.isnan(c1):
        ph = "chaotic"
    elif abs(c1 - 1.0) <= tol:
        ph = "edge"
    else:
        ph = "ordered" if c1 < 1.0 else "chaotic"
    return PhasePoint(a.name, sw, sb, q, c1, ph)


def phase(act, sigma_w: float, sigma_b: float, *, tol: float = 1e-6) -> str:
    """"ordered" (chi1 < 1), "chaotic" (chi1 > 1) or "edge" (|chi1 - 1| <= tol).

    chi1 is taken at the fixed point reached from q0 = 1; where the variance diverges the
    phase is "chaotic". For ReLU-like activations chi1 = sigma_w^2 (l^2 + b^2) / 2 whatever
    q (an interpretation for sigma_b > 0, where no fixed point exists at chi1 = 1).
    :func:`phase_point` returns q and chi1 with it.
    """
    return phase_point(act, sigma_w, sigma_b, tol=tol).phase


def phase_diagram(act, sigma_bs, sigma_ws) -> PhaseDiagram:
    """chi1 (at the fixed point reached from q0 = 1) on the grid ``sigma_ws x sigma_bs``."""
    a = as_activation(act)
    sbs = np.atleast_1d(check_values("sigma_bs", sigma_bs, lo=0.0)).reshape(-1)
    sws = np.atleast_1d(check_values("sigma_ws", sigma_ws, lo=0.0, open_lo=True)).reshape(-1)
    sw_g, sb_g = np.meshgrid(sws, sbs, indexing="ij")
    q = np.asarray(fixed_points(a, sw_g, sb_g), dtype=float)
    c1 = np.full(q.shape, np.nan)
    ok = np.isfinite(q)
    c1[ok] = sw_g[ok] ** 2 * a.mean_dsq(q[ok])
    eoc_bs = np.array([0.0]) if a.relu_like else np.linspace(sbs.min(), sbs.max(), 60)
    return PhaseDiagram(a.name, sbs, sws, c1, q, eoc_curve(a, eoc_bs, skip_missing=True))


def convergence_rate(act, sigma_b: float | None = None) -> ConvergenceRate:
    """How fast correlations reach 1 on the EOC: ``1 - c_l ~ constant / l**power``.

    - phi' continuous (tanh, ELU with alpha=1, GELU, ...): power 1, constant
      beta_q = 2 E[phi'^2] / (q* E[phi''^2]) (arXiv 1902.06853).
    - phi' jumping by J at 0 (ReLU: 9 pi^2 / 2; leaky ReLU, abs, SELU): power 2, constant
      18 pi^2 E[phi'^2]^2 / J^4, from 1 - c' = (1 - c) - A (1 - c)^(3/2) with
      A = sqrt(2) J^2 / (3 pi E[phi'^2]) (the ReLU case of the paper, generalised).
    """
    a = as_activation(act)
    pt = edge_of_chaos(a, sigma_b)
    jumps = {k: a.derivative_jump(k) for k in a.kinks}
    jumping = {k: j for k, j in jumps.items() if abs(j) > 1e-6}
    if a.relu_like or jumping:
        if set(jumping) - {0.0}:
            raise ValueError(f"convergence_rate: act {a.name!r} has a derivative jump away "
                             f"from 0 ({sorted(jumping)}); only a jump at 0 is supported")
        if not jumping:
            raise ValueError(f"act {a.name!r} is linear: its correlation map is the identity "
                             f"on the EOC, correlations do not converge")
        m2 = float(a.mean_dsq(pt.q_eval))
        return ConvergenceRate(2, 18 * math.pi**2 * m2**2 / jumping[0.0] ** 4, pt.q)
    if pt.q == 0:
        raise ValueError(f"convergence_rate: at sigma_b=0 act {a.name!r} has q*=0, where "
                         f"beta_q is not defined; use sigma_b > 0")
    beta = 2 * float(a.mean_dsq(pt.q)) / (pt.q * float(a.mean_d2sq(pt.q)))
    return ConvergenceRate(1, beta, pt.q)
