"""Activation functions for signal propagation: values, derivatives, kinks, Gaussian moments.

``get_activation(name, **params)`` returns an :class:`Activation`; ``as_activation`` also
takes an :class:`Activation` or any user callable (derivatives then come from torch autodiff
when the callable accepts tensors, else from central finite differences — the object's
``derivatives`` field says which). The Gaussian moments the maps need (E[phi^2],
E[phi'^2], E[phi(U) phi(V)], ...) use the closed forms of :mod:`.closed_forms` where they
exist (ReLU-like and erf) and the quadrature of :mod:`.gaussian` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import special

from . import gaussian
from .closed_forms import Erf, PiecewiseLinear

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_A = 0.044715

Array = np.ndarray


@dataclass(frozen=True, eq=False)
class Activation:
    """An elementwise activation with first and second derivatives (numpy functions).

    ``kinks`` are where phi or a derivative jumps (or where phi changes fastest): the
    quadrature splits there. ``slopes = (l, b)`` marks a piecewise-linear activation through
    the origin (slope l for x > 0, b for x < 0): the "ReLU-like" case of arXiv 1902.06853,
    whose EOC is a single point. ``kernel`` holds closed-form Gaussian moments, if any.
    """

    name: str
    fn: Callable[[Array], Array]
    d1: Callable[[Array], Array]
    d2: Callable[[Array], Array]
    kinks: tuple[float, ...] = (0.0,)
    params: tuple[tuple[str, float], ...] = ()
    slopes: tuple[float, float] | None = None
    kernel: object | None = None
    scale: float = 1.0
    derivatives: str = "analytic"

    @property
    def relu_like(self) -> bool:
        """Piecewise linear through the origin (relu, leaky_relu, abs, linear)."""
        return self.slopes is not None

    def __call__(self, x):
        return self.fn(np.asarray(x, dtype=float))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"Activation({self.name!r}{args})"

    def numeric(self) -> Activation:
        """The same activation with every moment computed by quadrature (no closed forms)."""
        return replace(self, kernel=None)

    def derivative_jump(self, x: float = 0.0) -> float:
        """phi'(x+) - phi'(x-): non-zero where the derivative jumps (ReLU, SELU, ...)."""
        eps = 1e-9 * max(1.0, abs(x))
        return float(self.d1(np.array([x + eps]))[0] - self.d1(np.array([x - eps]))[0])

    @property
    def smooth_derivative(self) -> bool:
        """True when phi' is continuous (so E[phi''^2] is finite)."""
        return all(abs(self.derivative_jump(k)) < 1e-6 for k in self.kinks)

    # --- Gaussian moments, Z ~ N(0, 1), (U, V) of variances q and correlation c -------------
    def _e(self, f, q):
        return gaussian.expect(f, q, kinks=self.kinks, scale=self.scale)

    def mean_sq(self, q):
        """E[phi(sqrt(q) Z)^2]."""
        if self.kernel is not None:
            return self.kernel.mean_sq(q)
        return self._e(lambda x: self.fn(x) ** 2, q)

    def mean_dsq(self, q):
        """E[phi'(sqrt(q) Z)^2]."""
        if self.kernel is not None:
            return self.kernel.mean_dsq(q)
        return self._e(lambda x: self.d1(x) ** 2, q)

    def mean_d2sq(self, q):
        """E[phi''(sqrt(q) Z)^2] (infinite when phi' jumps)."""
        if self.kernel is not None:
            return self.kernel.mean_d2sq(q)
        if not self.smooth_derivative:
            return np.full(np.shape(q), math.inf) if np.ndim(q) else math.inf
        return self._e(lambda x: self.d2(x) ** 2, q)

    def dmean_sq(self, q):
        """d/dq E[phi(sqrt(q) Z)^2] = E[phi phi'(sqrt(q) Z) sqrt(q) Z] / q (no phi'' needed)."""
        if self.kernel is not None:
            return self.kernel.dmean_sq(q)
        q = np.asarray(q, dtype=float)
        safe = np.where(q > 0, q, 1.0)
        val = self._e(lambda x: self.fn(x) * self.d1(x) * x, safe) / safe
        if np.any(q == 0):  # limit q -> 0: mean of phi'(0+-)^2, plus phi(0) phi''(0)
            e = np.array([1e-9, -1e-9])
            at0 = np.mean(self.d1(e) ** 2) + float(self.fn(np.zeros(1))[0]) * np.mean(self.d2(e))
            val = np.where(q == 0, at0, val)
        return val if np.ndim(val) else float(val)

    def pair(self, q_a, q_b, c):
        """E[phi(U) phi(V)] for variances q_a, q_b and correlation c."""
        if self.kernel is not None:
            return self.kernel.pair(q_a, q_b, c)
        return gaussian.expect_pair(self.fn, self.fn, q_a, q_b, c, kinks_f=self.kinks,
                                    kinks_g=self.kinks, scale=self.scale)

    def dpair(self, q_a, q_b, c):
        """E[phi'(U) phi'(V)] for variances q_a, q_b and correlation c."""
        if self.kernel is not None:
            return self.kernel.dpair(q_a, q_b, c)
        return gaussian.expect_pair(self.d1, self.d1, q_a, q_b, c, kinks_f=self.kinks,
                                    kinks_g=self.kinks, scale=self.scale)

    def pair_moments(self, q_a, q_b, c):
        """``(E[phi(U) phi(V)], E[phi'(U) phi'(V)])``: :meth:`pair` and :meth:`dpair` at once
        (closed forms share their angle; quadrature runs twice)."""
        fused = getattr(self.kernel, "pair_moments", None)
        if fused is not None:
            return fused(q_a, q_b, c)
        return self.pair(q_a, q_b, c), self.dpair(q_a, q_b, c)

    def gap(self, q, c):
        """E[phi(U)^2] - E[phi(U) phi(V)] for equal variances q, accurate as c -> 1."""
        if self.kernel is not None:
            return self.kernel.gap(q, c)
        q, c = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(c, dtype=float))
        out = gaussian.expect_gap(self.fn, q, np.maximum(c, 0.0), kinks=self.kinks,
                                  scale=self.scale)
        if np.any(c < 0):
            out = np.where(c < 0, self.mean_sq(q) - self.pair(q, q, c), out)
        return out


