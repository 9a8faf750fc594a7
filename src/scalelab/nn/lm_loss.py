"""The LM head fused with cross-entropy in row chunks, and a causal-LM loss on scored rows only.

- :func:`linear_cross_entropy`: ``cross_entropy(hidden @ weight.T + bias, targets)`` computed
  ``chunk_size`` rows at a time by one ``torch.autograd.Function``, so the ``(rows, vocab)``
  logits are never materialised in full. The forward pass computes each chunk's logits, its
  loss and at once its gradients w.r.t. ``hidden`` (and ``weight``/``bias`` when they need
  one); the backward pass only scales those stored gradients by ``grad_output``. The idea is
  Liger-Kernel's fused linear cross-entropy (arXiv 2410.10989), written here in plain torch
  (no Triton), so it runs on any device.
- :func:`scored_causal_lm_loss`: runs the decoder body of a Hugging Face causal LM (PEFT-wrapped
  or not), shifts the labels as ``transformers``' ``ForCausalLMLoss`` does, gathers ONLY the
  scored positions (shifted label != ``ignore_index``) and applies the head + loss to them.
  Returns ``(loss_sum, n_scored)`` so that a caller can divide by a global token count (the
  exact distributed mean).
- :class:`ScoredCausalLM`: an ``nn.Module`` wrapper whose ``forward`` is that loss, so that
  Accelerate (autocast), DDP and FSDP can wrap the whole computation.

Usage (what ``scalelab finetune`` does for causal LMs)::

    loss_model = ScoredCausalLM(peft_model)          # wrap BEFORE accelerator.prepare
    loss_model = accelerator.prepare(loss_model)      # autocast + DDP/FSDP around forward
    loss_sum, n = loss_model(input_ids, attention_mask, labels)
    accelerator.backward(loss_sum / global_n)         # global_n: n summed over processes

Numerical notes: logits are computed in the compute dtype (the autocast dtype when autocast
is on, else that of ``hidden``/``weight``) and upcast to fp32 per chunk, as ``transformers``
does with the full logits; the loss, and the weight/bias gradients across chunks, accumulate
in fp32 (fp64 for fp64 inputs). ``hidden``'s gradient is stored in ``hidden``'s dtype. The
stored gradients are those of the loss itself, so the backward pass is exact only for a
linear use of the loss (``a * loss + b``); a second derivative is not supported.

Interpretation (not fixed by a paper): a model whose head is not a plain linear map is not
fused. :func:`unfused_reason` says why (LM head not ``nn.Linear`` -- e.g. LoRA on ``lm_head``
--, logit soft-capping, a logit scale, a hidden-state multiplier before the head, a loss other
than ``ForCausalLMLoss``, an MoE router auxiliary loss); for those :func:`scored_causal_lm_loss`
falls back to the model's own full logits (gathered at the scored rows, then cross-entropy in
fp32) -- the same loss, without the speed-up -- or raises ``ValueError`` with
``fallback=False``. Models with ``output_router_logits=True`` always raise: the sum form here
has no router loss. See docs/finetune.md.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice, check_int

#: Rows per chunk by default: a (1024, 32000) fp32 chunk of logits is 131 MB.
DEFAULT_CHUNK_SIZE = 1024


def _no_autocast(device_type: str):
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.autocast(device_type, enabled=False)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        pass
    return contextlib.nullcontext()


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The autocast dtype when autocast is on for this device (and applies), else the promotion."""
    dtype = torch.promote_types(hidden.dtype, weight.dtype)
    try:
        if torch.is_autocast_enabled(hidden.device.type) and dtype in (torch.float32,
                                                                        torch.float64):
            return torch.get_autocast_dtype(hidden.device.type)
    except (RuntimeError, TypeError, AttributeError):
        pass
    return dtype


def _chunk_in_place(logits, t, ok, acc, want_grad, need_b):
    """Loss sum and d loss / d logits of one chunk, eagerly, reusing the logits buffer."""
    logits = logits.to(acc)  # (c, V), the only vocab-sized buffer (a copy for bf16)
    lse = torch.logsumexp(logits, dim=1)  # (c,)
    picked = logits.gather(1, t).squeeze(1)  # (c,)
    loss = torch.where(ok, lse - picked, 0.0).sum()
    if not want_grad:
        return loss, None, None
    d = logits.sub_(lse[:, None]).exp_()  # softmax - onehot(target), zero on ignored rows
    d.scatter_add_(1, t, -ok[:, None].to(acc))
    d.mul_(ok[:, None])
    return loss, d, d.sum(0) if need_b else None


