"""The registry of weight-pruning methods: one entry per method, one file per method.

An entry says what a method needs (data or not), how it scores, whether it prunes at
initialisation, and how it turns a :class:`MaskRequest` into boolean masks. Built-in entries
are registered where their scores live (``scores.py``: magnitude, random, snip, grasp;
``synflow.py``; ``sbp_sr.py``; ``stochastic_train.py``). A new method is one new module
that calls :func:`register_method` and is imported by the package ``__init__``.

:func:`~scalelab.prune.prune_at_init` accepts every entry with ``at_init=True``; entries with
``at_init=False`` (the stochastic masks, which train) are reached through their own
functions or :func:`compute_masks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import check_choice, check_fraction
from .masks import SCOPES, topk_masks

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DATA_HELP = "an (x, y) batch or an iterable of them (e.g. a DataLoader)"


@dataclass(frozen=True)
class MaskRequest:
    """Everything a method may read to compute masks; it must not modify ``model``.

    Attributes:
        model: the (dense) model; sparsity: fraction removed, in [0, 1); scope: ``"global"``
            or ``"layer"``; data: an ``(x, y)`` batch or an iterable of them (or None);
        loss_fn: ``loss_fn(outputs, y)`` or None (cross-entropy); seed: for random choices;
        iterations: rounds (SynFlow) or training steps (stochastic); input_shape: one
            input's shape, no batch dimension (SynFlow on conv nets); options: any
            method-specific keyword arguments.
    """

    model: nn.Module
    sparsity: float
    scope: str = "global"
    data: Any = None
    loss_fn: LossFn | None = None
    seed: int = 0
    iterations: int = 100
    input_shape: Iterable[int] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


MaskFn = Callable[[MaskRequest], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class PruneMethod:
    """One weight-pruning method.

    Attributes:
        name: what ``method=`` takes; needs_data: whether ``data`` is required;
        scoring: one line on how it scores (shown in the docs and ``--help``);
        masks: ``masks(request) -> {layer name: bool mask}``, exactly
            ``round((1 - sparsity) * N)`` kept (per layer with ``scope="layer"``);
        at_init: whether :func:`~scalelab.prune.prune_at_init` offers it;
        check: optional ``check(model) -> notes`` run before scoring (it may warn);
        paper: the arXiv id of the method.
    """

    name: str
    needs_data: bool
    scoring: str
    masks: MaskFn
    at_init: bool = True
    check: Callable[[nn.Module], list[str]] | None = None
    paper: str = ""


_METHODS: dict[str, PruneMethod] = {}


def register_method(method: PruneMethod) -> PruneMethod:
    """Add ``method`` to the registry (a second entry under the same name is an error)."""
    if not method.name or any(c.isspace() for c in method.name):
        raise ValueError(f"method name must be non-empty with no spaces, got {method.name!r}")
    if method.name in _METHODS and _METHODS[method.name] is not method:
        raise ValueError(f"pruning method {method.name!r} is registered twice")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> PruneMethod:
    """Remove and return the entry called ``name`` (a ``ValueError`` if there is none)."""
    entry = get_method(name)
    del _METHODS[name]
    return entry


def score_method(name: str, scores: Callable[[MaskRequest], Mapping[str, torch.Tensor]], *,
                 needs_data: bool, scoring: str, paper: str = "",
                 check: Callable[[nn.Module], list[str]] | None = None) -> PruneMethod:
    """Register a one-shot method: ``scores(request)``, then exact top-k (:func:`topk_masks`)."""

    def masks(req: MaskRequest) -> dict[str, torch.Tensor]:
        return topk_masks(scores(req), req.sparsity, req.scope)

    return register_method(PruneMethod(name=name, needs_data=needs_data, scoring=scoring,
                                       masks=masks, check=check, paper=paper))


def get_method(name: str) -> PruneMethod:
    """The entry called ``name``; a ``ValueError`` listing the registered names otherwise."""
    check_choice("method", name, list(_METHODS))
    return _METHODS[name]


def list_methods(*, at_init: bool | None = None) -> list[PruneMethod]:
    """Registered methods in registration order (only those with that ``at_init`` if given)."""
    return [m for m in _METHODS.values() if at_init is None or m.at_init == at_init]


def compute_masks(model: nn.Module, sparsity: float, method: str, *, scope: str = "global",
                  data=None, loss_fn: LossFn | None = None, seed: int = 0,
                  iterations: int = 100, input_shape: Iterable[int] | None = None,
                  **options: Any) -> dict[str, torch.Tensor]:
    """Boolean masks from any registered method, without touching ``model``.

    The building block of :func:`~scalelab.prune.prune_at_init` (which adds the collapse
    check, the torch masks, the rescaling and the report). ``options`` go to the method
    (e.g. ``init=``, ``steps=`` for ``"stochastic"``).
    """
    entry = get_method(method)
    sparsity = check_fraction("sparsity", sparsity, high_open=True)
    check_choice("scope", scope, SCOPES)
    if entry.needs_data and data is None:
        raise ValueError(f"method={method!r} needs data: {DATA_HELP}")
    return entry.masks(MaskRequest(model=model, sparsity=sparsity, scope=scope, data=data,
                                   loss_fn=loss_fn, seed=seed, iterations=iterations,
                                   input_shape=input_shape, options=dict(options)))