# --- the registry ----------------------------------------------------------------------------
def _pl(name: str, right: float, left: float, params=()) -> Activation:
    """phi(x) = right * x for x > 0, left * x for x < 0."""
    return Activation(
        name=name,
        fn=lambda x: np.where(x > 0, right * x, left * x),
        d1=lambda x: np.where(x > 0, right, left) + 0.0 * x,
        d2=lambda x: np.zeros_like(x),
        params=tuple(params), slopes=(right, left), kernel=PiecewiseLinear(right, left),
    )


def _elu(name: str, alpha: float, lam: float = 1.0, params=()) -> Activation:
    def fn(x):
        return lam * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))

    def d1(x):
        return lam * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))

    def d2(x):
        return lam * np.where(x > 0, 0.0, alpha * np.exp(np.minimum(x, 0.0)))

    return Activation(name, fn, d1, d2, params=tuple(params))


def _tanh() -> Activation:
    def d1(x):
        return 1.0 - np.tanh(x) ** 2

    return Activation("tanh", np.tanh, d1, lambda x: -2.0 * np.tanh(x) * d1(x))


def _sigmoid() -> Activation:
    def d1(x):
        s = special.expit(x)
        return s * (1 - s)

    def d2(x):
        s = special.expit(x)
        return s * (1 - s) * (1 - 2 * s)

    return Activation("sigmoid", special.expit, d1, d2)


def _silu(name: str) -> Activation:
    def d1(x):
        s = special.expit(x)
        return s * (1 + x * (1 - s))

    def d2(x):
        s = special.expit(x)
        return s * (1 - s) * (2 + x * (1 - 2 * s))

    return Activation(name, lambda x: x * special.expit(x), d1, d2)


def _gelu() -> Activation:
    def pdf(x):
        return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    return Activation("gelu", lambda x: x * special.ndtr(x),
                      lambda x: special.ndtr(x) + x * pdf(x), lambda x: pdf(x) * (2 - x * x))


