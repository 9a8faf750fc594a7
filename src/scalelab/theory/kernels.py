"""Infinite-width covariance kernels of deep random MLPs and 1/sqrt(L)-scaled ResNets.

Both kernels are built from one Gaussian expectation, evaluated for every pair of inputs at
once: ``E[phi(U) phi(V)]`` with ``(U, V) ~ N(0, [[q_a, s], [s, q_b]])`` (closed forms for
ReLU-like activations and erf, the split quadrature of :mod:`.gaussian` otherwise; the
diagonal uses the 1-D ``E[phi(sqrt(q) Z)^2]``). The neural tangent kernels of
:mod:`.ntk` add the derivative expectation ``E[phi'(U) phi'(V)]``
(:func:`pair_derivative_expectations`) and run the *same* layer recursions, which live here
(:func:`mlp_layers`, :func:`resnet_layers`) so that there is one copy of each.

**MLP (NNGP), exact indexing.** Inputs ``x`` of dimension ``d``; the network is
``y^1 = W^1 x + b^1`` and ``y^l = W^l phi(y^{l-1}) + b^l`` for ``l >= 2``, with
``W^1_ij ~ N(0, sigma_w^2 / d)``, ``W^l_ij ~ N(0, sigma_w^2 / n_{l-1})``,
``b^l_i ~ N(0, sigma_b^2)``. ``nngp_kernel(..., depth=L, X)`` is the covariance of the
pre-activations ``y^L``: ``L`` linear layers, ``phi`` applied ``L - 1`` times. So
``depth=1`` is ``sigma_b^2 + sigma_w^2 X X^T / d``, and the readout of an MLP with ``H``
hidden layers has ``depth = H + 1``. In neural-tangents terms
(``stax.Dense(W_std=sigma_w, b_std=sigma_b)``, standard or NTK parametrisation alike):
``serial(Dense, *[phi, Dense] * (L - 1))``'s ``nngp``.

**ResNet.** ``Y_0 = W_in x`` (``W_in ~ N(0, 1/d)``, no bias) and
``Y_l = Y_{l-1} + (1/sqrt(L)) W_l phi(Y_{l-1})``, ``W_l ~ N(0, 1/n)``, ``l = 1..L``. The
covariance ``Q_l = E[Y_l(x) Y_l(x')]`` per coordinate obeys the recursion
``Q_l = Q_{l-1} + (1/L) E[phi(U) phi(V)]`` (``alpha_l^2 E[...]`` for general branch scales
``alpha_l``, ``scales=``) — the Euler scheme, step ``1/L``, of the
depth-limit ODE ``dQ_t/dt = E[phi(U) phi(V)]``, ``(U, V) ~ N(0, Q_t)``, ``t = l/L`` in [0, 1].
``resnet_kernel(..., depth=L)`` returns ``Q_L``; ``infinite=True`` returns ``Q_1`` of the
ODE (the L -> infinity limit; the Euler error is O(1/L)).

Papers: arXiv 1902.06853 (maps), Lee et al. 2018 (NNGP), arXiv 2302.00453 (width and depth
commute; the ODE), arXiv 2310.01683 (general branch scalings). Notes: docs/kernels.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np

from ..errors import check_int, check_positive
from .activations import Activation, as_activation


def as_inputs(X) -> np.ndarray:
    """``X`` as a float array (n, d): one input per row (a 1-D array is one input)."""
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"X must be an array of numbers (n inputs x d features), got "
                         f"{type(X).__name__}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"X must be a 2-D array (n inputs x d features) with n, d >= 1, got "
                         f"shape {np.shape(X)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("X must contain only finite numbers, got nan or inf")
    return arr




#: Pairs per thread below which one thread is faster (see :func:`_pairs`).
PARALLEL_MIN = 20_000


@lru_cache(maxsize=8)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the strict upper triangle of an (n, n) matrix (cached: every layer needs them)."""
    iu, ju = np.triu_indices(n, 1)
    iu.setflags(write=False)
    ju.setflags(write=False)
    return iu, ju


