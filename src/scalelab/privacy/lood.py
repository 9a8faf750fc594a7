"""Leave-one-out distinguishability (LOOD) with Gaussian-process (NNGP) models.

A network trained on ``D`` is modelled by the GP posterior of its NNGP kernel ``K``, noise
(ridge) term ``s^2``:

    mu_D(Q) = K_QD (K_DD + s^2 I)^-1 Y_D,    Sigma_D(Q) = K_QQ - K_QD (K_DD + s^2 I)^-1 K_DQ,

with ``k`` independent output dimensions sharing ``Sigma``. LOOD at queries ``Q`` is
``KL(N(mu_D, Sigma_D) || N(mu_D', Sigma_D'))`` with ``D' = D + extra point(s)`` — the order of
the official code (github.com/privacytrustlab/lood_in_ml, ``exact_nngp``). The mean-distance
variant is the official "mse" one: ``0.5 * mean((mu_D(Q) - mu_D'(Q))^2)`` over queries and
outputs. arXiv 2309.17310 (Ye, Borovykh, Hayou, Shokri; ICLR 2024).

Kernel: a callable ``(X1, X2) -> matrix`` or a spec ``dict(act=..., sigma_w=..., sigma_b=...,
depth=...)`` for :func:`scalelab.theory.nngp_kernel` (``depth`` counts linear layers, readout
included; missing keys take :data:`DEFAULT_KERNEL`'s values). :data:`DEFAULT_KERNEL` is the
official default network: fully connected, two hidden ReLU layers (``DEPTH=2`` there),
``W_std = sqrt 2``, ``b_std = 0`` — so ``depth=3`` in scalelab's convention — with
``noise = 0.05`` (the official ``REG_CONST``, added to the kernel's diagonal: it is ``s^2``,
not ``s``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import check_choice, check_positive

DEFAULT_KERNEL: dict[str, Any] = {"act": "relu", "sigma_w": math.sqrt(2.0), "sigma_b": 0.0,
                                  "depth": 3}
VARIANTS = ("kl", "mean")


def as_rows(name: str, X, *, allow_empty: bool = False) -> np.ndarray:
    """``X`` (array or tensor) as a finite float 2-D array of rows (1-D: one row); a
    ``ValueError`` naming ``name`` otherwise."""
    try:
        a = np.asarray(X.detach().cpu().numpy() if hasattr(X, "detach") else X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(X).__name__}") from None
    if a.size == 0 and allow_empty and a.ndim <= 2:
        return a.reshape(0, a.shape[1] if a.ndim == 2 else 0)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D array (one input per row), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite numbers, got nan or inf")
    return a


def as_targets(name: str, Y, n: int, num_classes: int | None) -> np.ndarray:
    """Integer 1-D labels -> one-hot (num_classes columns); float 1-D -> one column; 2-D as is."""
    a = np.asarray(Y.detach().cpu().numpy() if hasattr(Y, "detach") else Y)
    if a.ndim == 0:
        a = a[None]
    if a.shape[0] != n:
        raise ValueError(f"{name} must have one target per input ({n}), got shape {a.shape}")
    if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
        if num_classes is None:
            raise ValueError(f"{name}: integer labels need num_classes")
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name}: labels must be in [0, {num_classes}), got "
                             f"{a.min()}..{a.max()}")
        return np.eye(num_classes)[a]
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be 1-D labels or a finite (n, k) target matrix, "
                         f"got shape {a.shape}")
    return a


def infer_num_classes(*targets) -> int | None:
    """Classes implied by the targets: the width of a 2-D target matrix, else 1 + the
    largest integer label (``None`` when nothing says)."""
    arrays = [np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)
              for t in targets]
    wide = [a.shape[1] for a in arrays if a.ndim == 2 and a.shape[0]]
    if wide:
        return int(wide[0])
    ints = [a for a in arrays if a.ndim <= 1 and a.size and np.issubdtype(a.dtype, np.integer)]
    return int(max(int(a.max()) for a in ints)) + 1 if ints else None


def check_psd(K: np.ndarray, name: str = "kernel matrix", *, rtol: float = 1e-8) -> np.ndarray:
    """Return ``K`` if it is symmetric positive semi-definite (to ``rtol`` of its scale).

    Raises ``ValueError`` naming the asymmetry or the most negative eigenvalue otherwise.
    """
    K = np.asarray(K, dtype=float)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be square, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} must be finite, got nan or inf")
    scale = max(float(np.abs(K).max()) if K.size else 0.0, 1e-300)
    asym = float(np.abs(K - K.T).max()) if K.size else 0.0
    if asym > rtol * scale:
        raise ValueError(f"{name} must be symmetric, got max |K - K^T| = {asym:.3g} "
                         f"(scale {scale:.3g})")
    if K.size:
        low = float(np.linalg.eigvalsh((K + K.T) / 2)[0])
        if low < -rtol * scale * K.shape[0]:
            raise ValueError(f"{name} must be positive semi-definite, got smallest eigenvalue "
                             f"{low:.3g} (scale {scale:.3g}); is the kernel a valid covariance?")
    return K


def kernel_matrix(kernel, X) -> np.ndarray:
    """The checked Gram matrix ``K(X, X)`` of a kernel callable or an NNGP spec (see module)."""
    X = as_rows("X", X)
    if kernel is None:
        kernel = DEFAULT_KERNEL
    if isinstance(kernel, dict):
        from ..theory.kernels import nngp_kernel

        unknown = set(kernel) - {"act", "sigma_w", "sigma_b", "depth"}
        if unknown:
            raise ValueError(f"kernel spec keys must be act, sigma_w, sigma_b, depth; got "
                             f"{sorted(unknown)}")
        spec = {**DEFAULT_KERNEL, **kernel}
        K = nngp_kernel(spec["act"], spec["sigma_w"], spec["sigma_b"], spec["depth"], X)
    elif callable(kernel):
        K = kernel(X, X)
        K = np.asarray(K.detach().cpu().numpy() if hasattr(K, "detach") else K, dtype=float)
        if K.shape != (X.shape[0], X.shape[0]):
            raise ValueError(f"kernel(X1, X2) must return a ({X.shape[0]}, {X.shape[0]}) matrix "
                             f"for {X.shape[0]} inputs, got shape {K.shape}")
    else:
        raise ValueError(f"kernel must be a callable (X1, X2) -> matrix or a spec dict, got "
                         f"{kernel!r}")
    return check_psd(K)


def _cholesky(A: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what} is singular or not positive definite; use distinct queries "
                         "or a larger noise") from None


def _posterior(K: np.ndarray, train: np.ndarray, query: np.ndarray, Y: np.ndarray,
               noise: float) -> tuple[np.ndarray, np.ndarray]:
    """GP posterior mean (q, k) and covariance (q, q) at ``query`` from rows ``train`` of K."""
    K_qq = K[np.ix_(query, query)]
    if train.size == 0:
        return np.zeros((query.size, Y.shape[1])), K_qq
    L = _cholesky(K[np.ix_(train, train)] + noise * np.eye(train.size), "K_TT + noise I")
    K_tq = K[np.ix_(train, query)]
    V = np.linalg.solve(L, K_tq)  # L^-1 K_TQ, (t, q)
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, Y))  # (K_TT + s^2 I)^-1 Y, (t, k)
    return K_tq.T @ alpha, K_qq - V.T @ V


def gaussian_kl(mu0: np.ndarray, cov0: np.ndarray, mu1: np.ndarray, cov1: np.ndarray) -> float:
    """``KL(N(mu0, cov0) || N(mu1, cov1))`` summed over the k independent columns of mu (q, k).

    Written as
    ``0.5 [k tr(cov1^-1 (cov0 - cov1)) + sum_j d_j^T cov1^-1 d_j + k log(|cov1| / |cov0|)]``
    so that equal inputs give exactly 0 and small divergences do not cancel.
    """
    mu0, mu1 = np.atleast_2d(mu0), np.atleast_2d(mu1)
    k = mu0.shape[1]
    L1 = _cholesky(cov1, "posterior covariance at the queries (with the extra points)")
    L0 = _cholesky(cov0, "posterior covariance at the queries (without the extra points)")
    d = mu1 - mu0
    W = np.linalg.solve(L1, cov0 - cov1)
    tr = float(np.trace(np.linalg.solve(L1.T, W)))
    maha = float(np.sum(np.linalg.solve(L1, d) ** 2))
    logdet = 2.0 * float(np.sum(np.log(np.diag(L1))) - np.sum(np.log(np.diag(L0))))
    return 0.5 * (k * tr + maha + k * logdet)


def _lood_from_gram(K, train_a, train_b, query, Y, noise, variant) -> float:
    mu0, cov0 = _posterior(K, train_a, query, Y[train_a] if train_a.size else Y[:0], noise)
    mu1, cov1 = _posterior(K, train_b, query, Y[train_b] if train_b.size else Y[:0], noise)
    if variant == "mean":
        return 0.5 * float(np.mean((mu0 - mu1) ** 2))
    return gaussian_kl(mu0, cov0, mu1, cov1)


def check_same_dim(d: int, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Each non-empty array (name=array) reshaped to ``(-1, d)``; a ``ValueError`` naming it
    when its feature count is not ``d``."""
    out = {}
    for name, a in arrays.items():
        if a.shape[0] and a.shape[1] != d:
            raise ValueError(f"{name} must have {d} features like the queries, got shape {a.shape}")
        out[name] = a.reshape(-1, d)
    return out


