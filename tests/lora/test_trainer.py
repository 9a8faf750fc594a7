"""LoraPlusTrainer on a tiny BERT built from a config (no download) under PEFT LoRA, on CPU."""

import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

DECAYED = {"lora_A", "lora_B", "embedding", "other"}


def _model():
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3)
    lora = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                      target_modules=["query", "value", "word_embeddings"])
    return get_peft_model(BertForSequenceClassification(config), lora)  # classifier: trainable


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 64, (n, 10), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y}
            for i, y in zip(ids, labels, strict=True)]


def _args(tmp_path, **kw):
    from scalelab.lora import LoraPlusTrainingArguments

    base = dict(output_dir=str(tmp_path), use_cpu=True, max_steps=2, per_device_train_batch_size=4,
                learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no",
                disable_tqdm=True, seed=0)
    return LoraPlusTrainingArguments(**{**base, **kw})


def test_trains_with_loraplus_groups_and_weight_decay(tmp_path):
    from scalelab.lora import LoraPlusTrainer

    model = _model()
    args = _args(tmp_path, weight_decay=0.1, loraplus_ratio=8.0, loraplus_lr_embedding=5e-4)
    B_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    trainer = LoraPlusTrainer(model=model, args=args, train_dataset=_data())
    trainer.train()
    opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrap Accelerate's
    assert isinstance(opt, torch.optim.AdamW)  # args.optim's default, adamw_torch(_fused)
    lrs = {g["name"]: g["initial_lr"] for g in opt.param_groups}  # before the scheduler's decay
    assert lrs["lora_A"] == 1e-3 and lrs["lora_B"] == 8e-3
    assert lrs["embedding"] == 5e-4 and lrs["other"] == 1e-3 and lrs["other_no_decay"] == 8e-3
    for g in opt.param_groups:
        assert g["weight_decay"] == (0.1 if g["name"] in DECAYED else 0.0)
        if g["name"] in DECAYED:  # decay only on matrices: no bias or norm vector among them
            assert all(p.ndim >= 2 for p in g["params"])
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters() if p.requires_grad}
    assert opt.state  # the optimizer stepped
    moved = [n for n, p in model.named_parameters() if n in B_before and not
             torch.equal(p, B_before[n])]
    assert moved  # B started at 0 and has learned


def test_honours_args_optim_and_plain_training_arguments(tmp_path):
    from transformers import TrainingArguments

    from scalelab.lora import LoraPlusTrainer

    plain = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, learning_rate=2e-3,
                              optim="sgd", report_to=[])
    trainer = LoraPlusTrainer(model=_model(), args=plain, train_dataset=_data())
    opt = trainer.create_optimizer()
    assert isinstance(opt, torch.optim.SGD)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["lora_B"] == 16 * 2e-3 and lrs["embedding"] == 1e-6  # defaults without the fields


def test_head_lr_from_args(tmp_path):
    from scalelab.lora import LoraPlusTrainer

    trainer = LoraPlusTrainer(model=_model(), args=_args(tmp_path, loraplus_head_lr=3e-3),
                              train_dataset=_data())
    lrs = {g["name"]: g["lr"] for g in trainer.create_optimizer().param_groups}
    assert lrs["other"] == lrs["other_no_decay"] == 3e-3


def test_arguments_are_validated(tmp_path):
    with pytest.raises(ValueError, match="loraplus_ratio must be a finite number > 0, got 0"):
        _args(tmp_path, loraplus_ratio=0)
    with pytest.raises(ValueError, match="loraplus_head_lr must be a finite number > 0"):
        _args(tmp_path, loraplus_head_lr=-1.0)


def test_refuses_optimizers_that_build_their_own_groups(tmp_path, monkeypatch):
    from scalelab.lora import LoraPlusTrainer

    trainer = LoraPlusTrainer(model=_model(), args=_args(tmp_path), train_dataset=_data())
    monkeypatch.setattr(trainer, "get_optimizer_cls_and_kwargs",
                        lambda args, model=None: (torch.optim.AdamW, {"lr": 1e-3, "params": []}))
    with pytest.raises(ValueError, match="builds its own parameter groups"):
        trainer.create_optimizer()


def test_import_stays_lazy():
    code = ("import sys, scalelab.lora as L; L.create_loraplus_optimizer, L.init_lora_;"
            "assert not {'transformers', 'peft'} & set(sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from transformers import Trainer, TrainingArguments

    import scalelab.lora as lora

    assert issubclass(lora.LoraPlusTrainer, Trainer)
    assert issubclass(lora.LoraPlusTrainingArguments, TrainingArguments)
    assert "LoraPlusTrainer" in dir(lora)
    with pytest.raises(AttributeError):
        lora.NoSuchThing  # noqa: B018