def _chunk_math(logits, t, ok, want_grad: bool, need_b: bool):
    """The same as :func:`_chunk_in_place`, written out of place for ``torch.compile`` (which
    fuses it into a reduction and one pointwise pass; the gradient comes back in the logits'
    dtype)."""
    x = logits.float() if logits.dtype != torch.float64 else logits
    lse = torch.logsumexp(x, dim=1)
    picked = x.gather(1, t).squeeze(1)
    loss = torch.where(ok, lse - picked, 0.0).sum()
    if not want_grad:
        return loss, None, None
    p = torch.exp(x - lse[:, None])
    cols = torch.arange(x.shape[1], device=x.device)[None]  # (1, V)
    d = torch.where(cols == t, p - 1.0, p) * ok[:, None]
    return loss, d.to(logits.dtype), d.sum(0) if need_b else None


_COMPILED: dict[str, object] = {}


def _compiled_chunk():
    if "fn" not in _COMPILED:
        _COMPILED["fn"] = torch.compile(_chunk_math, fullgraph=True)
    return _COMPILED["fn"]


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and its gradients chunk by chunk; backward scales them."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size, ignore_index, mean,
                compute_dtype, want_grad, compile_chunks):
        need_h = want_grad and ctx.needs_input_grad[0]
        need_w = want_grad and ctx.needs_input_grad[1]
        need_b = want_grad and bias is not None and ctx.needs_input_grad[2]
        grads = need_h or need_w or need_b
        acc = torch.promote_types(compute_dtype, torch.float32)
        n, d = hidden.shape
        v = weight.shape[0]
        chunk_fn = _compiled_chunk() if compile_chunks else None
        with _no_autocast(hidden.device.type):
            w = weight.to(compute_dtype)
            b = bias.to(compute_dtype) if bias is not None else None
            valid = targets != ignore_index  # (N,)
            loss = torch.zeros((), dtype=acc, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros((v, d), dtype=acc, device=weight.device) if need_w else None
            grad_b = torch.zeros((v,), dtype=acc, device=weight.device) if need_b else None
            for s in range(0, n, chunk_size):
                h = hidden[s:s + chunk_size].to(compute_dtype)  # (c, D)
                ok = valid[s:s + chunk_size]  # (c,)
                t = torch.where(ok, targets[s:s + chunk_size], 0)[:, None]  # (c, 1)
                logits = F.linear(h, w, b)  # (c, V) in the compute dtype
                if chunk_fn is not None:
                    loss_c, dl, db = chunk_fn(logits, t, ok, grads, need_b)
                else:
                    loss_c, dl, db = _chunk_in_place(logits, t, ok, acc, grads, need_b)
                loss += loss_c
                if not grads:
                    continue
                dl = dl.to(compute_dtype)
                if need_h:
                    grad_h[s:s + chunk_size] = dl @ w  # (c, D)
                if need_w:
                    if dl.dtype == acc:
                        grad_w.addmm_(dl.t(), h)  # (V, D)
                    else:
                        grad_w += dl.t() @ h
                if need_b:
                    grad_b += db
            if mean:
                count = valid.sum().to(acc)
                loss = loss / count  # NaN when nothing is scored, as torch gives
                for g in (grad_h, grad_w, grad_b):  # zeros then, as torch gives
                    if g is not None:
                        g.div_(count.clamp_min(1).to(g.dtype))
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(w_dtype) if grad_w is not None else None
        gb = (grad_b * grad_out).to(b_dtype) if grad_b is not None else None
        return gh, gw, gb, None, None, None, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                         bias: torch.Tensor | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                         ignore_index: int = -100, reduction: str = "sum",
                         compile_chunks: bool = False) -> torch.Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias), targets)`` without the full logits.

    Args:
        hidden: ``(N, D)`` rows (any float dtype; any leading shape is flattened).
        weight: ``(V, D)`` the LM head (frozen or trainable).
        targets: ``(N,)`` class ids in ``[0, V)`` or ``ignore_index``.
        bias: optional ``(V,)``.
        chunk_size: rows per chunk; the largest temporary is ``(chunk_size, V)`` in fp32.
        ignore_index: targets with this value score nothing (as in ``F.cross_entropy``).
        reduction: ``"sum"`` or ``"mean"`` (over non-ignored rows; NaN if there are none, as
            torch gives). ``"none"`` is not offered: per-row weights would need the logits
            again in the backward pass.
        compile_chunks: run each chunk's softmax/gradient arithmetic as one
            ``torch.compile``-d function (a reduction and one fused pass over the chunk
            instead of ~8 eager passes; worth it on a GPU, where those passes are
            memory-bound). It compiles on first use (and once more for a differently sized
            last chunk); the matmuls stay eager. Same numbers up to fp32 reassociation.

    Returns:
        A 0-d tensor in fp32 (fp64 for fp64 inputs).

    Raises:
        ValueError: mismatched shapes, a bad ``chunk_size``/``reduction``, or a target outside
            ``[0, V)`` other than ``ignore_index`` (checked up front, one device sync).

    Paper: the fused linear cross-entropy of Liger-Kernel, arXiv 2410.10989 (re-implemented).
    """
    chunk_size = check_int("chunk_size", chunk_size)
    check_choice("reduction", reduction, ("sum", "mean"))
    hidden = hidden.reshape(-1, hidden.shape[-1]) if hidden.ndim != 2 else hidden
    targets = targets.reshape(-1)
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight must be (vocab, {hidden.shape[1]}) to match hidden, got "
                         f"{tuple(weight.shape)}")
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"targets must have one entry per row of hidden ({hidden.shape[0]}), "
                         f"got {targets.shape[0]}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")
    v = weight.shape[0]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= v))
    if targets.numel() and bool(bad.any()):
        raise ValueError(f"targets must be in [0, {v}) or ignore_index={ignore_index}, got "
                         f"{int(targets[bad][0])}")
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk_size, ignore_index,
                                     reduction == "mean", _compute_dtype(hidden, weight),
                                     torch.is_grad_enabled(), bool(compile_chunks))


# --- Hugging Face causal LMs -----------------------------------------------------------------

# Config fields that change the logits after the linear head (Gemma 2/3 soft-capping, Cohere's
# logit scale, Granite's logits scaling, Falcon-H1's multiplier); "None"/1 means unused.
_HEAD_CONFIG_FIELDS = ("final_logit_softcapping", "logit_scale", "logits_scaling",
                       "lm_head_multiplier", "output_multiplier_scale")
_LM_HEAD_CALL = re.compile(r"^logits\s*=\s*self\.lm_head\((hidden_states|outputs(\.\w+|\[0\]))"
                           r"(\[[^\]]*\])?\)(\.float\(\)|\.contiguous\(\))?$")
_LOGITS_CHANGE = re.compile(r"^logits\s*(=|\*=|/=|\+=|-=)")
_HIDDEN_CHANGE = re.compile(r"^hidden_states\s*(\*=|/=|=\s*hidden_states\s*[*/]|=\s*self\.)")


def causal_lm_base(model: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` module inside DDP/FSDP-style ``.module`` and PEFT wrappers."""
    m = model
    for _ in range(8):
        if hasattr(m, "get_base_model") and callable(m.get_base_model):
            m = m.get_base_model()
        elif isinstance(getattr(m, "module", None), nn.Module) and not hasattr(
                m, "get_output_embeddings"):
            m = m.module
        else:
            break
    return m


