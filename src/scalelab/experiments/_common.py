"""Helpers every reproduction shares: seed lists, spreads over seeds, log-log slopes, sizes.

One convention for all experiments: a module defines ``run(ctx) -> Outcome`` and calls
:func:`scalelab.experiments.register` once with an ``Experiment`` whose ``criterion`` is the
fixed rule that decides ``claim_holds``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .registry import Context

T = TypeVar("T")


def run_cache(committed: str, fallback: str) -> Path:
    """Where a full protocol's per-run cache lives: the repository's committed
    ``benchmarks/results/<committed>`` when scalelab runs from a checkout that has it (so a
    reproduction reads the runs its benchmark already made), else ``<scalelab cache>/<fallback>``."""
    repo = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / committed
    if repo.is_dir():
        return repo
    from ..data.models import cache_dir

    return cache_dir() / fallback


def seeds_for(ctx: Context, n: int) -> list[int]:
    """``n`` consecutive seeds starting at the run's ``--seed``."""
    return [ctx.seed + i for i in range(int(n))]


def sized(ctx: Context, quick: T, full: T) -> T:
    """``quick`` in ``--quick`` mode, ``full`` otherwise."""
    return quick if ctx.quick else full


def spread(values: Sequence[float], seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Mean, sample sd (``None`` for one value), min, max and the values of a judged quantity.

    ``seeds`` (same length) labels the values in the record's ``per_seed``.
    """
    v = np.asarray([float(x) for x in values], dtype=float)
    if v.size == 0:
        raise ValueError("spread needs at least one value")
    rec: dict[str, Any] = {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }
    rec["per_seed"] = ({str(s): float(x) for s, x in zip(seeds, v, strict=True)}
                       if seeds is not None else [float(x) for x in v])
    return rec


def _positive_logs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """log x and log y over the points where both are > 0 and finite."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (xa > 0) & (ya > 0) & np.isfinite(xa) & np.isfinite(ya)
    return np.log(xa[ok]), np.log(ya[ok])


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x over the points where both are > 0 and
    finite (``nan`` with fewer than two such points or a single x)."""
    lx, ly = _positive_logs(x, y)
    if lx.size < 2 or np.ptp(lx) == 0:
        return math.nan
    return float(np.polyfit(lx, ly, 1)[0])


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Least-squares slope, intercept and the slope's 95% confidence half-width (Student t
    with n - 2 degrees of freedom; ``nan`` half-width with fewer than 3 points, all ``nan``
    with fewer than 2)."""
    from scipy import stats

    xa, ya = np.asarray(x, float), np.asarray(y, float)
    if xa.size < 2:
        return {"slope": math.nan, "intercept": math.nan, "ci95": math.nan, "n": int(xa.size)}
    fit = stats.linregress(xa, ya)
    half = float(stats.t.ppf(0.975, xa.size - 2) * fit.stderr) if xa.size > 2 else math.nan
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "ci95": half,
            "n": int(xa.size)}


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """:func:`linear_fit` of log y against log x over the points where both are > 0 and
    finite: the power-law exponent, log prefactor and the exponent's 95% half-width."""
    return linear_fit(*_positive_logs(x, y))
