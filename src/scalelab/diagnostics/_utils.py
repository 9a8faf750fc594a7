"""Small helpers the diagnostics share: input checks, eval mode, the first tensor of an output."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from ..nn import model_device, model_dtype


def check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError("model must be an eager torch.nn.Module, got a TorchScript module "
                         "(hooks and torch.func do not see inside it); rebuild it in eager "
                         "mode, e.g. with scalelab.diagnostics.from_torchscript")
    return model


def as_batch(model: nn.Module, x, name: str = "x") -> torch.Tensor:
    """``x`` as a tensor with a batch dimension, floating inputs cast to the model's dtype."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be a tensor or an array, got {type(x).__name__}") \
                from None
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must have a batch dimension with >= 1 example, got shape "
                         f"{tuple(x.shape)}")
    device = model_device(model, default=None)
    if device is not None:  # a model without parameters takes x where it is
        x = x.to(device)
        if x.is_floating_point():
            x = x.to(model_dtype(model))
    if x.is_floating_point() and not torch.all(torch.isfinite(x)):
        raise ValueError(f"{name} must contain only finite numbers, got nan or inf")
    return x


def first_tensor(out) -> torch.Tensor:
    """The tensor a model returned: itself, the first tensor of a tuple/list, or a mapping's
    ``"logits"`` (else its first tensor value), as Hugging Face outputs hold them."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            try:
                return first_tensor(item)
            except ValueError:
                continue
    raise ValueError(f"the model's output holds no tensor (got {type(out).__name__})")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout, running norm statistics), then restore each
    submodule's own training flag."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags.items():
            m.training = flag
