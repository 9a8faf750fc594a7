"""LoraPlusMixin inside TRL's SFTTrainer (TRL itself, a tiny Llama built from a config):
the optimizer's groups carry the LoRA+ lrs, training runs on chat data, ``args.optim`` is
honoured."""

import pytest
import torch

from _chat_models import write_chatml_lm

trl = pytest.importorskip("trl")
pytest.importorskip("peft")

@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return write_chatml_lm(tmp_path_factory.mktemp("lm") / "lm")


def _data():
    from datasets import Dataset

    return Dataset.from_list([{"messages": [{"role": "user", "content": f"question {i}"},
                                            {"role": "assistant", "content": f"answer {i}"}]}
                              for i in range(8)])


def _trainer(lm, tmp_path, **kw):
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from scalelab.lora import LoraPlusMixin

    class LoraPlusSFTTrainer(LoraPlusMixin, SFTTrainer):
        pass

    from transformers import AutoModelForCausalLM

    folder, tok = lm
    model = AutoModelForCausalLM.from_pretrained(folder)  # a fresh model: SFTTrainer wraps it
    optim = kw.pop("optim", "adamw_torch")
    args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4,
                     learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no",
                     disable_tqdm=True, use_cpu=True, optim=optim, max_length=64, seed=0)
    return LoraPlusSFTTrainer(model=model, args=args, train_dataset=_data(),
                              processing_class=tok,
                              peft_config=LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"),
                              **kw)


def _groups(trainer):
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    return opt, {g["name"]: g["initial_lr"] for g in opt.param_groups}


def test_sft_trainer_with_the_mixin_trains_with_loraplus_groups(lm, tmp_path):
    trainer = _trainer(lm, tmp_path, loraplus_ratio=8.0)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
              if "lora_B" in n}
    trainer.train()
    opt, lrs = _groups(trainer)
    assert isinstance(opt, torch.optim.AdamW)
    assert lrs["lora_A"] == 1e-3 and lrs["lora_B"] == 8e-3
    assert trainer.loraplus_settings()["loraplus_ratio"] == 8.0
    moved = [n for n, p in trainer.model.named_parameters()
             if n in before and not torch.equal(p, before[n])]
    assert moved  # B left zero: training ran
    assert trainer.state.global_step == 2


def test_sft_trainer_honours_args_optim_and_default_ratio(lm, tmp_path):
    trainer = _trainer(lm, tmp_path, optim="sgd")
    trainer.train()
    opt, lrs = _groups(trainer)
    assert isinstance(opt, torch.optim.SGD)
    assert lrs["lora_B"] == 16 * lrs["lora_A"] == 16e-3


def test_mixin_refuses_bad_settings():
    from transformers import Trainer

    from scalelab.lora import LoraPlusMixin

    class T(LoraPlusMixin, Trainer):
        pass

    with pytest.raises(ValueError, match="loraplus_ratio must be a finite number > 0"):
        T(loraplus_ratio=-1.0)
