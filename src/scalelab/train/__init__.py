"""Training loops: the small classifier loop the reproductions share, and ``finetune``
(LoRA / LoRA+ on Accelerate) with ``compare`` for ``scalelab finetune --compare``."""

from .config import FinetuneConfig as FinetuneConfig
from .finetune import RunResult as RunResult
from .finetune import finetune as finetune
from .report import build_report as build_report
from .report import compare as compare
from .report import format_table as format_table
from .simple import TrainCurve as TrainCurve
from .simple import train_classifier as train_classifier

__all__ = ["TrainCurve", "train_classifier", "FinetuneConfig", "RunResult", "finetune",
           "build_report", "compare", "format_table"]
