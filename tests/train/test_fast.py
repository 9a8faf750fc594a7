"""scalelab.train.fast: regional compilation, fused LoRA+ AdamW, padding-free packing."""

from __future__ import annotations

import pytest
import torch

from scalelab.nn.lm_loss import scored_causal_lm_loss
from scalelab.train.fast import (
    autocast_lora,
    compile_regions,
    decoder_blocks,
    fast_optimizer,
    fused_adamw_ok,
    packed_batch,
    use_tf32_matmuls,
)

pytestmark = pytest.mark.filterwarnings(  # PEFT 0.21 reads an attribute transformers 5 deprecates
    "ignore:.*is_gradient_checkpointing.*:FutureWarning")

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory):
    from scalelab.data.models import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny_fast"), kind="causal", hidden=32,
                            layers=3)


def _lora(folder, dtype=torch.float32, device="cpu"):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS,
                                            lora_dropout=0.0, init_lora_weights=False))


def _batch(vocab, b=3, t=17, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 6:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100  # a prompt
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


def _loss_and_grads(model, batch):
    loss, n = scored_causal_lm_loss(model, batch["input_ids"], batch.get("attention_mask"),
                                    batch["labels"], position_ids=batch.get("position_ids"))
    params = [p for p in model.parameters() if p.requires_grad]
    return loss, n, torch.autograd.grad(loss, params)


def test_decoder_blocks_of_a_peft_llama(tiny_causal):
    model = _lora(tiny_causal)
    blocks = decoder_blocks(model)
    assert [type(m).__name__ for _, m in blocks] == ["LlamaDecoderLayer"] * 3
    assert [n.rsplit(".", 1)[-1] for n, _ in blocks] == ["0", "1", "2"]


def test_compile_regions_refuses_a_model_without_blocks():
    with pytest.raises(ValueError, match="no repeated decoder block"):
        compile_regions(torch.nn.Sequential(torch.nn.Linear(3, 3)))


def _same_loss_and_grads(tiny_causal, backend, rtol, atol):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = _lora(tiny_causal)
    model = _lora(tiny_causal)
    keys = list(model.state_dict())
    names = compile_regions(model, backend=backend)
    assert len(names) == 3 and list(model.state_dict()) == keys  # in place, names unchanged
    batch = _batch(eager.config.vocab_size)
    ref, n_ref, g_ref = _loss_and_grads(eager, batch)
    for _ in range(2):  # the second call runs the cached graphs
        loss, n, g = _loss_and_grads(model, batch)
        assert n == n_ref
        torch.testing.assert_close(loss, ref, rtol=rtol, atol=atol)
        for a, b in zip(g, g_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=10 * rtol, atol=atol)
    # one graph for layer 0 (its input needs no grad: frozen embedding), one for the others
    assert counters["stats"]["unique_graphs"] == 2


def test_compile_regions_equals_eager_aot_eager(tiny_causal):
    # aot_eager traces with dynamo + AOT autograd but runs eager kernels: same numbers up to
    # fp32 reassociation in the decomposed ops; fast enough for the default suite.
    _same_loss_and_grads(tiny_causal, "aot_eager", rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compile_regions_equals_eager_inductor(tiny_causal):
    # Inductor fuses and reorders fp32 reductions (RMSNorm, softmax): 1e-5 relative on the
    # loss, 1e-4 on the gradients.
    _same_loss_and_grads(tiny_causal, "inductor", rtol=1e-5, atol=1e-6)


def _groups(opt):
    return [(g["name"], g["lr"], g["weight_decay"], [id(p) for p in g["params"]])
            for g in opt.param_groups]


def test_fast_optimizer_keeps_loraplus_groups(tiny_causal):
    from scalelab.lora import create_loraplus_optimizer

    model = _lora(tiny_causal)
    assert not fused_adamw_ok(model)  # on CPU: torch's default implementation
    opt = fast_optimizer(model, lr=1e-3, ratio=16.0)
    ref = create_loraplus_optimizer(model, torch.optim.AdamW, lr=1e-3, ratio=16.0)
    assert not opt.defaults.get("fused")
    assert _groups(opt) == _groups(ref)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["lora_B"] == 16.0 * lrs["lora_A"]


def test_fused_adamw_step_equals_foreach(tiny_causal):
    # torch >= 2.4 has a fused AdamW on CPU too: the same groups, the same step.
    models = [_lora(tiny_causal) for _ in range(2)]
    opts = [fast_optimizer(models[0], lr=1e-2, fused=True), fast_optimizer(models[1], lr=1e-2)]
    assert opts[0].defaults["fused"] and _groups(opts[0])[0][:3] == _groups(opts[1])[0][:3]
    batch = _batch(models[0].config.vocab_size)
    for model, opt in zip(models, opts, strict=True):
        for _ in range(2):
            loss, n = scored_causal_lm_loss(model, batch["input_ids"], batch["attention_mask"],
                                            batch["labels"])
            (loss / n).backward()
            opt.step()
            opt.zero_grad()
    # Adam's update lr * m / (sqrt(v) + eps) is ~lr for every element; the kernels order the
    # fp32 bias corrections differently, which matters where sqrt(v) is near eps (tiny
    # gradients): agree to 1e-3 of one update (lr = 1e-2). A lost LoRA+ ratio would move the
    # B factors 16x less, i.e. by ~1e-2.
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)


def test_packed_batch_equals_padded(tiny_causal):
    model = _lora(tiny_causal, torch.float64)
    batch = _batch(model.config.vocab_size)
    packed = packed_batch(batch)
    total = int(batch["attention_mask"].sum())
    assert all(v.shape == (1, total) for v in packed.values())
    assert packed["position_ids"][0, :17].tolist() == list(range(17))
    assert packed["position_ids"][0, 17:28].tolist() == list(range(11))
    ref, n_ref, g_ref = _loss_and_grads(model, batch)
    loss, n, g = _loss_and_grads(model, packed)
    assert n == n_ref
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=0)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("row_length", [17, 30])
def test_packed_rows_equal_padded(tiny_causal, row_length):
    # Rows of 17 (the longest example): 17 | 11 + 6 (a full row each). Rows of 30:
    # 17 + 11 | 6 + filler; the filler block is unscored and attends only to itself.
    model = _lora(tiny_causal, torch.float64)
    batch = _batch(model.config.vocab_size)
    packed = packed_batch(batch, row_length=row_length)
    assert packed["input_ids"].shape == ((2, 17) if row_length == 17 else (2, 28))
    ref, n_ref, g_ref = _loss_and_grads(model, batch)
    loss, n, g = _loss_and_grads(model, packed)
    assert n == n_ref
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=0)
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="row_length"):
        packed_batch(batch, row_length=16)


