"""EOC curves: scalelab's vectorised quadrature vs a straightforward scipy.integrate.quad solver.

Same work for both: the EOC point (sigma_w, q*) at N values of sigma_b in [0.05, 2] for each
activation, to ~1e-10. The baseline solves q - E[phi^2]/E[phi'^2] = sigma_b^2 with
``scipy.optimize.brentq``, each expectation an adaptive ``scipy.integrate.quad`` split at 0
(epsrel 1e-11), one sigma_b after another. Prints a table; writes benchmarks/results/eoc_speed.json.

    python benchmarks/eoc_speed.py [--n 200] [--acts tanh,elu,silu,gelu,erf,selu]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from scipy import integrate, optimize

from scalelab.theory import eoc_curve, get_activation


def _quad_expect(f, q: float) -> float:
    s = math.sqrt(q)

    def g(z):
        return f(s * z) * math.exp(-0.5 * z * z)

    kw = {"epsabs": 0.0, "epsrel": 1e-11, "limit": 200}
    total = integrate.quad(g, -np.inf, 0.0, **kw)[0] + integrate.quad(g, 0.0, np.inf, **kw)[0]
    return total / math.sqrt(2 * math.pi)


def quad_eoc_point(act, sigma_b: float) -> tuple[float, float]:
    """(sigma_w, q*) by brentq on quad-based moments: the straightforward implementation."""
    fn = lambda x: float(act.fn(np.array([x]))[0]) ** 2  # noqa: E731
    d1 = lambda x: float(act.d1(np.array([x]))[0]) ** 2  # noqa: E731

    def F(q):
        return q - _quad_expect(fn, q) / _quad_expect(d1, q) - sigma_b**2

    lo, hi = 1e-10, 1.0
    while F(hi) < 0:
        hi *= 4.0
    q = optimize.brentq(F, lo, hi, xtol=1e-14, rtol=1e-13)
    return 1.0 / math.sqrt(_quad_expect(d1, q)), q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="sigma_b values per activation")
    ap.add_argument("--acts", default="tanh,elu,silu,gelu,erf,selu")
    args = ap.parse_args()
    sbs = np.linspace(0.05, 2.0, args.n)
    rows = []
    for name in args.acts.split(","):
        act = get_activation(name)
        eoc_curve(act, sbs[:3])  # warm-up (caches of the quadrature rule)
        t0 = time.perf_counter()
        pts = eoc_curve(act, sbs)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = [quad_eoc_point(act.numeric(), sb) for sb in sbs]
        t_quad = time.perf_counter() - t0
        err_w = max(abs(p.sigma_w - r[0]) for p, r in zip(pts, ref, strict=True))
        err_q = max(abs(p.q - r[1]) / r[1] for p, r in zip(pts, ref, strict=True))
        rows.append({"activation": name, "n_sigma_b": args.n, "scalelab_s": t_fast,
                     "scipy_quad_s": t_quad, "speedup": t_quad / t_fast,
                     "max_abs_diff_sigma_w": err_w, "max_rel_diff_q": err_q})
        r = rows[-1]
        print(f"{name:<10} scalelab {r['scalelab_s']:7.3f} s   quad {r['scipy_quad_s']:8.2f} s   "
              f"x{r['speedup']:7.0f}   |d sigma_w| <= {err_w:.1e}   |d q|/q <= {err_q:.1e}",
              flush=True)
    doc = {"benchmark": "eoc_speed", "machine": f"{platform.machine()} {platform.system()}, "
           f"{platform.processor() or 'cpu'}", "rows": rows}
    out = Path(__file__).parent / "results" / "eoc_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
