"""Fused LM head + cross-entropy (scalelab.nn.lm_loss) against torch's own F.linear + F.cross_entropy
and against a Hugging Face causal LM's own ``labels=`` loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from scalelab.nn.lm_loss import (
    ScoredCausalLM,
    linear_cross_entropy,
    scored_causal_lm_loss,
    unfused_reason,
)

pytestmark = pytest.mark.filterwarnings(  # PEFT 0.21 reads an attribute transformers 5 deprecates
    "ignore:.*is_gradient_checkpointing.*:FutureWarning")

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _reference(h, w, t, b=None, reduction="sum"):
    """The oracle: full logits, torch's cross-entropy, torch's autograd."""
    logits = F.linear(h, w, b)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # HF's .float() upcast
    return F.cross_entropy(logits, t, ignore_index=-100, reduction=reduction)


def _leaves(n, d, v, dtype, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) / d**0.5).to(dtype).requires_grad_()
    b = torch.randn(v, generator=g, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    t = torch.randint(0, v, (n,), generator=g)
    t[::3] = -100  # every third row is ignored
    return h, w, b, t


def _grads(loss, leaves):
    return torch.autograd.grad(loss, [x for x in leaves if x is not None])


@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float64, 1e-12, 1e-13),
                                             (torch.float32, 1e-5, 1e-6)])
@pytest.mark.parametrize("chunk", [1, 4, 7, 64])  # 64 > 19 rows: one chunk
@pytest.mark.parametrize("reduction,bias", [("sum", False), ("mean", True)])
def test_matches_full_logits(dtype, rtol, atol, chunk, reduction, bias):
    h, w, b, t = _leaves(19, 8, 23, dtype, bias)
    ours = linear_cross_entropy(h, w, t, bias=b, chunk_size=chunk, reduction=reduction)
    ref = _reference(h, w, t, b, reduction)
    torch.testing.assert_close(ours.to(ref.dtype), ref, rtol=rtol, atol=atol)
    for g_ours, g_ref in zip(_grads(ours, (h, w, b)), _grads(ref, (h, w, b)), strict=True):
        assert g_ours.dtype == g_ref.dtype
        torch.testing.assert_close(g_ours, g_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("bias", [False, True])
def test_compile_chunks_math_uncompiled(monkeypatch, bias):
    # The out-of-place arithmetic that compile_chunks compiles, run eagerly here: the same
    # loss and gradients as the full-logits oracle (the compiled run is the slow test below).
    import scalelab.nn.lm_loss as mod

    monkeypatch.setitem(mod._COMPILED, "fn", mod._chunk_math)
    h, w, b, t = _leaves(19, 8, 23, torch.float64, bias)
    ours = linear_cross_entropy(h, w, t, bias=b, chunk_size=4, compile_chunks=True)
    ref = _reference(h, w, t, b)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-13)
    for g_ours, g_ref in zip(_grads(ours, (h, w, b)), _grads(ref, (h, w, b)), strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.slow
def test_compile_chunks_compiled():
    # Inductor reassociates fp32 reductions: 1e-5 relative.
    h, w, b, t = _leaves(40, 16, 37, torch.float32, True)
    ours = linear_cross_entropy(h, w, t, bias=b, chunk_size=16, compile_chunks=True)
    ref = _reference(h, w, t, b)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for g_ours, g_ref in zip(_grads(ours, (h, w, b)), _grads(ref, (h, w, b)), strict=True):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-6)


def test_backward_scales_by_grad_output():
    h, w, _, t = _leaves(10, 6, 11, torch.float64, False)
    g1 = _grads(linear_cross_entropy(h, w, t, chunk_size=3), (h, w))
    g2 = _grads(-2.5 * linear_cross_entropy(h, w, t, chunk_size=3) + 7.0, (h, w))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(b, -2.5 * a, rtol=1e-12, atol=0)


def test_bf16_inputs_accumulate_in_fp32():
    # Both sides round the logits' and their gradient's matmul inputs to bf16; they differ
    # only in where the products are summed (per chunk here), so bf16-level tolerances.
    h, w, b, t = _leaves(40, 16, 37, torch.bfloat16, True)
    ours = linear_cross_entropy(h, w, t, bias=b, chunk_size=8)
    ref = _reference(h, w, t, b)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=2e-3, atol=1e-3)
    for g_ours, g_ref in zip(_grads(ours, (h, w, b)), _grads(ref, (h, w, b)), strict=True):
        assert g_ours.dtype == torch.bfloat16
        scale = g_ref.float().abs().max()
        assert (g_ours.float() - g_ref.float()).abs().max() <= 2e-2 * scale


def test_autocast_computes_in_the_autocast_dtype():
    h, w, _, t = _leaves(12, 16, 20, torch.float32, False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_cross_entropy(h, w, t, chunk_size=5)
        ref = _reference(h, w, t)  # F.linear runs in bf16 under autocast
    torch.testing.assert_close(ours, ref, rtol=2e-3, atol=1e-3)
    gh, = _grads(ours, (h,))
    assert gh.dtype == torch.float32


def test_frozen_weight_and_no_grad():
    h, w, _, t = _leaves(9, 4, 7, torch.float64, False)
    w.requires_grad_(False)
    loss = linear_cross_entropy(h, w, t, chunk_size=2)
    loss.backward()
    assert w.grad is None and h.grad is not None
    with torch.no_grad():
        assert linear_cross_entropy(h, w, t).item() == pytest.approx(_reference(h, w, t).item(),
                                                                     rel=1e-12)


def test_empty_and_all_ignored():
    h, w, _, _ = _leaves(0, 5, 9, torch.float32, False)
    loss = linear_cross_entropy(h, w, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    gh, gw = _grads(loss, (h, w))
    assert gh.shape == (0, 5) and torch.all(gw == 0)
    h, w, _, t = _leaves(6, 5, 9, torch.float32, False)
    t[:] = -100
    assert linear_cross_entropy(h, w, t, chunk_size=4).item() == 0.0
    mean = linear_cross_entropy(h, w, t, reduction="mean")
    ref = _reference(h, w, t, reduction="mean")
    assert torch.isnan(mean) and torch.isnan(ref)  # torch's convention for an empty mean
    for g_ours, g_ref in zip(_grads(mean, (h, w)), _grads(ref, (h, w)), strict=True):
        torch.testing.assert_close(g_ours, g_ref)  # zeros on both sides


@pytest.mark.parametrize("kwargs,match", [
    ({"chunk_size": 0}, "chunk_size"), ({"reduction": "none"}, "reduction"),
])
def test_bad_arguments(kwargs, match):
    h, w, _, t = _leaves(4, 3, 5, torch.float32, False)
    with pytest.raises(ValueError, match=match):
        linear_cross_entropy(h, w, t, **kwargs)


def test_bad_shapes_and_targets():
    h, w, _, t = _leaves(4, 3, 5, torch.float32, False)
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(h, w[:, :2], t)
    with pytest.raises(ValueError, match="targets must have"):
        linear_cross_entropy(h, w, t[:3])
    t[0] = 5
    with pytest.raises(ValueError, match=r"targets must be in \[0, 5\)"):
        linear_cross_entropy(h, w, t)


class _VocabTensors(TorchDispatchMode):
    """Records the rows of every freshly allocated (non-view) op output whose last dim is V.

    A ``(D, V)`` output is a copy of the head's transposed weight (weight-sized, not
    batch-sized) and is not counted.
    """

    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.vocab, self.hidden, self.rows = vocab, hidden, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in out if isinstance(out, (tuple, list)) else (out,):
            if (isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[-1] == self.vocab
                    and not x._is_view() and tuple(x.shape) != (self.hidden, self.vocab)):
                self.rows.append(x.numel() // self.vocab)
        return out


def test_never_holds_the_full_logits():
    n, d, v, chunk = 96, 8, 50, 16
    h, w, _, t = _leaves(n, d, v, torch.float32, False)
    w.requires_grad_(False)  # the (V, D) weight gradient is not vocab-by-rows anyway
    with _VocabTensors(v, d) as ours:
        linear_cross_entropy(h, w, t, chunk_size=chunk).backward()
    with _VocabTensors(v, d) as ref:  # positive control: the counter sees the full logits
        _reference(h, w, t).backward()
    assert max(ref.rows) == n
    assert max(ours.rows) == chunk


# --- Hugging Face causal LMs -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory):
    from scalelab.data.models import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny_causal"), kind="causal", hidden=32,
                            layers=2)


def _llama(folder, dtype=torch.float32, lora=True):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if lora:  # random A and B, so that both factors get non-zero gradients
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS,
                                                 lora_dropout=0.0, init_lora_weights=False))
    return model


def _batch(vocab, b=4, t=21, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :6] = -100  # a prompt
    mask[1, 15:] = 0  # right padding
    labels[1, 15:] = -100
    labels[2, :] = -100  # a row with nothing scored
    return ids, mask, labels


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _model_loss_sum(model, ids, mask, labels):
    """The oracle: the model's own ``labels=`` mean loss x the scored count (fp32 models), or
    for fp64 models (whose ``labels=`` loss upcasts logits to fp32 only) the same shift and
    cross-entropy written out on the model's full fp64 logits."""
    n = int((labels[:, 1:] != -100).sum())
    out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
    if out.logits.dtype != torch.float64:
        return out.loss * n, n
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])  # (B*(T-1), V)
    return F.cross_entropy(logits, labels[:, 1:].reshape(-1), reduction="sum"), n


