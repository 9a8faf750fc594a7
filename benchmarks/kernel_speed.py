"""Infinite-width kernels: ``ntk_kernel`` on 500 inputs at depth 100, and the empirical NTK of a
2,048-wide net on 200 inputs (time and peak memory).

- ``ntk_kernel`` (and ``nngp_kernel``) for relu and erf on 500 MNIST digits (784 features) at
  depth 100; median of ``--reps`` runs, in this process (the pair loop uses up to 2 threads).
- Optionally the same kernels from neural-tangents in another interpreter (``--peer
  /path/to/python`` with jax + neural-tangents installed; this project's venv does not carry
  them): its time (jit compile and a second, compiled call) and the largest relative
  difference to scalelab's kernel.
- ``empirical_ntk`` of ``NTKMLP(784, 2048, 3 layers, 1 output)`` (5.8M parameters, float32)
  on 200 digits with the default memory bound, in a subprocess so that its peak RSS is its own.

Prints a table; writes benchmarks/results/kernel_speed.json.

    python benchmarks/kernel_speed.py [--reps 3] [--peer /tmp/nt/bin/python] [--skip-empirical]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scalelab.experiments.ntk_setup import digit_split
from scalelab.theory import nngp_kernel, ntk_kernel

SW, SB, DEPTH, N = 1.4, 0.1, 100, 500

_PEER = """
import sys, time, numpy as np, jax
jax.config.update("jax_enable_x64", True)
from neural_tangents import stax
X = np.load(sys.argv[1]); out = {}
for act, layer in (("relu", stax.Relu), ("erf", stax.Erf)):
    layers = [stax.Dense(1, W_std=%(sw)r, b_std=%(sb)r, parameterization="ntk")]
    for _ in range(%(depth)d - 1):
        layers += [layer(), stax.Dense(1, W_std=%(sw)r, b_std=%(sb)r, parameterization="ntk")]
    fn = jax.jit(stax.serial(*layers)[2], static_argnames=("get",))
    t0 = time.perf_counter(); k = fn(X, X, get="ntk").block_until_ready()
    t1 = time.perf_counter(); k = fn(X, X, get="ntk").block_until_ready()
    t2 = time.perf_counter()
    out[act] = (t1 - t0, t2 - t1); np.save(sys.argv[1] + f".{act}.npy", np.asarray(k))
print(repr(out), jax.__version__)
"""

_EMPIRICAL = """
import resource, time, torch
from scalelab.diagnostics import empirical_ntk
from scalelab.experiments.ntk_setup import digit_split
from scalelab.nn import NTKMLP
torch.manual_seed(0)
x = torch.from_numpy(digit_split(200, 0, 0).x).float()
net = NTKMLP(784, 2048, 3, 1, "relu", sigma_w=2 ** 0.5)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
K = empirical_ntk(net, x)
t, c = time.perf_counter() - t0, time.process_time() - c0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(t, c, base / 2**20, peak / 2**20, sum(p.numel() for p in net.parameters()), K.shape[0])
"""


def _median_time(fn, reps: int) -> tuple[float, float]:
    """Median wall and CPU seconds (CPU: all threads; on a loaded machine the better guide
    to what an idle one would take)."""
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer", default=None, help="python with jax + neural-tangents")
    ap.add_argument("--skip-empirical", action="store_true")
    args = ap.parse_args()
    X = digit_split(N, 0, 0).x
    rows = []
    for act in ("relu", "erf"):
        ours = ntk_kernel(act, SW, SB, DEPTH, X)
        wall, cpu = _median_time(lambda a=act: ntk_kernel(a, SW, SB, DEPTH, X), args.reps)
        rows.append({"kernel": f"ntk_kernel {act}", "n": N, "depth": DEPTH, "seconds": wall,
                     "cpu_seconds": cpu, "_value": ours})
        wall, cpu = _median_time(lambda a=act: nngp_kernel(a, SW, SB, DEPTH, X), args.reps)
        rows.append({"kernel": f"nngp_kernel {act}", "n": N, "depth": DEPTH, "seconds": wall,
                     "cpu_seconds": cpu})
    if args.peer:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "x.npy")
            np.save(path, X)
            code = _PEER % {"sw": SW, "sb": SB, "depth": DEPTH}
            res = subprocess.run([args.peer, "-c", code, path], capture_output=True, text=True,
                                 check=True)
            times = ast.literal_eval(res.stdout.strip().splitlines()[-1].rsplit(" ", 1)[0])
            for act in ("relu", "erf"):
                theirs = np.load(f"{path}.{act}.npy")
                ours = next(r["_value"] for r in rows if r["kernel"] == f"ntk_kernel {act}")
                rows.append({"kernel": f"neural-tangents ntk {act} (compiled call)", "n": N,
                             "depth": DEPTH, "seconds": times[act][1],
                             "compile_and_first_call_s": times[act][0],
                             "max_rel_diff_to_scalelab": float(
                                 np.abs(theirs - ours).max() / np.abs(ours).max())})
    if not args.skip_empirical:
        res = subprocess.run([sys.executable, "-c", _EMPIRICAL], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        t, c, base, peak, params, n = res.stdout.split()
        rows.append({"kernel": "empirical_ntk NTKMLP(784, 2048, 3 layers)", "n": int(n),
                     "parameters": int(params), "seconds": float(t), "cpu_seconds": float(c),
                     "rss_before_gib": float(base), "peak_rss_gib": float(peak)})
    for r in rows:
        r.pop("_value", None)
        extra = "".join(f"  {k}={v:.3g}" if isinstance(v, float) else f"  {k}={v}"
                        for k, v in r.items() if k not in ("kernel", "seconds", "n", "depth"))
        print(f"{r['kernel']:<48} {r['seconds']:8.3f} s{extra}", flush=True)
    doc = {"benchmark": "kernel_speed", "machine": f"{platform.machine()} {platform.system()}, "
           f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}", "rows": rows}
    out = Path(__file__).parent / "results" / "kernel_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
