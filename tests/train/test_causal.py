"""Causal-LM SFT: chat-template rendering (checked against ``apply_chat_template``), scored
spans, system prompts, the fallback format, ``messages`` files, packing, defaults per task
family, generation. Tiny Llama from a config (the real SmolLM2 tokenizer in a slow test)."""

import json

import pytest
import torch

from _chat_models import write_chatml_lm
from scalelab.data.text import load_text_dataset
from scalelab.train import FinetuneConfig, finetune, load_run, predict
from scalelab.train.batches import CausalEncoder, loss_module
from scalelab.train.chat import prompt_ids, render
from scalelab.train.report import build_report, format_table

CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
          "{{ '<|im_start|>system\nYou are kind.<|im_end|>\n' }}{% endif %}"
          "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny Llama whose tokenizer has a ChatML template (with a default system prompt) and
    <|im_start|>/<|im_end|> tokens."""
    return write_chatml_lm(tmp_path_factory.mktemp("lm") / "lm", CHATML)


def _scored_text(tok, ids, scored):
    return tok.decode([t for t, s in zip(ids, scored, strict=True) if s])


def test_template_rendering_equals_apply_chat_template_and_scores_answers(lm):
    _, tok = lm
    conv = (("user", "hi there"), ("assistant", "hello"), ("user", "and you"),
            ("assistant", "fine"))
    ids, scored = render(tok, conv)
    msgs = [{"role": r, "content": c} for r, c in conv]
    ref = tok.apply_chat_template(msgs, tokenize=True)
    ref = ref["input_ids"] if hasattr(ref, "keys") else ref
    assert ids == list(ref)
    assert _scored_text(tok, ids, scored).replace(" ", "") == "hello<|im_end|>fine<|im_end|>"
    # the prompt to generate from ends with the template's generation prompt
    p = prompt_ids(tok, conv[:3])
    gen = tok.apply_chat_template(msgs[:3], tokenize=False, add_generation_prompt=True)
    assert p == tok(gen, add_special_tokens=False)["input_ids"]
    assert p == ids[:len(p)] and gen.endswith("<|im_start|>assistant\n")


def test_system_prompts(lm):
    _, tok = lm
    with_sys = (("system", "be brief"), ("user", "q"), ("assistant", "a"))
    ids, scored = render(tok, with_sys)
    text = tok.decode(ids).replace(" ", "")
    assert "bebrief" in text and "youarekind" not in text  # the template's default is replaced
    assert _scored_text(tok, ids, scored).replace(" ", "") == "a<|im_end|>"
    ids2, _ = render(tok, ("q", "a"), system_prompt="be brief")
    assert ids2 == ids
    ids3, _ = render(tok, ("q", "a"))
    assert "youarekind" in tok.decode(ids3).replace(" ", "")


def test_fallback_format_when_asked_or_without_template(lm):
    _, tok = lm
    ids, scored = render(tok, ("what is up", "nothing"), chat_template=False)
    text = tok.decode(ids, skip_special_tokens=False).replace(" ", "")
    assert "question:whatisup" in text.lower() and text.lower().endswith("nothing<|im_end|>")
    assert _scored_text(tok, ids, scored).replace(" ", "") == "nothing<|im_end|>"
    assert not scored[0]


def test_messages_jsonl_and_bad_roles(tmp_path):
    f = tmp_path / "conv.jsonl"
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": f"a{i}"}]} for i in range(10)]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    d = load_text_dataset(str(f), eval_size=2)
    assert d.task == "causal" and d.train[0][0] == ("system", "s") and len(d.train) == 8
    f.write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}))
    with pytest.raises(ValueError, match="role 'robot'; allowed: system, user, assistant"):
        load_text_dataset(str(f))
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}))
    with pytest.raises(ValueError, match="no non-empty assistant message"):
        load_text_dataset(str(f))


def _examples():
    return [(f"question number {i}", "yes " * (1 + i % 5)) for i in range(12)]


def test_packed_and_padded_losses_and_gradients_are_equal(lm):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder, tok = lm
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(folder),
                           LoraConfig(r=4, init_lora_weights=False))
    module = loss_module(model, "causal")
    ex = _examples()
    results = []
    for packing in (False, True):
        batch = CausalEncoder(tok, 256, packing=packing)(ex)  # rows of <= 256 tokens
        rows = batch["input_ids"].shape[0]
        assert ("attention_mask" in batch) != packing and (rows < len(ex) if packing else
                                                           rows == len(ex))
        model.zero_grad()
        loss, count, _ = module(batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((float(loss), int(count), grads))
    (l0, c0, g0), (l1, c1, g1) = results
    assert c0 == c1 > 0 and l1 == pytest.approx(l0, rel=1e-5)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-6)


def test_packing_changes_no_numbers_of_a_run(lm, tmp_path):
    folder, _ = lm
    f = tmp_path / "qa.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in _examples() * 3))
    cfg = FinetuneConfig(model=folder, dataset=str(f), steps=3, eval_every=3, batch_size=4,
                         max_length=64, eval_size=6, lr=1e-2)
    a = finetune(cfg, quiet=True)
    b = finetune(cfg.replace(packing=True), quiet=True)
    torch.testing.assert_close(torch.tensor(b.train_loss), torch.tensor(a.train_loss),
                               rtol=1e-5, atol=1e-6)
    assert b.tokens == a.tokens  # real tokens only, packed or padded


def test_causal_defaults_and_table(lm, tmp_path):
    cls, lm_ = FinetuneConfig().resolved("classification"), FinetuneConfig().resolved("causal")
    assert (cls.lr, cls.head_lr, cls.lr_scheduler) == (2.5e-4, 3e-3, "constant")
    assert (lm_.lr, lm_.head_lr, lm_.lr_scheduler, lm_.warmup_ratio) == (1e-4, None, "linear",
                                                                         0.02)
    assert FinetuneConfig(method="lora").resolved("causal").lr == 2e-4
    folder, _ = lm
    f = tmp_path / "qa.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in _examples()))
    r = finetune(FinetuneConfig(model=folder, dataset=str(f), steps=2, eval_every=2,
                                batch_size=4, eval_size=4), tmp_path / "o", quiet=True)
    assert r.head_lr is None and r.lr == 1e-4 and r.config["max_length"] == 256
    table = format_table(build_report(r.config, [r]))
    assert "head_lr" not in table and "perplexity" in table.splitlines()[0]


def test_generation_from_the_runs_adapter(lm, tmp_path):
    folder, _ = lm
    f = tmp_path / "qa.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in _examples()))
    finetune(FinetuneConfig(model=folder, dataset=str(f), steps=2, eval_every=2, batch_size=4,
                            eval_size=4), tmp_path / "o", quiet=True)
    loaded = load_run(tmp_path / "o")
    assert loaded.task == "causal" and not loaded.merged
    out = predict(loaded, [{"prompt": "question number 3"}, {"text": "hello"}],
                  max_new_tokens=5)
    assert [o["prompt"] for o in out] == ["question number 3", "hello"]
    assert all(isinstance(o["response"], str) for o in out)
    again = predict(loaded, [{"prompt": "question number 3"}], max_new_tokens=5)
    assert again[0] == out[0]  # greedy: the same answer


@pytest.mark.slow
def test_smollm2_tokenizer_template_rendering():
    """The embedded SmolLM2-Instruct tokenizer: our ids are apply_chat_template's, and the
    scored span decodes to the answer and its end-of-turn token."""
    from transformers import AutoTokenizer

    from scalelab.data.models import resolve_model

    s = resolve_model("smollm2")
    tok = AutoTokenizer.from_pretrained(s.path, gguf_file=s.gguf_file)
    conv = (("user", "What is the capital of France?"), ("assistant", "Paris."))
    ids, scored = render(tok, conv)
    ref = tok.apply_chat_template([{"role": r, "content": c} for r, c in conv], tokenize=True)
    assert ids == list(ref["input_ids"] if hasattr(ref, "keys") else ref)
    assert _scored_text(tok, ids, scored) == "Paris.<|im_end|>"


def test_packing_is_refused_for_a_model_whose_attention_mixes_examples():
    from types import SimpleNamespace

    from scalelab.train.batches import check_packing

    class Mixer(torch.nn.Module):  # each position sees the mean of all before it
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(16, 4)

        def forward(self, input_ids, use_cache=False, position_ids=None):
            h = self.emb(input_ids).cumsum(1)
            return SimpleNamespace(logits=h)

    with pytest.raises(ValueError, match="packing: Mixer's attention lets packed examples see"):
        check_packing(Mixer())


@pytest.mark.slow
def test_compiled_decoder_blocks_give_the_eager_losses(lm, tmp_path):
    """--compile (regional torch.compile, what a GPU run uses by default) on CPU: same losses
    as eager to float tolerance, adapter saved as usual."""
    folder, _ = lm
    f = tmp_path / "qa.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": p, "response": r}) for p, r in _examples()))
    cfg = FinetuneConfig(model=folder, dataset=str(f), steps=3, eval_every=3, batch_size=4,
                         max_length=64, eval_size=4, lr=1e-2)
    eager = finetune(cfg, tmp_path / "e", quiet=True)
    compiled = finetune(cfg.replace(compile=True), tmp_path / "c", quiet=True)
    torch.testing.assert_close(torch.tensor(compiled.train_loss), torch.tensor(eager.train_loss),
                               rtol=1e-4, atol=1e-5)
    assert (tmp_path / "c" / "adapter" / "adapter_model.safetensors").is_file()
