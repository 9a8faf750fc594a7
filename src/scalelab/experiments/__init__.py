"""Reproductions of each paper's headline claim, runnable with ``scalelab reproduce NAME``.

Add one: write a module here that builds an :class:`Experiment` and calls :func:`register`;
the registry finds it by itself (modules whose names start with ``_`` are skipped).
"""

from ._registry import Context as Context
from ._registry import Experiment as Experiment
from ._registry import Outcome as Outcome
from ._registry import get_experiment as get_experiment
from ._registry import list_experiments as list_experiments
from ._registry import register as register
from ._report import run_experiment as run_experiment

__all__ = ["Context", "Experiment", "Outcome", "get_experiment", "list_experiments", "register",
           "run_experiment"]