@functools.lru_cache(maxsize=64)
def _source_reason(cls: type) -> str | None:
    """Scan ``cls.forward`` for code that changes the hidden states or logits around the head."""
    try:
        src = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return f"the source of {cls.__name__}.forward cannot be read to check its head"
    lines = [ln.split("#")[0].strip() for ln in src.splitlines()]
    heads = [i for i, ln in enumerate(lines) if "self.lm_head(" in ln]
    if len(heads) != 1:
        return f"{cls.__name__}.forward does not call self.lm_head exactly once"
    i = heads[0]
    if not _LM_HEAD_CALL.match(lines[i]):
        return f"{cls.__name__}.forward transforms the head's output ({lines[i]!r})"
    after = lines[i + 1:]
    end = next((k for k, ln in enumerate(after) if "loss_function(" in ln or
                ln.startswith("return")), len(after))
    for ln in after[:end]:
        if _LOGITS_CHANGE.match(ln) and ln.replace(" ", "") != "logits=logits.float()":
            return f"{cls.__name__}.forward changes the logits after the head ({ln!r})"
    body = [k for k, ln in enumerate(lines[:i]) if "self.model(" in ln or "self.transformer(" in ln]
    for ln in lines[(body[0] if body else 0):i]:
        if _HIDDEN_CHANGE.match(ln):
            return f"{cls.__name__}.forward scales the hidden states before the head ({ln!r})"
    return None