# Tolerances: fp64 sums differ in order only (~1e-15 relative); fp32 loss to ~1e-6, and
# gradients, summed over ~60 rows in another order, to 1e-4 relative plus 1e-6 absolute.
@pytest.mark.parametrize("dtype,rtol,atol,grad_rtol", [(torch.float64, 1e-10, 1e-12, 1e-8),
                                                       (torch.float32, 1e-5, 1e-6, 1e-4)])
@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_scored_loss_equals_model_loss_lora(tiny_causal, dtype, rtol, atol, grad_rtol, chunk):
    model = _llama(tiny_causal, dtype)
    ids, mask, labels = _batch(model.config.vocab_size)
    ref, n_ref = _model_loss_sum(model, ids, mask, labels)
    g_ref = torch.autograd.grad(ref, _trainable(model))
    loss, n = scored_causal_lm_loss(model, ids, mask, labels, chunk_size=chunk)
    assert n == n_ref and loss.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(loss.to(dtype), ref, rtol=rtol, atol=atol)
    g = torch.autograd.grad(loss, _trainable(model))
    assert len(g) == 2 * 2 * len(LORA_TARGETS)  # A and B of 7 projections in 2 layers
    for a, b in zip(g, g_ref, strict=True):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=grad_rtol, atol=atol)


