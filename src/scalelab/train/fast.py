"""Building blocks of scalelab's fast fine-tuning path (GPU first, all usable on CPU).

- :func:`compile_regions`: regional compilation -- ``torch.compile`` each repeated decoder
  block in place, so the compile time is that of one block (the blocks share one compiled
  graph; layer 0 gets a second one when its input needs no gradient, as with a frozen
  embedding) and the ``state_dict``, PEFT adapters and hooks are unchanged.
- :func:`fast_optimizer`: LoRA+ AdamW with ``fused=True`` when every trainable parameter is
  on CUDA (the documented rule), the LoRA+ groups unchanged; elsewhere the default
  (``foreach``) implementation, so CPU behaviour is unchanged.
- :func:`packed_batch`: padding-free packing of a right-padded causal-LM batch into one row
  with per-example ``position_ids`` (transformers' ``DataCollatorWithFlattening``); a decoder
  given ``position_ids`` and no ``attention_mask`` keeps attention inside each example.
- :func:`use_tf32_matmuls`: TF32 tensor cores for the fp32 matmuls that remain in a bf16 run
  (PEFT keeps LoRA adapters in fp32), a context manager that restores the setting;
  :func:`autocast_lora`, the alternative: the fp32 adapters compute in bf16 under autocast
  (no fp32 copies of the activations), master weights and optimizer state kept in fp32.

With :func:`scalelab.nn.lm_loss.scored_causal_lm_loss` (the fused, chunked LM head on the
scored rows) these make the path measured by ``benchmarks/gpu_finetune_throughput.py``;
``scalelab finetune`` wires them behind ``--compile/--no-compile``. See docs/finetune.md.

Why not ``accelerate.utils.compile_regions``: it returns a copy whose blocks are
``OptimizedModule`` wrappers (``_orig_mod.`` in parameter names) and it also compiles every
non-repeated leaf (embeddings, norm, LM head); the in-place form here compiles only the
blocks and leaves names and PEFT's saving untouched (the approach of PyTorch's regional
compilation recipe).

Caveats: ``torch.compile`` needs a C++ compiler on CPU and Triton on CUDA; first calls
compile (tens of seconds per distinct graph), and new input shapes recompile unless
``dynamic=True`` is given (then one dynamic graph serves all lengths). Models must run
with ``use_cache=False`` in training (a KV cache object in the layer inputs forces a
recompile per layer); :func:`scored_causal_lm_loss` passes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def decoder_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The repeated blocks of ``model`` as ``(qualified name, module)``, outermost only.

    A block is a module whose class is named in some submodule's ``_no_split_modules``
    (transformers' list of blocks that must stay whole, e.g. ``LlamaDecoderLayer``) or whose
    class name ends in ``DecoderLayer``.
    """
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        cls = type(m).__name__
        if cls not in names and not cls.endswith("DecoderLayer"):
            continue
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue  # inside a block already found
        found.append((name, m))
    return found


def compile_regions(model: nn.Module, **compile_kwargs: Any) -> list[str]:
    """Compile each repeated decoder block of ``model`` in place (``module.compile(...)``).

    Args:
        model: a transformers model, possibly PEFT-wrapped (LoRA layers inside the blocks
            are compiled with them).
        **compile_kwargs: passed to ``torch.compile`` (``mode``, ``dynamic``, ``fullgraph``,
            ``backend``, ...).

    Returns:
        The qualified names of the compiled blocks.

    Raises:
        ValueError: ``model`` has no repeated block (nothing would be compiled).
    """
    blocks = decoder_blocks(model)
    if not blocks:
        raise ValueError(f"compile_regions found no repeated decoder block in "
                         f"{type(model).__name__} (no class from _no_split_modules, none named "
                         "*DecoderLayer); compile it whole with torch.compile instead")
    for _, block in blocks:
        block.compile(**compile_kwargs)
    return [name for name, _ in blocks]


