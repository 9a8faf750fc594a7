"""The registry of reproductions behind ``scalelab reproduce``.

Each experiment module in :mod:`scalelab.experiments` registers one or more
:class:`Experiment` objects with :func:`register`. Modules keep heavy imports (torch models,
transformers) inside their ``run`` functions so that ``scalelab reproduce list`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    """What an experiment's ``run`` receives: where to write, how big to run, which seed."""

    out_dir: Path
    quick: bool = False
    seed: int = 0

    def path(self, filename: str) -> Path:
        return self.out_dir / filename


@dataclass
class Outcome:
    """What an experiment's ``run`` returns.

    ``result`` is JSON-able data (the numbers behind the figures); ``figures`` are file names
    written into ``out_dir``; ``ran`` says what was run and ``observed`` what came out, in a
    sentence or two each; ``claim_holds`` is the experiment's own verdict (``None`` when it
    does not judge), reached by the experiment's fixed ``criterion``.

    ``seeds`` lists the seeds the verdict rests on, and ``spread`` holds, for every judged
    difference, its spread over those seeds (a :func:`._common.spread` record: mean, sd,
    min, max, per seed). A verdict resting on fewer seeds than the experiment's
    ``min_seeds`` is reported as *indicative*; ``indicative=True`` says so for other reasons
    too (e.g. a quick mode whose sizes are too small to judge the claim).
    """

    result: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    ran: str = ""
    observed: str = ""
    claim_holds: bool | None = None
    seeds: list[int] = field(default_factory=list)
    spread: dict[str, Any] = field(default_factory=dict)
    indicative: bool = False


@dataclass(frozen=True)
class Experiment:
    """One reproduction: a paper's claim, the criterion that judges it, and the function that
    runs it.

    ``criterion`` states, in words, the rule that decides ``claim_holds``; it is written in
    the code before any number is produced and copied into ``result.json`` and
    ``REPORT.md``. ``min_seeds`` is the number of seeds the criterion needs before a verdict
    counts as more than indicative.
    """

    name: str
    description: str
    paper: str
    claim: str
    run: Callable[[Context], Outcome]
    slow_quick: bool = False  # its --quick run loads a real pretrained model (tests mark it slow)
    criterion: str = ""
    min_seeds: int = 1

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"experiment name must be non-empty with no spaces, got {self.name!r}")
        if "\n" in self.description:
            raise ValueError(f"experiment {self.name!r}: description must be one line")


_REGISTRY: dict[str, Experiment] = {}
_LOADED = False


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to the registry (a duplicate name is an error)."""
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name] is not experiment:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    _REGISTRY[experiment.name] = experiment
    return experiment


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    import scalelab.experiments as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    _LOADED = True


def list_experiments() -> list[Experiment]:
    """All registered experiments, sorted by name."""
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; a ``ValueError`` listing the known names otherwise."""
    _load_all()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise ValueError(f"unknown experiment {name!r}; known: {known} (or 'list', 'all')")
    return _REGISTRY[name]