def lood_between(X_a, Y_a, X_b, Y_b, queries, *, kernel: dict | Callable | None = None,
                 noise: float = 0.05, variant: str = "kl",
                 num_classes: int | None = None) -> float:
    """LOOD between the GP posteriors trained on ``(X_a, Y_a)`` and on ``(X_b, Y_b)``.

    ``KL(P_a(Q) || P_b(Q))`` (or the mean distance); either set may be empty (the prior).
    Identical sets give exactly 0. Targets as in :func:`lood`.
    """
    check_choice("variant", variant, VARIANTS)
    noise = check_positive("noise", noise)
    Q = as_rows("queries", queries)
    xs = check_same_dim(Q.shape[1], X_a=as_rows("X_a", X_a, allow_empty=True),
                   X_b=as_rows("X_b", X_b, allow_empty=True))
    Xa, Xb = xs["X_a"], xs["X_b"]
    nc = num_classes if num_classes is not None else infer_num_classes(Y_a, Y_b)
    Ya, Yb = as_targets("Y_a", Y_a, Xa.shape[0], nc), as_targets("Y_b", Y_b, Xb.shape[0], nc)
    if Xa.shape[0] and Xb.shape[0] and Ya.shape[1] != Yb.shape[1]:
        raise ValueError(f"targets must have the same number of outputs, got {Ya.shape[1]} "
                         f"and {Yb.shape[1]}")
    k = Ya.shape[1] if Xa.shape[0] else Yb.shape[1]
    # The Gram of the distinct inputs, expanded: equal inputs get bitwise-equal rows, so
    # identical training sets give identical posteriors (LOOD exactly 0).
    distinct, inverse = np.unique(np.concatenate([Xa, Xb, Q]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    K = kernel_matrix(kernel, distinct)[np.ix_(inverse, inverse)]
    na, nb = Xa.shape[0], Xb.shape[0]
    Y = np.concatenate([Ya.reshape(-1, k), Yb.reshape(-1, k), np.zeros((Q.shape[0], k))])
    return _lood_from_gram(K, np.arange(na), na + np.arange(nb), na + nb + np.arange(Q.shape[0]),
                           Y, noise, variant)


def lood(X_train, Y_train, x_extra, y_extra, queries=None, *,
         kernel: dict | Callable | None = None, noise: float = 0.05, variant: str = "kl",
         num_classes: int | None = None) -> float:
    """LOOD of adding ``(x_extra, y_extra)`` to the training set ``(X_train, Y_train)``.

    Args:
        X_train: (n, d) inputs (n may be 0: the prior). Y_train: integer labels (one-hot
            encoded, ``num_classes`` columns, read from the labels when not given), or
            float targets (n,) / (n, k).
        x_extra, y_extra: the extra point(s), (e, d) and (e,) / (e, k); e = 0 gives exactly 0.
        queries: (q, d) query inputs; default the extra points themselves.
        kernel: NNGP spec dict (default :data:`DEFAULT_KERNEL`) or a callable (X1, X2) -> K.
        noise: ``s^2`` added to ``K_DD``'s diagonal (official default 0.05).
        variant: ``"kl"`` (LOOD) or ``"mean"`` (0.5 x mean squared difference of the means).

    Returns:
        ``KL(P_D(Q) || P_D'(Q))``, ``D' = D + extra`` (arXiv 2309.17310). Kernel matrices
        are checked symmetric PSD (``ValueError`` otherwise).
    """
    Xe = as_rows("x_extra", x_extra, allow_empty=True)
    if queries is None:
        if Xe.shape[0] == 0:
            raise ValueError("queries must be given when there is no extra point")
        queries = Xe
    Xt = as_rows("X_train", X_train, allow_empty=True)
    nc = num_classes if num_classes is not None else infer_num_classes(Y_train, y_extra)
    Yt = as_targets("Y_train", Y_train, Xt.shape[0], nc)
    Ye = as_targets("y_extra", y_extra, Xe.shape[0], nc)
    d = as_rows("queries", queries).shape[1]
    xs = check_same_dim(d, X_train=Xt, x_extra=Xe)
    k = Yt.shape[1] if Xt.shape[0] else Ye.shape[1]
    if Xt.shape[0] and Xe.shape[0] and Ye.shape[1] != k:
        raise ValueError(f"y_extra must have {k} outputs like Y_train, got {Ye.shape[1]}")
    Yt, Ye = Yt.reshape(-1, k), Ye.reshape(-1, k)
    return lood_between(xs["X_train"], Yt, np.concatenate([xs["X_train"], xs["x_extra"]]),
                        np.concatenate([Yt, Ye]), queries, kernel=kernel, noise=noise,
                        variant=variant)


def lood_per_point(X, Y, *, indices=None, kernel: dict | Callable | None = None,
                   noise: float = 0.05, variant: str = "kl",
                   num_classes: int | None = None) -> np.ndarray:
    """LOOD of each training point: ``D`` minus point i against ``D``, queried at ``x_i``.

    One Gram matrix for all points (checked once); ``indices`` picks a subset of points.
    """
    check_choice("variant", variant, VARIANTS)
    noise = check_positive("noise", noise)
    X = as_rows("X", X)
    nc = num_classes if num_classes is not None else infer_num_classes(Y)
    Yt = as_targets("Y", Y, X.shape[0], nc)
    K = kernel_matrix(kernel, X)
    n = X.shape[0]
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=int).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices must be in [0, {n}), got {idx.min()}..{idx.max()}")
    everyone = np.arange(n)
    return np.array([_lood_from_gram(K, np.delete(everyone, i), everyone, np.array([i]), Yt,
                                     noise, variant) for i in idx])