def fused_adamw_ok(model: nn.Module) -> bool:
    """True when every trainable parameter is a floating-point CUDA tensor (fused AdamW's rule)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)


def fast_optimizer(model: nn.Module, *, lr: float, ratio: float = 16.0,
                   fused: bool | None = None, **kw: Any) -> torch.optim.Optimizer:
    """LoRA+ AdamW (:func:`scalelab.lora.create_loraplus_optimizer`), fused on CUDA.

    Args:
        model: the LoRA model.
        lr, ratio: LoRA+'s base lr (the A factors) and lr_B / lr_A.
        fused: ``None`` (default) means ``fused=True`` exactly when :func:`fused_adamw_ok`
            (all trainable parameters on CUDA), else torch's default implementation.
        **kw: ``weight_decay``, ``lr_embedding``, ``head_lr`` and AdamW keywords, as for
            ``create_loraplus_optimizer``.

    Returns:
        ``torch.optim.AdamW`` over the same LoRA+ groups (names, members, lrs) as without
        fusing: the fused kernel reads each group's lr, so the ratio is kept.

    Paper: arXiv 2402.12354 (LoRA+).
    """
    from ..lora import create_loraplus_optimizer

    if fused is None:
        fused = fused_adamw_ok(model)
    if fused:
        kw["fused"] = True
    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, ratio=ratio, **kw)


@contextlib.contextmanager
def use_tf32_matmuls() -> Iterator[None]:
    """Within the block, fp32 matmuls may use TF32 (``set_float32_matmul_precision("high")``).

    Numerical caveat: TF32 keeps 10 mantissa bits (bf16 keeps 7), so in a bf16 run the fp32
    LoRA matmuls stay more precise than the bf16 base ones; the previous setting is restored.
    """
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


@contextlib.contextmanager
def autocast_lora(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> Iterator[None]:
    """Within the block, fp32 LoRA adapters compute in ``dtype``: ``torch.autocast(dtype)``
    with PEFT's input casting off (``cast_input_dtype_enabled = False`` on every PEFT layer,
    as ``peft.helpers.disable_input_dtype_casting`` does).

    For a bf16 base model with PEFT's fp32 adapters: PEFT casts each LoRA input to fp32 and
    runs the adapter in fp32 (an fp32 copy of the activation per projection); here the adapter
    runs in bf16 on the bf16 activation, while its master weights, gradients and AdamW state
    stay fp32. Numerical caveat: the adapter's matmuls round to bf16 like the base ones. The
    flags are restored on exit.
    """
    layers = [m for m in model.modules() if _is_peft_layer(m)]
    old = [getattr(m, "cast_input_dtype_enabled", True) for m in layers]
    device_type = next(model.parameters()).device.type
    for m in layers:
        m.cast_input_dtype_enabled = False
    try:
        with torch.autocast(device_type, dtype=dtype):
            yield
    finally:
        for m, flag in zip(layers, old, strict=True):
            m.cast_input_dtype_enabled = flag


def _is_peft_layer(module: nn.Module) -> bool:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - PEFT not installed: no PEFT layers either
        return False
    return isinstance(module, BaseTunerLayer)


def packed_batch(batch: dict[str, torch.Tensor], *,
                 row_length: int | None = None) -> dict[str, torch.Tensor]:
    """A right-padded causal-LM batch packed padding-free, with per-example positions.

    Args:
        batch: ``input_ids``, ``attention_mask`` (1 on real tokens, a prefix of each row) and
            ``labels`` (``-100`` where nothing is scored), each ``(B, T)``.
        row_length: ``None``: all examples in one row. A number: examples go into rows of
            this many tokens, first-fit in decreasing length (every example stays whole;
            the rest of a row is filler: position ids restarting at 0, labels -100), which
            keeps attention cost near that of the padded batch where a dense-mask kernel
            (SDPA on CPU) would otherwise attend across the whole batch.

    Returns:
        ``{"input_ids", "labels", "position_ids"}``, each ``(rows, length)``, each row built
        by ``transformers.DataCollatorWithFlattening``: positions restart at 0 for every
        example, and each example's first label is ``-100``, so no token is scored across a
        boundary. Pass no ``attention_mask`` with it: transformers then derives the
        block-diagonal causal mask from the positions (sdpa/eager attention) or uses the
        varlen kernels (flash attention). The summed loss equals the padded batch's.

    Raises:
        ValueError: a missing key, an ``attention_mask`` that is not right padding, or a
            ``row_length`` shorter than the longest example.
    """
    from transformers import DataCollatorWithFlattening

    for key in ("input_ids", "attention_mask", "labels"):
        if key not in batch:
            raise ValueError(f"batch must have {key!r} to be packed; got keys {sorted(batch)}")
    mask = batch["attention_mask"].bool()
    lengths = mask.sum(1).tolist()
    prefix = torch.arange(mask.shape[1], device=mask.device)[None] < mask.sum(1)[:, None]
    if not torch.equal(mask, prefix):
        raise ValueError("attention_mask must be right padding (ones, then zeros) to be packed")
    examples = [{"input_ids": ids[:n].tolist(), "labels": lab[:n].tolist()}
                for ids, lab, n in zip(batch["input_ids"], batch["labels"], lengths,
                                       strict=True)]
    collate = DataCollatorWithFlattening(return_position_ids=True)
    device = batch["input_ids"].device
    keys = ("input_ids", "labels", "position_ids")
    if row_length is None:
        out = collate(examples, return_tensors="pt")
        return {k: out[k].to(device) for k in keys}
    if isinstance(row_length, bool) or not isinstance(row_length, int) or \
            row_length < max(lengths):
        raise ValueError(f"row_length must be an integer >= the longest example "
                         f"({max(lengths)}), got {row_length!r}")
    bins: list[list[int]] = []  # first-fit decreasing
    used: list[int] = []
    for i in sorted(range(len(examples)), key=lambda i: -lengths[i]):
        j = next((j for j, u in enumerate(used) if u + lengths[i] <= row_length), None)
        if j is None:
            bins.append([i])
            used.append(lengths[i])
        else:
            bins[j].append(i)
            used[j] += lengths[i]
    width = max(used)
    rows = {k: torch.zeros((len(bins), width), dtype=torch.long) for k in keys}
    rows["labels"].fill_(-100)
    for r, members in enumerate(bins):
        out = collate([examples[i] for i in members], return_tensors="pt")
        n = out["input_ids"].shape[1]
        for k in keys:
            rows[k][r, :n] = out[k][0]
        rows["position_ids"][r, n:] = torch.arange(width - n)  # filler: its own block
    return {k: v.to(device) for k, v in rows.items()}
