"""Reproductions of each paper's headline claim, runnable with ``scalelab reproduce NAME``.

Add one: write a module here that builds an :class:`Experiment` and calls :func:`register`;
the registry finds it by itself (modules whose names start with ``_`` are skipped).
"""

from .registry import Context as Context
from .registry import Experiment as Experiment
from .registry import Outcome as Outcome
from .registry import get_experiment as get_experiment
from .registry import list_experiments as list_experiments
from .registry import register as register
from .report import run_experiment as run_experiment

__all__ = ["Context", "Experiment", "Outcome", "get_experiment", "list_experiments", "register",
           "run_experiment"]
