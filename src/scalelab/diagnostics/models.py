"""A user's saved model for ``scalelab diagnose`` (the reference MLPs / ResNets live in
:mod:`scalelab.nn.reference`; ``reference_mlp`` / ``reference_model`` here are aliases).

A user's model arrives either as a ``state_dict`` for a reference architecture (loaded with
``torch.load(..., weights_only=True)``: tensors only, no code runs) or as a TorchScript file.
Hooks and ``torch.func`` cannot see inside TorchScript, so :func:`from_torchscript` rebuilds
an eager copy of a scripted ``nn.Sequential`` of Linear layers and elementwise activations
(weights copied); anything else gets a one-line error saying what to save instead. A fully
pickled model is never unpickled (that would run arbitrary code).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..nn.reference import INITS as INITS  # aliases: the home is scalelab.nn.reference
from ..nn.reference import REFERENCE_MODELS as REFERENCE_MODELS
from ..nn.reference import reference_mlp as reference_mlp
from ..nn.reference import reference_model as reference_model


def load_state_dict_file(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights saved with ``torch.save(model.state_dict(), path)`` (tensors only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"state dict file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused or a corrupt file: one line for the user
        raise ValueError(f"state dict {path} could not be loaded with weights_only=True "
                         f"({type(e).__name__}); save it with torch.save(model.state_dict(), "
                         f"path)") from None
    if not isinstance(state, dict):
        raise ValueError(f"state dict {path} must hold a dict of tensors, got "
                         f"{type(state).__name__}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"state dict {path} does not fit the reference model ({first}); check "
                         f"--model/--width/--depth/--act") from None
    return model


def _leaf(name: str, sm) -> nn.Module:
    def attr(key: str):
        return getattr(sm, key)

    simple: dict[str, Callable[[], nn.Module]] = {
        "Tanh": nn.Tanh, "ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "SiLU": nn.SiLU,
        "SELU": nn.SELU, "Identity": nn.Identity, "Mish": nn.Mish, "Hardtanh": nn.Hardtanh,
    }
    try:
        if name in simple:
            return simple[name]()
        if name == "LeakyReLU":
            return nn.LeakyReLU(attr("negative_slope"))
        if name == "ELU":
            return nn.ELU(attr("alpha"))
        if name == "GELU":
            return nn.GELU(attr("approximate"))
        if name == "Softplus":
            return nn.Softplus(attr("beta"), attr("threshold"))
        if name == "Flatten":
            return nn.Flatten(attr("start_dim"), attr("end_dim"))
    except AttributeError:
        raise ValueError(f"TorchScript module {name} lost its settings (a traced model?); "
                         f"script it with torch.jit.script, or save a state_dict") from None
    raise ValueError(f"cannot rebuild TorchScript module of type {name!r} in eager mode (only "
                     f"nn.Sequential of Linear layers and elementwise activations); save a "
                     f"state_dict for a reference architecture instead")


def _rebuild(sm) -> nn.Module:
    name = getattr(sm, "original_name", type(sm).__name__)
    children = list(sm.named_children())
    if name == "Sequential":
        return nn.Sequential(*[_rebuild(c) for _, c in children])
    if name == "Linear":
        w = sm.weight.detach()
        b = getattr(sm, "bias", None)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b.detach())
        return lin
    if children or list(sm.named_parameters(recurse=False)):
        raise ValueError(f"cannot rebuild TorchScript module of type {name!r} in eager mode "
                         f"(only nn.Sequential of Linear layers and elementwise activations); "
                         f"save a state_dict for a reference architecture instead")
    return _leaf(name, sm)


def from_torchscript(path_or_module) -> nn.Module:
    """An eager copy of a TorchScript ``nn.Sequential`` of Linear layers and activations.

    Args:
        path_or_module: a file written by ``torch.jit.save`` or a loaded ScriptModule.
    Returns:
        An ``nn.Sequential`` with the same weights, in eval mode (gives the same outputs).
    """
    sm = path_or_module
    if not isinstance(sm, torch.jit.ScriptModule):
        path = Path(sm)
        if not path.is_file():
            raise FileNotFoundError(f"TorchScript file not found: {path}")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated; the user chose it
                warnings.simplefilter("ignore", DeprecationWarning)
                sm = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
            raise ValueError(f"{path} is not a TorchScript file written by torch.jit.save "
                             f"({first[:120]})") from None
    model = _rebuild(sm)
    return model.eval()