def unfused_reason(model: nn.Module) -> str | None:
    """Why :func:`scored_causal_lm_loss` cannot fuse this model's head (``None``: it can).

    ``model`` may be PEFT- or DDP-wrapped. See the module docstring for the rules.
    """
    base = causal_lm_base(model)
    name = type(base).__name__
    get_head = getattr(base, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        return f"{name} has no output embeddings (get_output_embeddings() is None)"
    if type(head) is not nn.Linear:
        return (f"its LM head is a {type(head).__name__}, not a plain nn.Linear (LoRA or "
                "quantisation on lm_head?)")
    config = getattr(base, "config", None)
    for f in _HEAD_CONFIG_FIELDS:
        value = getattr(config, f, None)
        if value is not None and value not in (1, 1.0) and not isinstance(value, bool):
            return f"config.{f}={value!r} changes the logits after the linear head"
    loss_fn = getattr(base, "loss_function", None)
    if getattr(loss_fn, "__name__", None) != "ForCausalLMLoss":
        return (f"{name}'s loss is {getattr(loss_fn, '__name__', loss_fn)!r}, not "
                "transformers' ForCausalLMLoss")
    try:
        body = base.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        body = None
    if not isinstance(body, nn.Module) or body is base:
        return f"{name} has no separate decoder body (get_decoder())"
    return _source_reason(type(base))


@functools.lru_cache(maxsize=64)
def _takes_use_cache(cls: type) -> bool:
    params = inspect.signature(cls.forward).parameters
    return "use_cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _decoder_hidden(base: nn.Module, input_ids, attention_mask, position_ids, kwargs):
    body = base.get_decoder()
    if position_ids is not None:  # not every decoder takes it (e.g. BART's)
        kwargs = {**kwargs, "position_ids": position_ids}
    if _takes_use_cache(type(body)):
        kwargs = {**kwargs, "use_cache": False}
    out = body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # (B, T, D)


def scored_causal_lm_loss(model: nn.Module, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor | None = None,
                          labels: torch.Tensor | None = None, *,
                          position_ids: torch.Tensor | None = None,
                          shift_labels: torch.Tensor | None = None,
                          chunk_size: int = DEFAULT_CHUNK_SIZE, ignore_index: int = -100,
                          fallback: bool = True, compile_chunks: bool = False,
                          **model_kwargs: Any) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the scored positions of a causal-LM batch.

    Equals ``model(input_ids, attention_mask, labels=labels).loss * n_scored`` (transformers'
    ``ForCausalLMLoss``: position ``t`` predicts ``labels[t + 1]``), but applies the LM head
    only to the scored rows and in chunks (:func:`linear_cross_entropy`).

    Args:
        model: a Hugging Face ``*ForCausalLM``, possibly PEFT-wrapped (LoRA layers live in
            the base model, so its decoder body runs them); a DDP/FSDP ``.module`` wrapper is
            looked through, but then gradient sync is lost -- wrap :class:`ScoredCausalLM`
            in DDP instead.
        input_ids: ``(B, T)``; attention_mask: ``(B, T)`` or ``None``.
        labels: ``(B, T)`` with ``ignore_index`` where nothing is scored (not shifted).
        position_ids: passed to the decoder (padding-free packing resets them per example,
            as ``transformers.DataCollatorWithFlattening`` does).
        shift_labels: already-shifted labels (then ``labels`` is not used), as
            transformers accepts for context parallelism.
        chunk_size: rows per chunk of the fused head.
        ignore_index: the label value that is not scored.
        fallback: for a head that cannot be fused (:func:`unfused_reason`), use the model's
            full logits (True) or raise ``ValueError`` (False).
        compile_chunks: see :func:`linear_cross_entropy`.
        **model_kwargs: passed to the decoder body (e.g. flash-attention ``cu_seq_lens_q``).

    Returns:
        ``(loss_sum, n_scored)``: a 0-d fp32 tensor with grad, and the number of scored
        positions (a Python int; finding the rows costs one device sync). With no scored
        position the loss is a zero still attached to the graph (its gradients are zeros).

    Raises:
        ValueError: no labels, mismatched shapes, an unfusable head with ``fallback=False``,
            or ``output_router_logits=True`` (the router loss is not part of this sum).
    """
    if shift_labels is None:
        if labels is None:
            raise ValueError("labels (or shift_labels) must be given to score a causal LM")
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels must have input_ids' shape {tuple(input_ids.shape)}, got "
                             f"{tuple(labels.shape)}")
        shift_labels = F.pad(labels[..., 1:], (0, 1), value=ignore_index)  # (B, T)
    elif shift_labels.shape != input_ids.shape:
        raise ValueError(f"shift_labels must have input_ids' shape {tuple(input_ids.shape)}, "
                         f"got {tuple(shift_labels.shape)}")
    base = causal_lm_base(model)
    if getattr(getattr(base, "config", None), "output_router_logits", False):
        raise ValueError("output_router_logits=True adds a router auxiliary loss that "
                         "scored_causal_lm_loss does not compute; set it to False")
    flat = shift_labels.reshape(-1)
    rows = (flat != ignore_index).nonzero().squeeze(1)  # (N,), one sync
    targets = flat.index_select(0, rows)
    reason = unfused_reason(base)
    if reason is None:
        hidden = _decoder_hidden(base, input_ids, attention_mask, position_ids, model_kwargs)
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)  # (N, D)
        head = base.get_output_embeddings()
        loss = linear_cross_entropy(h, head.weight, targets, bias=head.bias,
                                    chunk_size=chunk_size, ignore_index=ignore_index,
                                    compile_chunks=compile_chunks)
        return loss, int(rows.numel())
    if not fallback:
        raise ValueError(f"cannot fuse the LM head of {type(base).__name__}: {reason} "
                         "(fallback=False)")
    if position_ids is not None:
        model_kwargs = {**model_kwargs, "position_ids": position_ids}
    logits = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                  **model_kwargs).logits  # (B, T, V)
    picked = logits.reshape(-1, logits.shape[-1]).index_select(0, rows)  # (N, V)
    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))
    return F.cross_entropy(picked, targets, reduction="sum"), int(rows.numel())


class ScoredCausalLM(nn.Module):
    """``forward(input_ids, attention_mask, labels, position_ids=None) -> (loss_sum, n_scored)``.

    A thin module around :func:`scored_causal_lm_loss` so that ``accelerator.prepare`` (its
    autocast wraps ``forward``), DDP and FSDP wrap the whole loss computation: the wrapped
    model is the ``model`` attribute (its ``state_dict`` keys gain a ``model.`` prefix; save
    adapters from ``wrapper.model``). It carries the model's ``_no_split_modules``, so FSDP
    auto-wrapping still finds the decoder blocks. ``fused`` says whether the head is fused;
    ``unfused_reason`` why not.
    """

    def __init__(self, model: nn.Module, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 ignore_index: int = -100, fallback: bool = True,
                 compile_chunks: bool = False) -> None:
        super().__init__()
        self.model = model
        self.chunk_size = check_int("chunk_size", chunk_size)
        self.ignore_index = ignore_index
        self.fallback = fallback
        self.compile_chunks = compile_chunks
        # Accelerate's FSDP auto-wrap reads the prepared module's _no_split_modules
        self._no_split_modules = getattr(causal_lm_base(model), "_no_split_modules", None)
        self.unfused_reason = unfused_reason(model)
        if self.unfused_reason is not None and not fallback:
            raise ValueError(f"cannot fuse the LM head: {self.unfused_reason} (fallback=False)")

    @property
    def fused(self) -> bool:
        return self.unfused_reason is None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                **model_kwargs: Any) -> tuple[torch.Tensor, int]:
        return scored_causal_lm_loss(self.model, input_ids, attention_mask, labels,
                                     position_ids=position_ids, chunk_size=self.chunk_size,
                                     ignore_index=self.ignore_index, fallback=self.fallback,
                                     compile_chunks=self.compile_chunks, **model_kwargs)

    def extra_repr(self) -> str:
        return (f"chunk_size={self.chunk_size}, fused={self.fused}, "
                f"compile_chunks={self.compile_chunks}")
