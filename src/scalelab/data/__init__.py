"""Loaders for the embedded default datasets (real data, installed from the package index)."""

from .digits import DIGIT_DATASETS as DIGIT_DATASETS
from .digits import ArrayDataset as ArrayDataset
from .digits import load_digits as load_digits
from .models import EMBEDDED_MODELS as EMBEDDED_MODELS
from .models import load_model as load_model
from .models import resolve_model as resolve_model
from .tables import FeatureTable as FeatureTable
from .tables import index_labels as index_labels
from .tables import label_order as label_order
from .tables import read_feature_table as read_feature_table
from .tables import read_table as read_table
from .text import TEXT_DATASETS as TEXT_DATASETS
from .text import TextDataset as TextDataset
from .text import load_text_dataset as load_text_dataset

__all__ = ["DIGIT_DATASETS", "ArrayDataset", "load_digits", "EMBEDDED_MODELS", "load_model",
           "resolve_model", "FeatureTable", "index_labels", "label_order", "read_feature_table",
           "read_table", "TEXT_DATASETS", "TextDataset", "load_text_dataset"]
