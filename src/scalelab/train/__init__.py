"""Training loops: the small classifier loop the reproductions share, and ``finetune``
(LoRA / LoRA+ on Accelerate) with ``compare`` for ``scalelab finetune --compare``; using a
trained run: ``load_run``, ``predict``, ``evaluate_run``, ``export_run``."""

from .config import FinetuneConfig as FinetuneConfig
from .export import export_run as export_run
from .export import load_run as load_run
from .finetune import finetune as finetune
from .predict import evaluate_run as evaluate_run
from .predict import predict as predict
from .predict import read_inputs as read_inputs
from .report import build_report as build_report
from .report import compare as compare
from .report import format_table as format_table
from .run import FinetuneRun as FinetuneRun
from .run import RunResult as RunResult
from .simple import TrainCurve as TrainCurve
from .simple import train_classifier as train_classifier

__all__ = ["TrainCurve", "train_classifier", "FinetuneConfig", "FinetuneRun", "RunResult",
           "finetune", "build_report", "compare", "format_table", "load_run", "export_run",
           "predict", "evaluate_run", "read_inputs"]
