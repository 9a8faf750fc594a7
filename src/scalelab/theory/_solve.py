"""Vectorised root finding: many brackets refined at once (Illinois regula falsi)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def illinois(func: Callable[[np.ndarray, np.ndarray], np.ndarray], lo: np.ndarray,
             hi: np.ndarray, flo: np.ndarray, fhi: np.ndarray, *, rtol: float = 4e-16,
             maxiter: int = 200) -> np.ndarray:
    """Roots of ``func`` in the brackets [lo, hi] (``flo``, ``fhi`` of opposite signs).

    ``func(x, idx)`` evaluates the ``idx``-th functions at ``x`` (both 1-D arrays), so only
    unfinished brackets are evaluated. Stops at ``hi - lo <= rtol * |hi|`` or an exact zero.
    Illinois' modification keeps regula falsi superlinear; every fourth step bisects, so the
    bracket at least halves regularly.
    """
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    flo, fhi = np.array(flo, dtype=float), np.array(fhi, dtype=float)
    side = np.zeros(lo.shape, dtype=int)  # which end moved last: -1 lo, +1 hi
    x = np.where(np.abs(flo) < np.abs(fhi), lo, hi)
    for it in range(maxiter):
        active = (hi - lo > rtol * np.maximum(np.abs(hi), np.abs(lo))) & (flo != 0) & (fhi != 0)
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        a, h, fl, fh = lo[idx], hi[idx], flo[idx], fhi[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = h - fh * (h - a) / (fh - fl)
        mid = 0.5 * (a + h)
        bad = ~np.isfinite(xs) | (xs <= a) | (xs >= h) | (it % 4 == 3)
        xn = np.where(bad, mid, xs)
        fx = func(xn, idx)
        x[idx] = xn
        same_as_lo = np.sign(fx) == np.sign(fl)
        zero = fx == 0
        # move lo where f(x) has lo's sign, else hi; halve the stale end's value (Illinois)
        new_lo = same_as_lo & ~zero
        new_hi = ~same_as_lo & ~zero
        fh = np.where(new_lo & (side[idx] == -1), fh / 2, fh)
        fl = np.where(new_hi & (side[idx] == 1), fl / 2, fl)
        lo[idx] = np.where(new_lo, xn, a)
        flo[idx] = np.where(new_lo, fx, fl)
        hi[idx] = np.where(new_hi, xn, h)
        fhi[idx] = np.where(new_hi, fx, fh)
        side[idx] = np.where(new_lo, -1, np.where(new_hi, 1, side[idx]))
        flo[idx] = np.where(zero, 0.0, flo[idx])
        lo[idx] = np.where(zero, xn, lo[idx])
        hi[idx] = np.where(zero, xn, hi[idx])
    return np.where(flo == 0, lo, np.where(fhi == 0, hi, x))


def geometric_bracket(g: Callable[[np.ndarray, np.ndarray], np.ndarray], start: np.ndarray,
                      g_start: np.ndarray, ratio: float, steps: int,
                      stop: Callable[[np.ndarray], np.ndarray]):
    """Walk ``x = start * ratio**k`` until ``stop(g(x))`` holds, for each element.

    Returns ``(prev, cur, g_prev, g_cur, found)``: the last two points visited and ``g``
    there; ``found`` is False where ``steps`` steps were not enough.
    """
    prev, g_prev = start.copy(), g_start.copy()
    cur, g_cur = start.copy(), g_start.copy()
    found = np.zeros(start.shape, dtype=bool)
    pending = np.ones(start.shape, dtype=bool)
    for _ in range(steps):
        idx = np.flatnonzero(pending)
        if idx.size == 0:
            break
        x = cur[idx] * ratio
        gx = g(x, idx)
        prev[idx], g_prev[idx] = cur[idx], g_cur[idx]
        cur[idx], g_cur[idx] = x, gx
        hit = stop(gx)
        found[idx[hit]] = True
        pending[idx[hit]] = False
    return prev, cur, g_prev, g_cur, found
