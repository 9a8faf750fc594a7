"""User callables as activations: numpy evaluation, derivatives, ReLU-like detection.

torch is imported lazily, inside the functions that need it (``scalelab.theory`` imports no
torch at module level).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_PROBE = np.array([-3.0, -1.3, -0.4, -0.05, 0.0, 0.07, 0.5, 1.1, 2.7])


def _torch_eval(fn: Callable, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.asarray(fn(torch.as_tensor(x, dtype=torch.float64)).numpy(), dtype=float)


def numpy_fn(fn: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """A function of numpy arrays from ``fn``, which may be written for numpy or for torch."""
    try:
        y = fn(_PROBE.copy())
        ok = isinstance(y, np.ndarray) and y.shape == _PROBE.shape
    except Exception:  # a torch-only function (e.g. torch.tanh) raises on arrays
        ok = False
    if ok:
        return lambda x: np.asarray(fn(np.asarray(x, dtype=float)), dtype=float)
    try:
        y = _torch_eval(fn, _PROBE)
    except Exception as e:
        raise ValueError(f"act: the callable {fn!r} must map a numpy array or a torch tensor "
                         f"elementwise ({type(e).__name__}: {e})") from None
    if y.shape != _PROBE.shape:
        raise ValueError(f"act: the callable {fn!r} is not elementwise (shape {y.shape})")
    return lambda x: _torch_eval(fn, np.asarray(x, dtype=float))


def piecewise_linear_slopes(f: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float] | None:
    """(l, b) if f(x) = l x for x > 0 and b x for x < 0 on probe points; else None."""
    x = np.array([0.013, 0.31, 1.0, 2.9, 17.0])
    pos, neg, zero = f(x), f(-x), f(np.zeros(1))
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))) or abs(zero[0]) > 1e-14:
        return None
    right, left = pos[2], -neg[2]
    if np.allclose(pos, right * x, rtol=1e-12, atol=1e-14) and \
            np.allclose(neg, -left * x, rtol=1e-12, atol=1e-14):
        return float(right), float(left)
    return None


def _finite_differences(f):
    def d1(x):
        h = 1e-5 * (1.0 + np.abs(x))
        return (f(x + h) - f(x - h)) / (2 * h)

    def d2(x):
        h = 1e-4 * (1.0 + np.abs(x))
        return (f(x + h) - 2 * f(x) + f(x - h)) / (h * h)

    return d1, d2


def _autodiff(fn):
    import torch

    def grads(x, order):
        t = torch.as_tensor(np.asarray(x, dtype=float), dtype=torch.float64).requires_grad_(True)
        y = fn(t)
        (g,) = torch.autograd.grad(y.sum(), t, create_graph=order > 1)
        if order == 1:
            return g.detach().numpy()
        if not g.requires_grad:  # linear pieces: phi'' = 0
            return np.zeros(t.shape)
        (h,) = torch.autograd.grad(g.sum(), t, allow_unused=True)
        return np.zeros(t.shape) if h is None else h.detach().numpy()

    return (lambda x: grads(x, 1)), (lambda x: grads(x, 2))


def torch_or_fd_derivatives(fn: Callable, f: Callable) -> tuple[Callable, Callable, str]:
    """(phi', phi'', how): torch autodiff when ``fn`` takes tensors, else finite differences."""
    try:
        d1, d2 = _autodiff(fn)
        g = d1(_PROBE)
        d2(_PROBE)
        if g.shape == _PROBE.shape and np.all(np.isfinite(g)):
            return d1, d2, "autodiff (torch)"
    except Exception:  # not a torch-differentiable function: fall back below
        pass
    d1, d2 = _finite_differences(f)
    return d1, d2, "finite differences"