def test_packed_batch_refuses_left_padding():
    ids = torch.tensor([[7, 8, 9], [0, 8, 9]])
    batch = {"input_ids": ids, "attention_mask": (ids > 0).long(), "labels": ids}
    with pytest.raises(ValueError, match="right padding"):
        packed_batch(batch)
    with pytest.raises(ValueError, match="labels"):
        packed_batch({"input_ids": ids, "attention_mask": ids})


def test_use_tf32_matmuls_restores():
    before = torch.get_float32_matmul_precision()
    with use_tf32_matmuls():
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before


def test_autocast_lora_runs_adapters_in_bf16(tiny_causal):
    # A bf16 base with PEFT's fp32 adapters: inside autocast_lora the adapters' matmuls see
    # bf16 inputs (PEFT's cast to fp32 is off); the loss stays that of the eager bf16 model
    # to bf16 precision (~3 significant digits), and the flags come back.
    model = _lora(tiny_causal, torch.bfloat16)
    lora_a = model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"]
    assert lora_a.weight.dtype == torch.float32
    seen = []
    hook = lora_a.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    batch = _batch(model.config.vocab_size)
    ref, n = scored_causal_lm_loss(model, batch["input_ids"], batch["attention_mask"],
                                   batch["labels"])
    with autocast_lora(model):
        loss, n2 = scored_causal_lm_loss(model, batch["input_ids"], batch["attention_mask"],
                                         batch["labels"])
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16] and n2 == n
    torch.testing.assert_close(loss, ref, rtol=2e-2, atol=0)
    assert all(getattr(m, "cast_input_dtype_enabled", True) for m in model.modules())


# --- GPU (deselected by default; run with -m gpu on a CUDA machine) --------------------------

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
def test_gpu_fast_optimizer_is_fused(tiny_causal):
    model = _lora(tiny_causal, device="cuda")
    assert fused_adamw_ok(model)
    opt = fast_optimizer(model, lr=1e-3)
    assert opt.defaults["fused"] is True
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["lora_B"] == 16.0 * lrs["lora_A"]


@pytest.mark.gpu
@gpu
def test_gpu_compiled_bf16_path_matches_eager(tiny_causal):
    # bf16 base weights, fp32 adapters (PEFT's default): compiled blocks + fused head vs the
    # eager model's own loss; bf16 tolerance (about 3 significant digits).
    eager = _lora(tiny_causal, torch.bfloat16, "cuda")
    model = _lora(tiny_causal, torch.bfloat16, "cuda")
    compile_regions(model)
    batch = _batch(eager.config.vocab_size, device="cuda")
    n = int((batch["labels"][:, 1:] != -100).sum())
    ref = eager(**batch, use_cache=False).loss * n
    loss, n_ours = scored_causal_lm_loss(model, batch["input_ids"], batch["attention_mask"],
                                         batch["labels"])
    assert n_ours == n
    torch.testing.assert_close(loss, ref.float(), rtol=2e-2, atol=1e-2)
