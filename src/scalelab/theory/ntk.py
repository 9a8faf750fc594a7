"""Infinite-width neural tangent kernels (NTK) of deep MLPs and of ResNets with scaled branches.

**MLP, NTK parametrisation.** ``y^1 = (sigma_w / sqrt(d)) W^1 x + sigma_b b^1`` and
``y^l = (sigma_w / sqrt(n)) W^l phi(y^{l-1}) + sigma_b b^l`` with every ``W_ij, b_i ~ N(0, 1)``
the trained parameters: the forward pass is that of :func:`~scalelab.theory.nngp_kernel`'s
network, so its NNGP is the same, and the NTK ``Theta(x, x') = <d y^L(x) / d theta,
d y^L(x') / d theta>`` (one output unit) follows the recursion (Jacot et al. 2018; Arora et
al. 2019)::

    K^1 = Theta^1 = sigma_b^2 + sigma_w^2 X X^T / d
    K^{l+1}    = sigma_b^2 + sigma_w^2 E[phi(U) phi(V)]      (U, V) ~ N(0, K^l)
    Kdot^{l+1} = sigma_w^2 E[phi'(U) phi'(V)]
    Theta^{l+1} = Theta^l Kdot^{l+1} + K^{l+1}

``depth`` counts linear layers, exactly as for ``nngp_kernel``; in neural-tangents terms
``serial(Dense(W_std=sigma_w, b_std=sigma_b, parameterization="ntk"), *[phi, Dense] * (L-1))``'s
``ntk``. The recursion is :func:`~scalelab.theory.kernels.mlp_layers`, shared with the NNGP.

**ResNet.** The network of :func:`~scalelab.theory.resnet_kernel` in NTK parametrisation:
``Y_0 = W_in x / sqrt(d)``, ``Y_l = Y_{l-1} + alpha_l W_l phi(Y_{l-1}) / sqrt(n)``, every
weight ``N(0, 1)`` and trained. Its NTK (of one coordinate of ``Y_L``) follows
``Theta_l = Theta_{l-1} (1 + alpha_l^2 Qdot_l) + alpha_l^2 E[phi(U) phi(V)]``,
``Qdot_l = E[phi'(U) phi'(V)]``, ``(U, V) ~ N(0, Q_{l-1})``, ``Theta_0 = Q_0 = X X^T / d``
(the cross terms between a block's Jacobian and the stream's vanish at infinite width); with
``alpha_l = 1/sqrt(L)`` it is the Euler scheme of ``dTheta/dt = Theta Qdot_t + E[phi phi]``,
solved to ``t = 1`` by ``infinite=True``. A linear readout ``v . Y_L / sqrt(n)`` on top adds
``Q_L``: its NTK is ``Theta_L + Q_L``.

Papers: Jacot et al. 2018 (NTK), arXiv 1905.13654 (the NTK at large depth), arXiv 2302.00453
and arXiv 2310.01683 (ResNet depth limits). Method notes: docs/kernels.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .activations import as_activation
from .kernels import depth_limit, mlp_layers, resnet_layers


class KernelPair(NamedTuple):
    """Both infinite-width kernels of one network from one pass: ``(ntk, nngp)``."""

    ntk: np.ndarray
    nngp: np.ndarray


def ntk_kernel(act, sigma_w: float, sigma_b: float, depth: int, X, *,
               return_nngp: bool = False) -> np.ndarray | KernelPair:
    """The infinite-width NTK of a deep MLP in NTK parametrisation.

    Args:
        act: activation name, :class:`~scalelab.theory.Activation` or callable (derivatives
            as :func:`~scalelab.theory.from_callable` finds them).
        sigma_w: weight multiplier: layer ``l`` computes ``sigma_w / sqrt(fan_in) W^l ...``
            with ``W^l_ij ~ N(0, 1)`` (the first layer's fan-in is ``d``).
        sigma_b: bias multiplier, ``sigma_b b^l`` with ``b^l_i ~ N(0, 1)`` (0: no bias).
        depth: ``L >= 1`` linear layers, as in :func:`~scalelab.theory.nngp_kernel`
            (``depth=1``: ``sigma_b^2 + sigma_w^2 X X^T / d``).
        X: inputs, one per row, shape (n, d).
        return_nngp: also return the NNGP ``K^L`` (same pass): a :class:`KernelPair`.
    Returns:
        The (n, n) matrix ``Theta^L`` (per output unit; the NTK is diagonal across units), or
        ``KernelPair(ntk, nngp)``.

    Recursion in the module docstring. ``E[phi'(U) phi'(V)]`` is closed-form for ReLU-like
    activations (``(pi - t)/(2 pi)`` scaled; Cho & Saul 2009) and erf
    (``4 / (pi sqrt((1 + 2 q_a)(1 + 2 q_b) - 4 s^2))``), split quadrature otherwise.
    Numerical caveat: for kinked activations ``E[phi'(U) phi'(V)]`` has an infinite slope
    at ``c = 1`` (it moves like ``sqrt(1 - c)``); the closed forms are exact there and the
    quadrature, split at the kinks, stays accurate. Cost: ``depth - 1`` evaluations of the ``n (n - 1) / 2`` pairs for
    each of the two expectations. arXiv 1905.13654; Jacot et al. 2018.
    """
    *_, (K, T) = mlp_layers(act, sigma_w, sigma_b, depth, X, ntk=True)
    return KernelPair(T, K) if return_nngp else T


def resnet_ntk(act, depth: int | None, X, *, scales: Sequence[float] | None = None,
               infinite: bool = False, rtol: float = 1e-10,
               return_nngp: bool = False) -> np.ndarray | KernelPair:
    """The infinite-width NTK of the residual stream of a ResNet with scaled branches.

    Args:
        act: activation name, :class:`~scalelab.theory.Activation` or callable.
        depth: the number of residual blocks ``L >= 1`` (may be None with ``scales`` or
            ``infinite=True``).
        X: inputs, one per row, shape (n, d).
        scales: branch multipliers ``alpha_1 .. alpha_L`` (e.g. ``scalelab.nn.branch_scales``
            output, any sequence of floats); None is ``1/sqrt(L)``.
        infinite: solve the depth-limit ODEs (``alpha_l = 1/sqrt(L)``, ``L -> infinity``)
            instead of the ``L``-step recursion; the finite recursion is their Euler scheme,
            O(1/L) away.
        rtol: relative tolerance of the ODE solver (as in :func:`resnet_kernel`).
        return_nngp: also return the covariance ``Q_L`` (:func:`resnet_kernel`): a
            :class:`KernelPair`.
    Returns:
        The (n, n) matrix ``Theta_L`` of one coordinate of ``Y_L`` (or the pair). The NTK of
        a linear readout ``v . Y_L / sqrt(n)`` is ``Theta_L + Q_L``.

    Network and recursion in the module docstring. With all scales 0 it is ``X X^T / d``;
    with one block of scale 1 it is ``X X^T / d + ntk_kernel(act, 1, 0, 2, X)``.
    arXiv 1905.13654 (ResNet NTK), arXiv 2302.00453, arXiv 2310.01683.
    """
    a = as_activation(act)
    if infinite:
        Q, T = depth_limit(a, depth, X, scales=scales, rtol=rtol, ntk=True)
    else:
        *_, (Q, T) = resnet_layers(a, depth, X, scales=scales, ntk=True)
    return KernelPair(T, Q) if return_nngp else T