def _workers(pairs: int) -> int:
    """Threads for ``pairs`` bivariate expectations: one per ``PARALLEL_MIN`` pairs, at most
    the CPUs this process may use (and 4). numpy releases the GIL inside its loops."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4, pairs // PARALLEL_MIN))


def _pairs(act, Q: np.ndarray, derivative: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``E[phi(U_a) phi(U_b)]`` and (if ``derivative``) ``E[phi'(U_a) phi'(U_b)]``, ``U ~ N(0, Q)``.

    One pass over the pairs: the variances and correlations are formed once for both (and
    closed forms share their angle). Large matrices are split over a few threads; every
    value is computed elementwise, so the split changes no bit.
    """
    a: Activation = as_activation(act)
    Q = np.asarray(Q, dtype=float)
    n = Q.shape[0]
    diag = np.maximum(np.diag(Q), 0.0)
    out = np.empty((n, n))
    dout = np.empty((n, n)) if derivative else None
    out[np.diag_indices(n)] = a.mean_sq(diag)
    if derivative:
        dout[np.diag_indices(n)] = a.mean_dsq(diag)
    iu, ju = _upper(n)
    if not iu.size:
        return out, dout

    root = np.sqrt(diag)
    inv_root = np.divide(1.0, root, out=np.zeros_like(root), where=root > 0)  # 0: c = 0

    def part(sl: slice):
        i, j = iu[sl], ju[sl]
        qa, qb = diag[i], diag[j]
        c = Q[i, j] * inv_root[i]
        c *= inv_root[j]
        np.clip(c, -1.0, 1.0, out=c)
        return a.pair_moments(qa, qb, c) if derivative else (a.pair(qa, qb, c), None)

    k = _workers(iu.size)
    if k == 1:
        parts = [part(slice(None))]
    else:
        from concurrent.futures import ThreadPoolExecutor

        edges = np.linspace(0, iu.size, k + 1).astype(int)
        with ThreadPoolExecutor(k) as pool:
            parts = list(pool.map(part, [slice(lo, hi) for lo, hi in zip(edges[:-1], edges[1:],
                                                                          strict=True)]))
    for j, target in enumerate((out, dout)):
        if target is not None:
            vals = np.concatenate([p[j] for p in parts])
            target[iu, ju] = vals
            target[ju, iu] = vals
    return out, dout


def pair_expectations(act, Q: np.ndarray) -> np.ndarray:
    """The matrix ``E[phi(U_a) phi(U_b)]`` for ``U ~ N(0, Q)``, all pairs at once.

    Args:
        act: activation name, :class:`~scalelab.theory.Activation` or callable.
        Q: a covariance matrix (n, n).
    Returns:
        An (n, n) symmetric matrix; the diagonal is ``E[phi(sqrt(Q_aa) Z)^2]``.
    Correlations are clipped to [-1, 1]; a pair with a zero variance gets correlation 0
    (the expectation does not depend on it then).
    """
    return _pairs(act, Q, False)[0]


def pair_derivative_expectations(act, Q: np.ndarray) -> np.ndarray:
    """The matrix ``E[phi'(U_a) phi'(U_b)]`` for ``U ~ N(0, Q)``, all pairs at once.

    Same conventions as :func:`pair_expectations`; the diagonal is ``E[phi'(sqrt(Q_aa) Z)^2]``.
    Closed forms for ReLU-like activations (``(l^2 + b^2)(pi - t) + 2 l b t) / (2 pi)``,
    ``t`` the angle) and erf (``4 / (pi sqrt((1 + 2 q_a)(1 + 2 q_b) - 4 s^2))``); the split
    quadrature of :mod:`.gaussian` on ``phi'`` otherwise (its kinks are ``phi``'s).
    """
    return _pairs(act, Q, True)[1]


#: The recursion needs products of two variances in float64: it stops (ValueError) once a
#: non-zero diagonal entry leaves [1e-150, 1e150] instead of returning rounding noise.
DIAG_RANGE = (1e-150, 1e150)


def _check_range(K: np.ndarray, layer: int) -> None:
    d = np.diag(K)
    bad = ~np.isfinite(d) | ((d != 0) & ((np.abs(d) < DIAG_RANGE[0]) | (np.abs(d) > DIAG_RANGE[1])))
    if np.any(bad):
        raise ValueError(f"the kernel's diagonal reaches {d[bad][0]:.3g} at layer {layer}, outside "
                         f"the float64 range the recursion can use ({DIAG_RANGE[0]:g} to "
                         f"{DIAG_RANGE[1]:g}: the variance vanishes or explodes with depth); use "
                         "a smaller depth or rescale the inputs")


