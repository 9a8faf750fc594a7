"""Loaders for the embedded default datasets (real data, installed from the package index)."""

from .digits import DIGIT_DATASETS as DIGIT_DATASETS
from .digits import ArrayDataset as ArrayDataset
from .digits import load_digits as load_digits
from .models import EMBEDDED_MODELS as EMBEDDED_MODELS
from .models import load_model as load_model
from .models import resolve_model as resolve_model
from .text import TEXT_DATASETS as TEXT_DATASETS
from .text import TextDataset as TextDataset
from .text import load_text_dataset as load_text_dataset

__all__ = ["DIGIT_DATASETS", "ArrayDataset", "load_digits", "EMBEDDED_MODELS", "load_model",
           "resolve_model", "TEXT_DATASETS", "TextDataset", "load_text_dataset"]
