"""Torch modules for the theory's activations: one table, keyed by :data:`scalelab.theory.ACTIVATIONS`.

:data:`TORCH_ACTIVATIONS` maps every registered theory name to the torch module computing
the same function (``name -> (module class, fixed settings, parameter attributes)``).
Both directions are read from it:

- :func:`activation_module` — name / :class:`~scalelab.theory.Activation` -> a fresh module
  (the parameters, and their defaults, come from :func:`scalelab.theory.get_activation`);
- :func:`module_activation` — a module -> the theory ``Activation`` it computes, or None
  (what :func:`scalelab.nn.detect_activation` and the Edge-of-Chaos init read);

Its keys are exactly the theory's names (tested, with the torch forward against the numpy
function on a grid); help texts list them with :func:`scalelab.theory.activation_names`.
arXiv 1902.06853.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..theory import Activation, get_activation


class _Lambda(nn.Module):
    """An elementwise function of tensors as a module (``torch.abs``, ``torch.erf``, a user's)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


#: theory name -> (module class, settings fixed for this name, {theory parameter: module
#: attribute}). Built as ``cls(**fixed, **{attr: value})``; a module is recognised when its
#: type is ``cls`` and its fixed settings match. ``swish`` is theory's alias of ``silu``.
TORCH_ACTIVATIONS: dict[str, tuple[type[nn.Module], dict[str, object], dict[str, str]]] = {
    "relu": (nn.ReLU, {}, {}),
    "leaky_relu": (nn.LeakyReLU, {}, {"slope": "negative_slope"}),
    "tanh": (nn.Tanh, {}, {}),
    "elu": (nn.ELU, {}, {"alpha": "alpha"}),
    "selu": (nn.SELU, {}, {}),
    "gelu": (nn.GELU, {"approximate": "none"}, {}),
    "gelu_tanh": (nn.GELU, {"approximate": "tanh"}, {}),
    "silu": (nn.SiLU, {}, {}),
    "swish": (nn.SiLU, {}, {}),
    "softplus": (nn.Softplus, {}, {"beta": "beta"}),
    "sigmoid": (nn.Sigmoid, {}, {}),
    "erf": (_Lambda, {"fn": torch.erf}, {}),
    "linear": (nn.Identity, {}, {}),
    "abs": (_Lambda, {"fn": torch.abs}, {}),
}


def _build(a: Activation) -> nn.Module:
    if a.name not in TORCH_ACTIVATIONS:
        raise ValueError(f"act {a!r} has no torch counterpart; pass a torch module or a "
                         "callable on tensors")
    cls, fixed, attrs = TORCH_ACTIVATIONS[a.name]
    params = dict(a.params)
    return cls(**fixed, **{attr: params[p] for p, attr in attrs.items()})


def activation_module(act) -> nn.Module:
    """A fresh torch module for ``act``.

    Args:
        act: a name of :data:`scalelab.theory.ACTIVATIONS` (relu, tanh, gelu, gelu_tanh,
            silu/swish, elu, selu, leaky_relu, softplus, sigmoid, linear, abs, erf; default
            parameters as in :func:`scalelab.theory.get_activation`), an ``Activation`` from
            ``get_activation`` (its numpy functions are replaced by the torch module of
            the same name and parameters), an ``nn.Module`` (used as is), or a callable on
            torch tensors.
    Returns:
        An ``nn.Module`` applying the activation elementwise.
    """
    if isinstance(act, str):
        if act not in TORCH_ACTIVATIONS:
            raise ValueError(f"act must be one of {', '.join(map(repr, TORCH_ACTIVATIONS))}, "
                             f"a module or a callable; got {act!r}")
        return _build(get_activation(act))
    if isinstance(act, nn.Module):
        return act
    if isinstance(act, Activation):
        return _build(act)
    if callable(act):
        return _Lambda(act)
    raise ValueError(f"act must be an activation name, a module or a callable, got {act!r}")


def module_activation(m: nn.Module) -> Activation | None:
    """The theory :class:`~scalelab.theory.Activation` that module ``m`` computes, or None.

    The inverse of :func:`activation_module` on :data:`TORCH_ACTIVATIONS`: ``m``'s type must
    be the table's class exactly (a subclass may compute something else) and its fixed
    settings must match (``nn.GELU(approximate="tanh")`` is ``gelu_tanh``); the parameters
    are read off the module (``nn.ELU(0.5)`` gives ``elu`` with ``alpha=0.5``). A thin wrapper
    module whose ``fn`` is ``torch.erf`` / ``torch.abs`` is ``erf`` / ``abs``.
    """
    for name, (cls, fixed, attrs) in TORCH_ACTIVATIONS.items():
        if cls is _Lambda:  # any wrapper holding the function (as before: by its ``fn``)
            if getattr(m, "fn", None) is not fixed["fn"]:
                continue
        elif type(m) is not cls or any(getattr(m, k, None) != v for k, v in fixed.items()):
            continue
        return get_activation(name, **{p: getattr(m, attr) for p, attr in attrs.items()})
    return None
