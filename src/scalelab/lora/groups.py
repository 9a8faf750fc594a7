"""LoRA+ parameter groups: a pure builder returning ``list[dict]`` for any torch optimizer.

LoRA+ (Hayou, Ghosh & Yu, arXiv 2402.12354): at large width one shared learning rate for
the LoRA factors is inefficient; B needs a larger one, ``lr_B = ratio * lr_A``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import check_positive
from .find import EMBEDDING, LORA_A, LORA_B, MAGNITUDE, param_kind, walk

OFFICIAL_LR_EMBEDDING = 1e-6  # the official code's default for embedding LoRA
#: lr_B / lr_A when none is given: 16 (2^4), the community default; inside the 8-32 range
#: where ``loraplus-width`` found LoRA+ paying, on encoders of width 128-256 (docs/lora.md, "LoRA+
#: across width").
DEFAULT_RATIO = 16.0
OTHER = "other"
# Group order in the returned list; empty groups are dropped.
GROUP_NAMES = (LORA_A, LORA_A + "_no_decay", LORA_B, LORA_B + "_no_decay", MAGNITUDE,
               EMBEDDING, EMBEDDING + "_no_decay", OTHER, OTHER + "_no_decay")

_NORM_TYPES: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
                                 nn.modules.batchnorm._NormBase,
                                 *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def _is_norm(module: nn.Module) -> bool:
    """Normalisation layers (torch's, and any class named ``*Norm*``, e.g. ``LlamaRMSNorm``)."""
    return isinstance(module, _NORM_TYPES) or "Norm" in type(module).__name__


@dataclass
class _Scan:
    trainable: list[tuple[nn.Parameter, nn.Module, str]] = field(default_factory=list)
    n_layers: int = 0  # LoRA layers
    n_lora: int = 0  # LoRA parameters, frozen included
    n_lora_trainable: int = 0


def _scan(model: nn.Module) -> _Scan:
    """One pass over the modules: each trainable parameter once, with its owner and kind.

    Frozen non-LoRA parameters (the bulk of a fine-tuned model) are skipped without
    bookkeeping; this loop is what keeps 1,000 LoRA layers well under 50 ms.
    """
    scan, seen = _Scan(), set()
    trainable = scan.trainable
    for module, lora, kind in walk(model):
        scan.n_layers += lora
        for name, p in module._parameters.items():
            if p is None:
                continue
            k = param_kind(name, lora, kind)
            if (k is None and not p.requires_grad) or id(p) in seen:
                continue
            seen.add(id(p))
            if p.requires_grad:
                trainable.append((p, module, k or OTHER))
                scan.n_lora_trainable += k is not None
            scan.n_lora += k is not None
    return scan


def _check_found(model: nn.Module, scan: _Scan) -> None:
    """Refuse models where LoRA+ would silently become plain single-lr training."""
    name = type(model).__name__
    if scan.n_lora == 0:
        fsdp = any("FullyShardedDataParallel" in type(m).__name__ for m in model.modules())
        hint = ("; under FSDP1 pass use_orig_params=True so LoRA parameters stay visible"
                if fsdp else "; wrap it with peft.get_peft_model or scalelab.lora.add_lora first")
        lookalikes = [n for n, p in model.named_parameters() if "lora" in n.lower()]
        if lookalikes:
            hint = (f"; {len(lookalikes)} parameters are named like LoRA (e.g. {lookalikes[0]!r}) "
                    "but their modules are neither PEFT LoraLayer nor scalelab LoRALinear" + hint)
        raise ValueError(f"found no LoRA parameters in {name} ({len(scan.trainable)} trainable "
                         f"parameter tensors, {scan.n_layers} LoRA layers){hint}")
    if scan.n_lora_trainable == 0:
        raise ValueError(f"all {scan.n_lora} LoRA parameters in {name} are frozen "
                         "(requires_grad=False); load the adapter as trainable "
                         "(e.g. PeftModel.from_pretrained(..., is_trainable=True))")


def loraplus_param_groups(model: nn.Module, *, lr: float, ratio: float = DEFAULT_RATIO,
                          lr_embedding: float | None = None, weight_decay: float = 0.0,
                          head_lr: float | None = None) -> list[dict]:
    """Optimizer parameter groups for LoRA+: B factors at ``lr * ratio``, A factors at ``lr``.

    Args:
        model: a model holding LoRA layers: PEFT ``LoraLayer`` (Linear, Embedding, Conv,
            MultiheadAttention and quantised variants) or scalelab's ``LoRALinear``.
        lr: learning rate of the A factors (> 0).
        ratio: ``lr_B / lr_A`` (> 0); 16 is the community default.
        lr_embedding: learning rate of embedding LoRA (both factors); ``None`` means the
            official code's default, 1e-6.
        weight_decay: applied to decayable parameters only (see below), 0.0 elsewhere.
        head_lr: ``None`` keeps the official policy for non-LoRA trainable parameters
            (matrices at ``lr``, biases/norms at ``lr * ratio``); a number puts every
            trainable non-LoRA parameter at that learning rate.

    Returns:
        A list of dicts with ``"params"``, ``"lr"``, ``"weight_decay"`` and ``"name"``, in the
        order of ``GROUP_NAMES``, empty groups dropped. Every trainable parameter is in exactly
        one group; frozen ones in none.

    Where each parameter goes. LoRA parameters are found by the module that owns them, never by
    name substring; each group name gets ``_no_decay`` for its non-decayable members.
    Decayable means ``ndim >= 2`` and not owned by a normalisation layer.

    | parameter                                   | group              | lr                     | decay |
    |---------------------------------------------|--------------------|------------------------|-------|
    | A factor (Linear, Conv, MultiheadAttention) | ``lora_A``         | ``lr``                 | yes   |
    | B factor                                    | ``lora_B``         | ``lr * ratio``         | yes   |
    | B bias (PEFT ``lora_bias=True``)            | ``lora_B_no_decay``| ``lr * ratio``         | no    |
    | DoRA magnitude (any layer type)             | ``lora_magnitude`` | ``lr * ratio``         | no    |
    | embedding LoRA, A and B                     | ``embedding``      | ``lr_embedding``       | yes   |
    | other matrix: head weight, trainable        | ``other``          | ``lr`` or ``head_lr``  | yes   |
    | embeddings, ``modules_to_save`` copies      |                    |                        |       |
    | bias, norm weight, other 1-D / 0-D tensor   | ``other_no_decay`` | ``lr * ratio`` or      | no    |
    |                                             |                    | ``head_lr``            |       |

    This follows the official LoRA+ code (and PEFT's ``create_loraplus_optimizer``) for every
    learning rate except: DoRA magnitudes of Conv layers (shape ``(1, out, 1, ...)``) are at
    ``lr * ratio`` here, at ``lr`` there (that code tests ``ndim == 1``). Weight decay
    differs: that code decays every parameter not named ``bias`` and not in ``nn.LayerNorm``
    (so DoRA magnitudes and RMSNorm weights), this one only matrices outside norm layers.
    ``head_lr`` and the rule "non-decayable non-LoRA parameters at ``lr * ratio``" are
    scalelab's explicit policy (interpretation): the official code does it because it puts
    every 1-D tensor in the B group. A user can still retune a group by its ``name``.

    Raises:
        ValueError: ``lr``/``ratio``/``lr_embedding``/``head_lr`` not > 0, ``weight_decay`` < 0,
            no LoRA parameters found, or all LoRA parameters frozen.

    Paper: arXiv 2402.12354 (LoRA+).
    """
    lr = check_positive("lr", lr)
    ratio = check_positive("ratio", ratio)
    lr_emb = (OFFICIAL_LR_EMBEDDING if lr_embedding is None
              else check_positive("lr_embedding", lr_embedding))
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    head = None if head_lr is None else check_positive("head_lr", head_lr)
    scan = _scan(model)
    _check_found(model, scan)

    buckets: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for p, owner, kind in scan.trainable:
        if kind == MAGNITUDE or (p.ndim >= 2 and (kind != OTHER or not _is_norm(owner))):
            buckets[kind].append(p)  # LoRA factors never sit in a norm layer: skip that check
        else:
            buckets[kind + "_no_decay"].append(p)

    lrs = {LORA_A: lr, LORA_B: lr * ratio, MAGNITUDE: lr * ratio, EMBEDDING: lr_emb,
           OTHER: lr if head is None else head}
    lrs.update({k + "_no_decay": v for k, v in lrs.items()})
    lrs[OTHER + "_no_decay"] = lr * ratio if head is None else head
    return [{"params": params, "lr": lrs[name], "name": name,
             "weight_decay": weight_decay if name in (LORA_A, LORA_B, EMBEDDING, OTHER) else 0.0}
            for name, params in buckets.items() if params]
