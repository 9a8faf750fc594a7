"""A tiny causal LM with ChatML special tokens and a chat template, shared by the chat tests
(tests/train/test_causal.py, tests/lora/test_trl.py); built from a config, no download."""

from __future__ import annotations

from pathlib import Path

#: ChatML as most instruct models write it.
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


def write_chatml_lm(folder: Path, template: str = CHATML):
    """Write a tiny Llama whose tokenizer has <|im_start|>/<|im_end|> (the latter as EOS) and
    ``template``; returns ``(folder, tokenizer)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scalelab.data.models import write_tiny_model

    folder = write_tiny_model(folder, kind="causal")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                            "eos_token": "<|im_end|>"})
    tok.chat_template = template
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.resize_token_embeddings(len(tok))
    model.config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder), tok
