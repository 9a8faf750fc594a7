"""What pruning did: sparsity overall and per layer, collapsed layers, rescaling applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .layers import neuron_sqnorm, prunable_layers


@dataclass(frozen=True)
class LayerRescale:
    """The factors :func:`~scalelab.prune.rescale_to_eoc_` applied to one layer's neurons.

    ``rho_*`` summarise the factors of neurons that kept at least one weight;
    ``dead_neurons`` kept none and were left alone.
    """

    neurons: int
    dead_neurons: int
    rho_min: float
    rho_max: float
    rho_mean: float


@dataclass(frozen=True)
class LayerReport:
    """One pruned layer: its weight shape, how many weights it kept, and its dead neurons."""

    name: str
    kind: str
    shape: tuple[int, ...]
    total: int
    kept: int
    dead_neurons: int
    rescale: LayerRescale | None = None

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.total if self.total else 0.0

    @property
    def collapsed(self) -> bool:
        """Whether the layer kept no weight at all (layer collapse: no signal gets through)."""
        return self.kept == 0


@dataclass
class PruneReport:
    """What :func:`~scalelab.prune.prune_at_init` did.

    Attributes:
        method, scope: as passed; sparsity: the requested fraction removed.
        total, kept: prunable weights in the model, and how many survived.
        layers: one :class:`LayerReport` per Linear / Conv layer, in registration order.
        collapsed: names of layers left with no weights (layer collapse).
        rescaled: whether :func:`~scalelab.prune.rescale_to_eoc_` was applied.
        seconds: wall time to score and mask.
        notes: anything else worth knowing (e.g. SBP-SR's check of the residual scales).
    """

    method: str
    scope: str
    sparsity: float
    total: int
    kept: int
    layers: list[LayerReport]
    rescaled: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def achieved_sparsity(self) -> float:
        return 1.0 - self.kept / self.total if self.total else 0.0

    @property
    def collapsed(self) -> list[str]:
        return [layer.name for layer in self.layers if layer.collapsed]

    @property
    def layer_sparsity(self) -> dict[str, float]:
        return {layer.name: layer.sparsity for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (what ``scalelab prune --json`` prints)."""
        return {
            "method": self.method, "scope": self.scope, "sparsity": self.sparsity,
            "achieved_sparsity": self.achieved_sparsity, "total": self.total,
            "kept": self.kept, "collapsed": self.collapsed, "rescaled": self.rescaled,
            "seconds": self.seconds, "notes": list(self.notes),
            "layers": [{
                "name": ly.name, "kind": ly.kind, "shape": list(ly.shape), "total": ly.total,
                "kept": ly.kept, "sparsity": ly.sparsity, "dead_neurons": ly.dead_neurons,
                "rho_min": ly.rescale.rho_min if ly.rescale else None,
                "rho_max": ly.rescale.rho_max if ly.rescale else None,
            } for ly in self.layers],
        }

    def __str__(self) -> str:
        collapsed = ", ".join(self.collapsed) or "none"
        head = [
            f"method {self.method}, scope {self.scope}: sparsity {self.sparsity:.4g} asked, "
            f"{self.achieved_sparsity:.4f} achieved (kept {self.kept:,} of {self.total:,} "
            f"weights) in {self.seconds:.2f} s",
            f"layer collapse: {collapsed}; rescaled to the EOC: "
            f"{'yes' if self.rescaled else 'no'}",
        ]
        head += [f"note: {n}" for n in self.notes]
        rows = [("layer", "kind", "shape", "kept/total", "sparsity", "dead", "rho range")]
        for ly in self.layers:
            rho = (f"{ly.rescale.rho_min:.3g}-{ly.rescale.rho_max:.3g}" if ly.rescale else "-")
            rows.append((ly.name, ly.kind, "x".join(map(str, ly.shape)),
                         f"{ly.kept:,}/{ly.total:,}", f"{ly.sparsity:.4f}",
                         str(ly.dead_neurons), rho + (" COLLAPSED" if ly.collapsed else "")))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        table = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        return "\n".join(head + [""] + table)


def mask_report(model: nn.Module, masks: Mapping[str, torch.Tensor], *, method: str, scope: str,
                sparsity: float, rescaled: Mapping[str, LayerRescale] | None = None,
                seconds: float = 0.0, notes: list[str] | None = None) -> PruneReport:
    """A :class:`PruneReport` for ``masks`` (``{layer name: 0/1 mask}``) on ``model``'s layers.

    ``rescaled``: the :func:`~scalelab.prune.rescale_to_eoc_` record if the rescaling was
    applied, else None. Dead neurons are output neurons whose mask row is all zero.
    """
    reports = []
    for name, module in prunable_layers(model):
        mask = masks[name]
        dead = int((neuron_sqnorm(module, mask.float()) == 0).sum())
        reports.append(LayerReport(name=name, kind=type(module).__name__,
                                   shape=tuple(mask.shape), total=mask.numel(),
                                   kept=int(mask.sum()), dead_neurons=dead,
                                   rescale=(rescaled or {}).get(name)))
    return PruneReport(method=method, scope=scope, sparsity=sparsity,
                       total=sum(r.total for r in reports), kept=sum(r.kept for r in reports),
                       layers=reports, rescaled=rescaled is not None, seconds=seconds,
                       notes=list(notes or []))