def mlp_layers(act, sigma_w: float, sigma_b: float, depth: int, X, *,
               ntk: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The MLP recursion, layer by layer: yields ``(K^l, Theta^l)`` for ``l = 1 .. depth``.

    ``K^l`` is :func:`nngp_kernel` at depth ``l``; ``Theta^l`` the NTK of
    :func:`scalelab.theory.ntk_kernel` (``None`` unless ``ntk``). Arguments as in
    :func:`nngp_kernel`, checked before the first layer. This is the one copy of the
    recursion that both kernels (and the depth profiles) run.
    """
    a = as_activation(act)
    sw = check_positive("sigma_w", sigma_w)
    sb = check_positive("sigma_b", sigma_b, allow_zero=True)
    depth = check_int("depth", depth)
    X = as_inputs(X)

    def layers():
        K = sb**2 + sw**2 * (X @ X.T) / X.shape[1]
        T = K.copy() if ntk else None
        yield K, T
        for layer in range(2, depth + 1):
            _check_range(K, layer - 1)
            F, dF = _pairs(a, K, ntk)
            K = sb**2 + sw**2 * F
            if ntk:  # Theta^{l+1} = Theta^l qdot^{l+1} + K^{l+1}
                T = T * (sw**2 * dF) + K
            yield K, T

    return layers()


def nngp_kernel(act, sigma_w: float, sigma_b: float, depth: int, X) -> np.ndarray:
    """Covariance of the depth-th layer's pre-activations of an infinitely wide random MLP.

    Args:
        act: activation name, :class:`~scalelab.theory.Activation` or callable.
        sigma_w: weight scale, ``W_ij ~ N(0, sigma_w^2 / fan_in)`` (the first layer's fan-in
            is the input dimension ``d``).
        sigma_b: bias std, ``b_i ~ N(0, sigma_b^2)``.
        depth: ``L >= 1``, the number of linear layers: the result is the covariance of
            ``y^L`` (``phi`` applied ``L - 1`` times; ``depth=1`` is the first layer's
            ``sigma_b^2 + sigma_w^2 X X^T / d``).
        X: inputs, one per row, shape (n, d).
    Returns:
        The (n, n) matrix ``K[a, b] = E[y^L_i(x_a) y^L_i(x_b)]`` (any unit i).

    Recursion ``K^l = sigma_b^2 + sigma_w^2 E[phi(U) phi(V)]``, ``(U, V) ~ N(0, K^{l-1})``
    (arXiv 1902.06853 section 2; Lee et al. 2018). Cost: ``depth - 1`` evaluations of
    ``n (n - 1) / 2`` bivariate expectations (closed forms for ReLU-like and erf).
    """
    return nngp_kernels(act, sigma_w, sigma_b, depth, X)[-1]


def nngp_kernels(act, sigma_w: float, sigma_b: float, depth: int, X) -> list[np.ndarray]:
    """``[K^1, ..., K^depth]``: :func:`nngp_kernel` for every layer at once (same arguments)."""
    return [K for K, _ in mlp_layers(act, sigma_w, sigma_b, depth, X)]


def branch_weights(depth: int | None, scales: Sequence[float] | None) -> tuple[int, list | None]:
    """``(L, [alpha_1^2, ..., alpha_L^2])`` from ``depth`` and ``scales`` (``None``: 1/sqrt(L)).

    ``scales`` is any sequence of finite floats (a list, an array, ``scalelab.nn.branch_scales``
    output); ``depth`` may then be None (``len(scales)``) or must equal its length. With
    ``scales=None`` the weights are returned as None: the recursion divides by ``L``.
    """
    if scales is None:
        return check_int("depth", depth), None
    try:
        arr = np.asarray(scales, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a sequence of numbers (one per block), got "
                         f"{type(scales).__name__}") from None
    if arr.size < 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"scales must be a non-empty sequence of finite numbers, got {scales!r}")
    if depth is not None and check_int("depth", depth) != arr.size:
        raise ValueError(f"scales must hold one value per block (depth={depth}), got "
                         f"{arr.size} values")
    return int(arr.size), [float(s) ** 2 for s in arr]


def resnet_layers(act, depth: int | None, X, *, scales: Sequence[float] | None = None,
                  ntk: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The ResNet recursion: yields ``(Q_l, Theta_l)`` for ``l = 0 .. L`` (Theta None unless ntk).

    ``Q_l = Q_{l-1} + alpha_l^2 E[phi(U) phi(V)]`` and
    ``Theta_l = Theta_{l-1} + alpha_l^2 (Theta_{l-1} E[phi'(U) phi'(V)] + E[phi(U) phi(V)])``,
    ``(U, V) ~ N(0, Q_{l-1})``, ``Q_0 = Theta_0 = X X^T / d``; ``alpha_l = 1/sqrt(L)`` unless
    ``scales`` gives them (:func:`branch_weights`). Arguments checked before the first step.
    """
    a = as_activation(act)
    depth, weights = branch_weights(depth, scales)
    X = as_inputs(X)

    def layers():
        Q = (X @ X.T) / X.shape[1]
        T = Q.copy() if ntk else None
        yield Q, T
        for i in range(depth):
            _check_range(Q, i)
            F, dF = _pairs(a, Q, ntk)
            if ntk:
                step = T * dF + F
                T = T + (step / depth if weights is None else weights[i] * step)
            Q = Q + (F / depth if weights is None else weights[i] * F)
            yield Q, T

    return layers()


def resnet_kernel(act, depth: int | None, X, *, scales: Sequence[float] | None = None,
                  infinite: bool = False, rtol: float = 1e-10) -> np.ndarray:
    """Covariance of the residual stream ``Y_L`` of a random ResNet with scaled branches.

    Args:
        act: activation name, :class:`~scalelab.theory.Activation` or callable.
        depth: the number of residual blocks ``L >= 1``; ignored (may be None) when
            ``infinite=True``, and may be None when ``scales`` is given.
        X: inputs, one per row, shape (n, d).
        scales: the branch multipliers ``alpha_1 .. alpha_L`` (a sequence of floats, e.g.
            ``scalelab.nn.branch_scales(L, "decreasing")``); None is ``1/sqrt(L)``, with
            exactly the numbers of the ``1/L`` recursion. Only ``alpha_l^2`` enters.
        infinite: solve the depth-limit ODE ``dQ/dt = E[phi(U) phi(V)]`` to ``t = 1``
            instead of running the ``L``-step recursion (the ``1/sqrt(L)`` limit; not with
            ``scales``).
        rtol: relative tolerance of the ODE solver (scipy's 8th-order ``DOP853``; the
            absolute tolerance is ``rtol`` times 1e-2 the largest input variance).
    Returns:
        The (n, n) matrix ``Q[a, b] = E[Y_{L,i}(x_a) Y_{L,i}(x_b)]`` (any coordinate i).

    Network: ``Y_0 = W_in x`` (``W_in ~ N(0, 1/d)``, no bias),
    ``Y_l = Y_{l-1} + alpha_l W_l phi(Y_{l-1})`` (``W_l ~ N(0, 1/n)``, no bias), infinite
    width. Finite L: ``Q_l = Q_{l-1} + alpha_l^2 E[phi(U) phi(V)]``, ``Q_0 = X X^T / d``.
    ReLU check: with ``alpha_l = 1/sqrt(L)`` the diagonal grows like ``(1 + 1/(2L))^L``,
    ``e^{1/2}`` in the limit. Cost: ``L`` (finite) or ~12 per solver step (infinite; a
    handful of steps) evaluations of the ``n (n - 1) / 2`` bivariate expectations.
    arXiv 2302.00453; general scalings arXiv 2310.01683 (the covariance limit commutes in
    width and depth when the branches are suitably scaled, e.g. ``sum alpha_l^2`` bounded).
    """
    a = as_activation(act)
    if not infinite:
        *_, (Q, _) = resnet_layers(a, depth, X, scales=scales)
        return Q
    return depth_limit(a, depth, X, scales=scales, rtol=rtol)[0]


def depth_limit(a: Activation, depth: int | None, X, *, scales=None, rtol: float = 1e-10,
                ntk: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``(Q_1, Theta_1)`` of the depth-limit ODE (Theta None unless ``ntk``); checks arguments."""
    if scales is not None:
        raise ValueError("scales applies to the finite-depth recursion; infinite=True is the "
                         "alpha_l = 1/sqrt(L) limit (pass scales=None, or infinite=False)")
    if depth is not None:
        check_int("depth", depth)
    rtol = check_positive("rtol", rtol)
    X = as_inputs(X)
    return _solve_depth_ode(a, (X @ X.T) / X.shape[1], rtol, ntk)


def _solve_depth_ode(a: Activation, q0: np.ndarray, rtol: float,
                     ntk: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Q_1 (and Theta_1) of dQ/dt = E[phi(U) phi(V)], dTheta/dt = Theta E[phi'(U) phi'(V)] +
    E[phi(U) phi(V)], (U, V) ~ N(0, Q_t), Q_0 = Theta_0 = q0 (upper triangles as state)."""
    from scipy.integrate import solve_ivp

    n = q0.shape[0]
    iu = np.triu_indices(n)
    m = iu[0].size

    def unpack(y: np.ndarray) -> np.ndarray:
        Q = np.empty((n, n))
        Q[iu] = y
        Q.T[iu] = y
        return Q

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        F, dF = _pairs(a, unpack(y[:m]), ntk)
        if not ntk:
            return F[iu]
        return np.concatenate([F[iu], (unpack(y[m:]) * dF + F)[iu]])

    scale = max(float(np.max(np.diag(q0))), 1e-300)
    y0 = np.concatenate([q0[iu], q0[iu]]) if ntk else q0[iu]
    sol = solve_ivp(rhs, (0.0, 1.0), y0, method="DOP853", rtol=rtol, atol=rtol * 1e-2 * scale)
    if not sol.success:  # pragma: no cover - the right-hand side is smooth and bounded
        raise RuntimeError(f"resnet_kernel: the depth-limit ODE solver failed: {sol.message}")
    y = sol.y[:, -1]
    return unpack(y[:m]), (unpack(y[m:]) if ntk else None)