def test_scored_loss_full_finetune_grads(tiny_causal):
    # No PEFT, everything trainable: the LM head's weight gradient comes from the fused path.
    model = _llama(tiny_causal, torch.float64, lora=False)
    ids, mask, labels = _batch(model.config.vocab_size, seed=2)
    ref, n_ref = _model_loss_sum(model, ids, mask, labels)
    g_ref = torch.autograd.grad(ref, _trainable(model))
    loss, n = scored_causal_lm_loss(model, ids, mask, labels, chunk_size=7)
    g = torch.autograd.grad(loss, _trainable(model))
    torch.testing.assert_close(loss.to(ref.dtype), ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


def test_scored_loss_empty_set_keeps_the_graph(tiny_causal):
    model = _llama(tiny_causal)
    ids, mask, labels = _batch(model.config.vocab_size)
    labels[:] = -100
    loss, n = scored_causal_lm_loss(model, ids, mask, labels)
    assert n == 0 and loss.item() == 0.0
    loss.backward()  # reaches every LoRA parameter (as DDP needs), with zero gradients
    assert all(p.grad is not None and torch.all(p.grad == 0) for p in _trainable(model))


def test_packed_rows_with_position_ids(tiny_causal):
    # Padding-free packing: two examples in one row, positions reset, the boundary unscored.
    model = _llama(tiny_causal, torch.float64)
    a, b = torch.randint(5, model.config.vocab_size, (16,),
                         generator=torch.Generator().manual_seed(3)).split([7, 9])
    sep = [scored_causal_lm_loss(model, x[None], None, x[None])[0] for x in (a, b)]
    packed = torch.cat([a, b])[None]
    labels = packed.clone()
    labels[0, 7] = -100  # a's last token does not predict b's first
    pos = torch.cat([torch.arange(7), torch.arange(9)])[None]
    loss, n = scored_causal_lm_loss(model, packed, None, labels, position_ids=pos)
    assert n == 6 + 8
    torch.testing.assert_close(loss, sep[0] + sep[1], rtol=1e-10, atol=0)


def test_never_materialises_batch_logits(tiny_causal):
    model = _llama(tiny_causal)
    v = model.config.vocab_size
    ids, mask, labels = _batch(v, b=4, t=21)
    d = model.config.hidden_size
    with _VocabTensors(v, d) as ours:
        scored_causal_lm_loss(model, ids, mask, labels, chunk_size=4)[0].backward()
    with _VocabTensors(v, d) as ref:
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    assert max(ref.rows) == 4 * 21
    assert max(ours.rows) == 4


def _softcapped_gemma2():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                       final_logit_softcapping=0.5, pad_token_id=0)
    return Gemma2ForCausalLM(cfg).double()


