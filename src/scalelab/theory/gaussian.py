"""Gaussian expectations E[f(sqrt(q) Z)] and E[h(U, V)] for (U, V) bivariate normal.

Composite Gauss–Legendre quadrature on the truncated real line ``|z| <= 9`` (the mass
beyond is below 1e-18), with panel edges placed *at the kinks* of the integrand and panels
graded geometrically away from them. Splitting at a kink makes kinked activations (ReLU,
ELU, SELU, abs) as accurate as smooth ones; grading towards the activation's transition
point (``x = 0`` for every registered activation) also handles the steep part of
``tanh(sqrt(q) z)`` at large ``q``, where plain Gauss–Hermite needs thousands of nodes.
With the defaults (16 nodes per panel in 1-D, 14 in each direction in 2-D) the relative
error is ~1e-13 for ``q <= 100`` (the tests check it against closed forms and
``scipy.integrate.quad``).

Bivariate expectations use the symmetric parametrisation
``U = sqrt(q_a) (a X + b Y)``, ``V = sqrt(q_b) (a X - b Y)`` with ``a = sqrt((1 + c) / 2)``,
``b = sqrt((1 - c) / 2)``: no angle is formed, so there is no loss of precision as
``c -> 1`` (``1 - c`` is exact in floating point there). The inner integral over ``X`` is
split at the points where ``U`` or ``V`` cross a kink; the outer one over ``Y`` at the
points where those crossings meet. Negative correlations are mapped to positive ones by
``g(v) -> g(-v)``.

Everything is vectorised: ``q`` (and ``c``) broadcast, the result has their shape.
Integrands must grow at most polynomially (the truncation assumes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

#: Truncation of the standard normal: the integration runs over |z| <= Z_MAX.
Z_MAX = 9.0
#: Gauss–Legendre nodes per panel and geometric panels per graded stretch, 1-D.
NODES, PANELS = 16, 5
#: The same for each of the two nested integrals of a bivariate expectation.
NODES_2D, PANELS_2D = 14, 4
# Grading starts at min(_H_MAX, _H_ACT / slope): a fraction of the Gaussian's width, or of
# the activation's own length scale (1 for every registered activation) seen through z.
_H_MAX = 0.3
_H_ACT = 0.5
_CHUNK = 2_000_000  # max integrand evaluations held in memory at once

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@lru_cache(maxsize=16)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1.0) / 2.0, w / 2.0  # on [0, 1]


def _graded(length: np.ndarray, h: np.ndarray, panels: int) -> np.ndarray:
    """Panel edges (..., panels + 2) at distances 0, h, h r, ..., length from a kink."""
    length = np.maximum(length, 0.0)
    h = np.minimum(h, length / (panels + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h > 0, np.log(np.where(h > 0, length / h, 1.0)) / panels, 0.0)
    k = np.arange(panels + 1)
    inner = h[..., None] * np.exp(ratio[..., None] * k)  # h, ..., length
    inner[..., -1] = length
    return np.concatenate([np.zeros(length.shape + (1,)), inner], axis=-1)


def _segment_edges(lo: np.ndarray, hi: np.ndarray, h: np.ndarray, grade_lo: bool,
                   grade_hi: bool, panels: int) -> np.ndarray:
    """Edges (..., P + 1) of a segment [lo, hi] graded towards the ends that are kinks."""
    length = np.maximum(hi - lo, 0.0)
    if grade_lo and grade_hi:
        half = length / 2
        left = lo[..., None] + _graded(half, h, panels)
        right = hi[..., None] - _graded(half, h, panels)[..., ::-1]
        return np.concatenate([left, right[..., 1:]], axis=-1)
    if grade_lo:
        return lo[..., None] + _graded(length, h, panels)
    return hi[..., None] - _graded(length, h, panels)[..., ::-1]


def line_rule(breaks: np.ndarray, h: np.ndarray, *, n: int, panels: int, zmax: float = Z_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (..., N) for integrating g(z) phi(z) over [-zmax, zmax].

    ``breaks`` (..., m) are the kinks (any order; clipped to the range); panels are graded
    towards each of them with first panel ``h`` (...). The weights include the N(0, 1) density.
    """
    breaks = np.clip(np.sort(breaks, axis=-1), -zmax, zmax)
    shape = breaks.shape[:-1]
    m = breaks.shape[-1]
    lo_all = np.full(shape, -zmax)
    hi_all = np.full(shape, zmax)
    pieces = [_segment_edges(lo_all, breaks[..., 0], h, False, True, panels)]
    for j in range(m - 1):
        pieces.append(_segment_edges(breaks[..., j], breaks[..., j + 1], h, True, True, panels))
    pieces.append(_segment_edges(breaks[..., -1], hi_all, h, True, False, panels))
    t, w = _legendre(n)
    nodes, weights = [], []
    for edges in pieces:
        a, b = edges[..., :-1, None], edges[..., 1:, None]
        x = a + (b - a) * t  # (..., P, n)
        nodes.append(x.reshape(shape + (-1,)))
        weights.append(((b - a) * w).reshape(shape + (-1,)))
    z = np.concatenate(nodes, axis=-1)
    wz = np.concatenate(weights, axis=-1) * np.exp(-0.5 * z * z) * _INV_SQRT_2PI
    return z, wz


