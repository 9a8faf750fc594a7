"""Infinite-width covariance kernels of deep random MLPs and 1/sqrt(L)-scaled ResNets.

Both kernels are built from one Gaussian expectation, evaluated for every pair of inputs at
once: ``E[phi(U) phi(V)]`` with ``(U, V) ~ N(0, [[q_a, s], [s, q_b]])`` (closed forms for
ReLU-like activations and erf, the split quadrature of :mod:`.gaussian` otherwise; the
diagonal uses the 1-D ``E[phi(sqrt(q) Z)^2]``).

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
``Q_l = Q_{l-1} + (1/L) E[phi(U) phi(V)]`` — the Euler scheme, step ``1/L``, of the
depth-limit ODE ``dQ_t/dt = E[phi(U) phi(V)]``, ``(U, V) ~ N(0, Q_t)``, ``t = l/L`` in [0, 1].
``resnet_kernel(..., depth=L)`` returns ``Q_L``; ``infinite=True`` returns ``Q_1`` of the
ODE (the L -> infinity limit; the Euler error is O(1/L)).

Papers: arXiv 1902.06853 (maps), Lee et al. 2018 (NNGP), arXiv 2302.00453 (width and depth
commute; the ODE).
"""

from __future__ import annotations

import numpy as np

from .._errors import check_int, check_positive
from .activations import Activation, as_activation


def _inputs(X) -> np.ndarray:
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
    a: Activation = as_activation(act)
    Q = np.asarray(Q, dtype=float)
    n = Q.shape[0]
    diag = np.maximum(np.diag(Q), 0.0)
    out = np.empty((n, n))
    out[np.diag_indices(n)] = a.mean_sq(diag)
    iu, ju = np.triu_indices(n, 1)
    if iu.size:
        qa, qb = diag[iu], diag[ju]
        scale = np.sqrt(qa * qb)
        c = np.where(scale > 0, Q[iu, ju] / np.where(scale > 0, scale, 1.0), 0.0)
        vals = a.pair(qa, qb, np.clip(c, -1.0, 1.0))
        out[iu, ju] = vals
        out[ju, iu] = vals
    return out


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
    a = as_activation(act)
    sw = check_positive("sigma_w", sigma_w)
    sb = check_positive("sigma_b", sigma_b, allow_zero=True)
    depth = check_int("depth", depth)
    X = _inputs(X)
    kernels = [sb**2 + sw**2 * (X @ X.T) / X.shape[1]]
    for _ in range(depth - 1):
        kernels.append(sb**2 + sw**2 * pair_expectations(a, kernels[-1]))
    return kernels


def resnet_kernel(act, depth: int | None, X, *, infinite: bool = False,
                  rtol: float = 1e-10) -> np.ndarray:
    """Covariance of the residual stream ``Y_L`` of a 1/sqrt(L)-scaled random ResNet.

    Args:
        act: activation name, :class:`~scalelab.theory.Activation` or callable.
        depth: the number of residual blocks ``L >= 1``; ignored (may be None) when
            ``infinite=True``.
        X: inputs, one per row, shape (n, d).
        infinite: solve the depth-limit ODE ``dQ/dt = E[phi(U) phi(V)]`` to ``t = 1``
            instead of running the ``L``-step recursion.
        rtol: relative tolerance of the ODE solver (scipy's 8th-order ``DOP853``; the
            absolute tolerance is ``rtol`` times 1e-2 the largest input variance).
    Returns:
        The (n, n) matrix ``Q[a, b] = E[Y_{L,i}(x_a) Y_{L,i}(x_b)]`` (any coordinate i).

    Network: ``Y_0 = W_in x`` (``W_in ~ N(0, 1/d)``, no bias),
    ``Y_l = Y_{l-1} + (1/sqrt(L)) W_l phi(Y_{l-1})`` (``W_l ~ N(0, 1/n)``, no bias), infinite
    width. Finite L: ``Q_l = Q_{l-1} + (1/L) E[phi(U) phi(V)]``, ``Q_0 = X X^T / d``.
    ReLU check: the diagonal grows like ``(1 + 1/(2L))^L``, ``e^{1/2}`` in the limit.
    Cost: ``L`` (finite) or ~12 per solver step (infinite; a handful of steps) evaluations of
    the ``n (n - 1) / 2`` bivariate expectations. arXiv 2302.00453.
    """
    a = as_activation(act)
    X = _inputs(X)
    q0 = (X @ X.T) / X.shape[1]
    if not infinite:
        depth = check_int("depth", depth)
        Q = q0
        for _ in range(depth):
            Q = Q + pair_expectations(a, Q) / depth
        return Q
    if depth is not None:
        check_int("depth", depth)
    rtol = check_positive("rtol", rtol)
    return _solve_depth_ode(a, q0, rtol)


def _solve_depth_ode(a: Activation, q0: np.ndarray, rtol: float) -> np.ndarray:
    """Q_1 of dQ/dt = E[phi(U) phi(V)], (U, V) ~ N(0, Q_t), Q_0 = q0 (upper triangle as state)."""
    from scipy.integrate import solve_ivp

    n = q0.shape[0]
    iu = np.triu_indices(n)

    def unpack(y: np.ndarray) -> np.ndarray:
        Q = np.empty((n, n))
        Q[iu] = y
        Q.T[iu] = y
        return Q

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        return pair_expectations(a, unpack(y))[iu]

    scale = max(float(np.max(np.diag(q0))), 1e-300)
    sol = solve_ivp(rhs, (0.0, 1.0), q0[iu], method="DOP853", rtol=rtol,
                    atol=rtol * 1e-2 * scale)
    if not sol.success:  # pragma: no cover - the right-hand side is smooth and bounded
        raise RuntimeError(f"resnet_kernel: the depth-limit ODE solver failed: {sol.message}")
    return unpack(sol.y[:, -1])
