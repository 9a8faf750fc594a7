"""What ``ntk-depth`` and ``scalelab ntk`` share: real-digit inputs on the sphere and
infinite-width NTK regression (the kernel regime's trained predictor).

Inputs: the packaged 5,000 MNIST digits (:func:`scalelab.data.load_digits`, pixels in
[0, 1]), centred by their mean image and scaled to ``||x||^2 = d`` (so
``x . x / d = 1``: every input has the same variance in every layer, as the depth-profile
theory assumes). Regression: ``f(x*) = Theta(x*, X) (Theta(X, X) + jitter I)^{-1} Y`` with
one-hot targets centred at 0 (``e_y - 1/10``) and the prediction's argmax as the class; this
is the infinite-width network trained to convergence by gradient flow on the squared loss,
averaged over initialisations (Jacot et al. 2018; Lee et al. 2019). ``jitter`` = 1e-10 x the
mean diagonal, a fixed numerical stabiliser (docs/kernels.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Relative jitter added to the training kernel's diagonal before the Cholesky solve.
JITTER = 1e-10


@dataclass(frozen=True)
class DigitSplit:
    """Unit-variance digit inputs: ``x`` (n_train + n_test, 784) and labels, train rows first."""

    x: np.ndarray
    y: np.ndarray
    n_train: int

    @property
    def y_train(self) -> np.ndarray:
        return self.y[:self.n_train]

    @property
    def y_test(self) -> np.ndarray:
        return self.y[self.n_train:]


def _sphere(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    x = x - mean
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1])


@lru_cache(maxsize=1)
def _pool() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 packaged MNIST digits (pixels in [0, 1]) and their labels, loaded once."""
    from ..data import load_digits

    d = load_digits("mnist", seed=0, standardize=False)
    x = np.concatenate([d.x_train.numpy(), d.x_test.numpy()]).astype(float)
    y = np.concatenate([d.y_train.numpy(), d.y_test.numpy()])
    return x, y


def digit_split(n_train: int, n_test: int, seed: int) -> DigitSplit:
    """``n_train`` + ``n_test`` distinct digits drawn (seeded, without replacement) from the
    packaged 5,000, on the sphere ``||x||^2 = d`` (centred by the mean of the whole pool)."""
    x, y = _pool()
    idx = np.random.default_rng(seed).permutation(len(y))[:n_train + n_test]
    return DigitSplit(_sphere(x[idx], x.mean(0)), y[idx], n_train)


def digit_inputs(n: int, seed: int = 0) -> np.ndarray:
    """``n <= 200`` training digits on the sphere, classes in turn (0, 1, ..., 9, 0, ...)."""
    from ..errors import check_int

    n = check_int("n_inputs", n, minimum=2)
    if n > 200:
        raise ValueError(f"n_inputs must be <= 200 (a depth profile compares all pairs), got {n}")
    s = digit_split(2000, 0, seed)
    per_class = [np.flatnonzero(s.y_train == c) for c in range(10)]
    return s.x[[per_class[i % 10][i // 10] for i in range(n)]]


def kernel_regression_accuracy(T: np.ndarray, split: DigitSplit) -> tuple[float, float]:
    """(test accuracy, off-diagonal spread of the normalised training kernel) of NTK regression.

    ``T`` is the kernel on ``split.x`` (train rows first). The spread ``max - min`` of
    ``Theta~_ab`` (a != b) is how far the kernel is from forgetting the inputs; once it is
    near ``JITTER`` the solve can only see the constant part. NaN accuracy if the Cholesky
    factorisation fails even with the jitter.
    """
    from scipy import linalg

    n = split.n_train
    A = T[:n, :n]
    d = np.sqrt(np.diag(A))
    off = (A / np.outer(d, d))[~np.eye(n, dtype=bool)]
    spread = float(off.max() - off.min())
    Y = np.eye(10)[split.y_train] - 0.1
    try:
        factor = linalg.cho_factor(A + JITTER * float(np.mean(d**2)) * np.eye(n))
    except np.linalg.LinAlgError:
        return float("nan"), spread
    pred = T[n:, :n] @ linalg.cho_solve(factor, Y)
    if not np.all(np.isfinite(pred)):
        return float("nan"), spread
    return float(np.mean(pred.argmax(1) == split.y_test)), spread


def chance(split: DigitSplit) -> float:
    """The majority-class share of the test labels (what a constant predictor scores)."""
    return float(np.bincount(split.y_test, minlength=10).max() / split.y_test.size)