def _kink_array(kinks: Sequence[float]) -> np.ndarray:
    k = np.asarray(sorted(float(v) for v in kinks), dtype=float)
    return k if k.size else np.zeros(1)


def expect(f: Callable[[np.ndarray], np.ndarray], q, *, kinks: Sequence[float] = (0.0,),
           scale: float = 1.0, n: int = NODES) -> np.ndarray:
    """E[f(sqrt(q) Z)] for Z ~ N(0, 1), vectorised over ``q`` (>= 0).

    Args:
        f: a numpy function, evaluated on arrays of nodes.
        q: variance(s).
        kinks: points where ``f`` (or a derivative) jumps, or where it changes fastest;
            the integral is split there.
        scale: the length scale of ``f``'s features near the kinks (1 for every registered
            activation; ``1 / beta`` for softplus); sets how fine the first panels are.
    Returns:
        An array of the shape of ``q`` (a float for scalar ``q``).
    """
    q = np.asarray(q, dtype=float)
    # q = 0 gives the limit q -> 0+ (one-sided values at a kink), not f(0)
    s = np.maximum(np.sqrt(q), 1e-150)
    k = _kink_array(kinks)
    with np.errstate(divide="ignore", invalid="ignore"):
        breaks = np.where(s[..., None] > 0, k / s[..., None], np.sign(k) * np.inf)
        breaks = np.where(np.isnan(breaks), 0.0, breaks)
        h = np.minimum(_H_MAX, _H_ACT * scale / np.where(s > 0, s, 1e-300))
    out = np.empty(q.shape)
    flat_q, flat_out = s.reshape(-1), out.reshape(-1)
    flat_b, flat_h = breaks.reshape(-1, k.size), h.reshape(-1)
    per = 2 * (k.size + 1) * (PANELS + 2) * n
    step = max(1, _CHUNK // per)
    for i in range(0, flat_q.size, step):
        sl = slice(i, i + step)
        z, w = line_rule(flat_b[sl], flat_h[sl], n=n, panels=PANELS)
        flat_out[sl] = np.sum(w * f(flat_q[sl, None] * z), axis=-1)
    return out if out.ndim else float(out)


def expect2(h: Callable[[np.ndarray, np.ndarray], np.ndarray], q_a, q_b, c, *,
            kinks_u: Sequence[float] = (0.0,), kinks_v: Sequence[float] = (0.0,),
            scale: float = 1.0, n: int = NODES_2D) -> np.ndarray:
    """E[h(U, V)] for (U, V) Gaussian with variances q_a, q_b and correlation c.

    Vectorised over ``q_a``, ``q_b``, ``c`` (broadcast). ``kinks_u`` / ``kinks_v`` are the
    kinks of ``h`` in ``U`` and in ``V``; ``scale`` as in :func:`expect`. Negative ``c`` is
    handled by flipping ``V``.
    """
    q_a, q_b, c = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (q_a, q_b, c)))
    ku, kv = _kink_array(kinks_u), _kink_array(kinks_v)
    out = np.empty(c.shape)
    flat = [v.reshape(-1) for v in (q_a, q_b, c)]
    flat_out = out.reshape(-1)
    neg = flat[2] < 0
    for sign, mask in ((1.0, ~neg), (-1.0, neg)):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        hh = h if sign > 0 else (lambda u, v: h(u, -v))
        kvs = kv if sign > 0 else -kv[::-1]
        per = 4 * (ku.size + kv.size + 1) ** 2 * (PANELS_2D + 2) ** 2 * n * n
        step = max(1, _CHUNK // per)
        for i in range(0, idx.size, step):
            j = idx[i:i + step]
            flat_out[j] = _expect2_pos(hh, flat[0][j], flat[1][j], np.abs(flat[2][j]),
                                       ku, kvs, scale, n)
    return out if out.ndim else float(out)


def _expect2_pos(h, q_a, q_b, c, ku, kv, scale, n):
    """expect2 for c >= 0 on flat arrays (E,)."""
    c = np.minimum(c, 1.0)
    a = np.sqrt((1.0 + c) / 2.0)  # >= 1/sqrt(2)
    b = np.sqrt((1.0 - c) / 2.0)
    sa, sb = np.maximum(np.sqrt(q_a), 1e-150), np.maximum(np.sqrt(q_b), 1e-150)
    tiny = 1e-300
    s = np.maximum(np.maximum(sa, sb), tiny) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        ka = ku[None, :] / np.maximum(sa, tiny)[:, None]  # kinks of U in units of sqrt(q_a)
        kb = kv[None, :] / np.maximum(sb, tiny)[:, None]
        # Outer variable Y: the U-kink line and the V-kink line meet at Y = (ka - kb) / (2b).
        num = ka[:, :, None] - kb[:, None, :]
        cross = np.where(num == 0, 0.0, num / (2 * b[:, None, None]))
        cross = cross.reshape(len(c), -1)
        h_out = np.minimum(_H_MAX, _H_ACT / np.maximum(s * b, tiny))
    y, wy = line_rule(cross, h_out, n=n, panels=PANELS_2D)  # (E, M)
    # Inner variable X for every outer node: kinks at X = (ka - bY)/a and X = (kb + bY)/a.
    by = b[:, None] * y  # (E, M)
    xb = np.concatenate([(ka[:, None, :] - by[..., None]) / a[:, None, None],
                         (kb[:, None, :] + by[..., None]) / a[:, None, None]], axis=-1)
    h_in = np.broadcast_to(np.minimum(_H_MAX, _H_ACT / (s * a))[:, None], y.shape)
    x, wx = line_rule(xb, h_in, n=n, panels=PANELS_2D)  # (E, M, N)
    ax = a[:, None, None] * x
    u = sa[:, None, None] * (ax + by[..., None])
    v = sb[:, None, None] * (ax - by[..., None])
    inner = np.sum(wx * h(u, v), axis=-1)  # (E, M)
    return np.sum(wy * inner, axis=-1)


def expect_pair(f, g, q_a, q_b, c, *, kinks_f: Sequence[float] = (0.0,),
                kinks_g: Sequence[float] = (0.0,), scale: float = 1.0,
                n: int = NODES_2D) -> np.ndarray:
    """E[f(U) g(V)] for (U, V) Gaussian with variances q_a, q_b and correlation c."""
    return expect2(lambda u, v: f(u) * g(v), q_a, q_b, c, kinks_u=kinks_f, kinks_v=kinks_g,
                   scale=scale, n=n)


def expect_gap(f, q, c, *, kinks: Sequence[float] = (0.0,), scale: float = 1.0,
               n: int = NODES_2D) -> np.ndarray:
    """E[(f(U) - f(V))^2] / 2 for U, V of equal variance q and correlation c.

    Equals E[f(U)^2] - E[f(U) f(V)], but is computed from the difference itself, so its
    relative accuracy does not degrade as c -> 1 (where the two terms nearly cancel).
    """
    return expect2(lambda u, v: 0.5 * (f(u) - f(v)) ** 2, q, q, c, kinks_u=kinks, kinks_v=kinks,
                   scale=scale, n=n)