def _gelu_tanh() -> Activation:
    k, a = _SQRT_2_OVER_PI, _GELU_TANH_A

    def parts(x):
        t = np.tanh(k * (x + a * x**3))
        return t, k * (1 + 3 * a * x * x), 6 * k * a * x

    def d1(x):
        t, u1, _ = parts(x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * u1

    def d2(x):
        t, u1, u2 = parts(x)
        sech2 = 1 - t * t
        return sech2 * u1 + 0.5 * x * (-2 * t * sech2 * u1 * u1 + sech2 * u2)

    return Activation("gelu_tanh", lambda x: 0.5 * x * (1 + parts(x)[0]), d1, d2)


def _softplus(beta: float) -> Activation:
    def d2(x):
        s = special.expit(beta * x)
        return beta * s * (1 - s)

    return Activation("softplus", lambda x: np.logaddexp(0.0, beta * x) / beta,
                      lambda x: special.expit(beta * x), d2, params=(("beta", beta),),
                      scale=1.0 / beta)


def _erf() -> Activation:
    def d1(x):
        return 2.0 / math.sqrt(math.pi) * np.exp(-x * x)

    return Activation("erf", special.erf, d1, lambda x: -2.0 * x * d1(x), kernel=Erf())


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _number(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


# name -> (builder, default parameters)
_BUILDERS: dict[str, tuple[Callable[..., Activation], dict[str, float]]] = {
    "relu": (lambda: _pl("relu", 1.0, 0.0), {}),
    "leaky_relu": (lambda slope: _pl("leaky_relu", 1.0, _number("slope", slope),
                                     (("slope", float(slope)),)), {"slope": 0.01}),
    "tanh": (_tanh, {}),
    "elu": (lambda alpha: _elu("elu", _positive("alpha", alpha), 1.0, (("alpha", float(alpha)),)),
            {"alpha": 1.0}),
    "selu": (lambda: _elu("selu", SELU_ALPHA, SELU_SCALE), {}),
    "gelu": (_gelu, {}),
    "gelu_tanh": (_gelu_tanh, {}),
    "silu": (lambda: _silu("silu"), {}),
    "swish": (lambda: _silu("silu"), {}),
    "softplus": (lambda beta: _softplus(_positive("beta", beta)), {"beta": 1.0}),
    "sigmoid": (_sigmoid, {}),
    "erf": (_erf, {}),
    "linear": (lambda: _pl("linear", 1.0, 1.0), {}),
    "abs": (lambda: _pl("abs", 1.0, -1.0), {}),
}

#: Names :func:`get_activation` knows (``swish`` is an alias of ``silu``).
ACTIVATIONS: tuple[str, ...] = tuple(_BUILDERS)


def activation_names() -> str:
    """The registered names for help texts, aliases in brackets after their target.

    Returns:
        ``"relu, leaky_relu, tanh, elu, selu, gelu, gelu_tanh, silu (swish), softplus, ..."``
        (an alias is a name whose activation carries another registered name).
    """
    target = {n: get_activation(n).name for n in ACTIVATIONS}
    aliases = {n: [k for k in ACTIVATIONS if k != n and target[k] == n] for n in ACTIVATIONS}
    return ", ".join(n + (f" ({', '.join(aliases[n])})" if aliases[n] else "")
                     for n in ACTIVATIONS if target[n] == n)


def get_activation(name: str, **params) -> Activation:
    """The registered activation ``name`` with parameters (e.g. ``leaky_relu``'s ``slope``).

    Names: relu, leaky_relu (slope=0.01), tanh, elu (alpha=1.0), selu, gelu (exact erf
    form), gelu_tanh (tanh approximation), silu (alias swish), softplus (beta=1.0),
    sigmoid, erf, linear, abs.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _BUILDERS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    builder, defaults = _BUILDERS[key]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ValueError(f"activation {key!r} got unknown parameter(s) {unknown}; "
                         f"allowed: {allowed}")
    return builder(**{**defaults, **params})


def as_activation(act) -> Activation:
    """Accept a registered name, an :class:`Activation` or a user callable."""
    if isinstance(act, Activation):
        return act
    if isinstance(act, str):
        return get_activation(act)
    if callable(act):
        return from_callable(act)
    raise ValueError(f"act must be an activation name ({', '.join(ACTIVATIONS)}), an "
                     f"Activation or a callable, got {act!r}")


def from_callable(fn: Callable, *, name: str | None = None, kinks=(0.0,),
                  d1: Callable | None = None, d2: Callable | None = None) -> Activation:
    """Wrap a user's elementwise function (numpy or torch) as an :class:`Activation`.

    Derivatives, unless given: torch autodiff (torch imported here, lazily) when ``fn``
    accepts a float64 tensor and is differentiable; otherwise central finite differences
    (step 1e-5 (1 + |x|) for phi', 1e-4 (1 + |x|) for phi'': errors ~1e-10 and ~1e-8). A
    function that is linear on each side of 0 through the origin is recognised as
    ReLU-like and gets the closed forms.
    """
    from ._callable import numpy_fn, piecewise_linear_slopes, torch_or_fd_derivatives

    f = numpy_fn(fn)
    label = name or getattr(fn, "__name__", "custom")
    slopes = piecewise_linear_slopes(f)
    if slopes is not None:
        act = _pl(label, *slopes)
        return replace(act, fn=f)
    how = "given"
    if d1 is None or d2 is None:
        g1, g2, how = torch_or_fd_derivatives(fn, f)
        d1, d2 = d1 or g1, d2 or g2
    return Activation(label, f, numpy_fn(d1), numpy_fn(d2),
                      kinks=tuple(float(k) for k in kinks) or (0.0,), derivatives=how)
