"""Loaders for the embedded default datasets (real data, installed from the package index)."""

from .digits import DIGIT_DATASETS as DIGIT_DATASETS
from .digits import ArrayDataset as ArrayDataset
from .digits import load_digits as load_digits

__all__ = ["DIGIT_DATASETS", "ArrayDataset", "load_digits"]