def test_unfusable_head_falls_back_or_refuses():
    model = _softcapped_gemma2()
    reason = unfused_reason(model)
    assert reason is not None and "final_logit_softcapping" in reason
    ids, mask, labels = _batch(40, seed=4)
    ref, n_ref = _model_loss_sum(model, ids, mask, labels)
    loss, n = scored_causal_lm_loss(model, ids, mask, labels)
    assert n == n_ref
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="softcapping"):
        scored_causal_lm_loss(model, ids, mask, labels, fallback=False)
    with pytest.raises(ValueError, match="softcapping"):
        ScoredCausalLM(model, fallback=False)


def test_lora_on_lm_head_is_not_fused(tiny_causal):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_causal, dtype=torch.float64),
                           LoraConfig(r=2, target_modules=["lm_head", "q_proj"],
                                      init_lora_weights=False))
    assert "not a plain nn.Linear" in unfused_reason(model)
    ids, mask, labels = _batch(model.config.vocab_size, seed=5)
    ref, n_ref = _model_loss_sum(model, ids, mask, labels)
    loss, _ = scored_causal_lm_loss(model, ids, mask, labels)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=0)
    assert unfused_reason(_llama(tiny_causal)) is None


def test_bad_labels(tiny_causal):
    model = _llama(tiny_causal)
    ids, mask, labels = _batch(model.config.vocab_size)
    with pytest.raises(ValueError, match="labels"):
        scored_causal_lm_loss(model, ids, mask, None)
    with pytest.raises(ValueError, match="labels must have"):
        scored_causal_lm_loss(model, ids, mask, labels[:, :-1])


def test_wrapper_under_ddp(tiny_causal, tmp_path):
    # One-process gloo DDP around the wrapper: DDP's forward runs the whole loss, and the
    # gradients it leaves equal the unwrapped model's.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids, mask, labels = _batch(109)
    plain = _llama(tiny_causal)
    loss_ref, n_ref = scored_causal_lm_loss(plain, ids, mask, labels)
    loss_ref.backward()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        wrapped = ScoredCausalLM(_llama(tiny_causal), chunk_size=3)
        assert wrapped.fused and set(wrapped._no_split_modules) == {"LlamaDecoderLayer"}
        ddp = DDP(wrapped)
        loss, n = ddp(ids, mask, labels)
        (loss / n).backward()
    finally:
        dist.destroy_process_group()
    assert n == n_ref
    for p, q in zip(_trainable(wrapped.model), _trainable(plain), strict=True):
        torch.testing.assert_close(p.grad, q.grad / n_ref, rtol=1e-4, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_and_autocast():
    # On CUDA: bf16 leaves, and fp32 leaves under bf16 autocast (as Accelerate runs it).
    for dtype, autocast in ((torch.bfloat16, False), (torch.float32, True)):
        h, w, b, t = _leaves(3000, 64, 1000, dtype, True)
        h, w, b, t = (x.detach().cuda().requires_grad_(x.requires_grad) if x.is_floating_point()
                      else x.cuda() for x in (h, w, b, t))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            ours = linear_cross_entropy(h, w, t, bias=b, chunk_size=512)
            ref = _reference(h, w, t, b)
        torch.testing.assert_close(ours, ref, rtol=2e-3, atol=1e-3)
        for g_ours, g_ref in zip(_grads(ours, (h, w, b)), _grads(ref, (h, w, b)), strict=True):
            assert g_ours.dtype == g_ref.dtype
            assert (g_ours.float() - g_ref.float()).abs().max() <= 2e-2 * g_ref.float().abs().max()


def test_wrapper_under_autocast_matches_model_loss(tiny_causal):
    # What Accelerate's bf16 mixed precision does to the wrapper's forward: fp32 weights,
    # bf16 autocast. The fused head then runs its matmuls in bf16 like the model's own head.
    model = _llama(tiny_causal)
    ids, mask, labels = _batch(model.config.vocab_size)
    wrapped = ScoredCausalLM(model, chunk_size=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, n_ref = _model_loss_sum(model, ids, mask, labels)
        loss, n = wrapped(ids, mask, labels)
    assert n == n_ref and loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref.float(), rtol=1e-2, atol=0)  # bf16: ~3 digits
    g = torch.autograd.grad(loss, _trainable(model))
    g_ref = torch.autograd.grad(ref, _trainable(model))
    for a, b in zip(g, g_ref, strict=True):
        assert (a - b).abs().max() <= 5e-2 * b.abs().max()
