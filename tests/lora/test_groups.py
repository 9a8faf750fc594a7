"""loraplus_param_groups: exact mapping, PEFT's create_loraplus_optimizer as a peer oracle."""

import time

import pytest
import torch
from torch import nn

from _lora_models import MLP, Tiny, group_of, peft_tiny, short_names
from scalelab.lora import LoRALinear, add_lora, loraplus_param_groups

LR, RATIO, WD = 1e-3, 16.0, 0.1


def _check_partition(model, groups):
    """Every trainable parameter in exactly one group, frozen ones in none, no empty group."""
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(ids) == trainable
    assert all(g["params"] for g in groups)
    assert {"params", "lr", "weight_decay", "name"} <= set().union(*groups)


def test_peft_mapping_exact():
    model = peft_tiny()
    groups = loraplus_param_groups(model, lr=LR, ratio=RATIO, weight_decay=WD)
    _check_partition(model, groups)
    assert group_of(groups, model) == {
        "lin.lora_A.default.weight": "lora_A",
        "conv.lora_A.default.weight": "lora_A",
        "lin.lora_B.default.weight": "lora_B",
        "conv.lora_B.default.weight": "lora_B",
        "emb.lora_embedding_A.default": "embedding",
        "emb.lora_embedding_B.default": "embedding",
        "head.modules_to_save.default.weight": "other",
        "head.modules_to_save.default.bias": "other_no_decay",
    }
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings == {"lora_A": (LR, WD), "lora_B": (LR * RATIO, WD), "embedding": (1e-6, WD),
                        "other": (LR, WD), "other_no_decay": (LR * RATIO, 0.0)}


def test_peft_dora_lora_bias_and_trainable_base_biases():
    model = peft_tiny(dora=True, bias="all")
    groups = loraplus_param_groups(model, lr=LR, ratio=RATIO, weight_decay=WD, lr_embedding=2e-4)
    _check_partition(model, groups)
    where = group_of(groups, model)
    for layer in ("emb", "lin", "conv"):  # the conv magnitude is (1, 16, 1): by owner, not ndim
        assert where[f"{layer}.lora_magnitude_vector.default.weight"] == "lora_magnitude"
    for bias in ("lin.base_layer.bias", "conv.base_layer.bias", "norm.bias"):
        assert where[bias] == "other_no_decay"
    assert "norm.weight" not in where  # frozen: in no group
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings["lora_magnitude"] == (LR * RATIO, 0.0)
    assert settings["embedding"] == (2e-4, WD)

    model = peft_tiny(lora_bias=True)
    groups = loraplus_param_groups(model, lr=LR, ratio=RATIO, weight_decay=WD)
    _check_partition(model, groups)
    where = group_of(groups, model)
    assert where["lin.lora_B.default.bias"] == where["conv.lora_B.default.bias"] == "lora_B_no_decay"
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings["lora_B_no_decay"] == (LR * RATIO, 0.0)


@pytest.mark.parametrize("variant", [{}, {"dora": True}, {"lora_bias": True, "bias": "all"}])
def test_peft_create_loraplus_optimizer_as_peer_oracle(variant):
    """Same lr per parameter wherever the two policies agree; weight decay on matrices agrees."""
    from peft.optimizers import create_loraplus_optimizer as peft_create

    model = peft_tiny(**variant)
    ours = loraplus_param_groups(model, lr=LR, ratio=RATIO, weight_decay=WD)
    theirs = peft_create(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO,
                         loraplus_weight_decay=WD).param_groups
    ours_by = {id(p): (g["lr"], g["weight_decay"]) for g in ours for p in g["params"]}
    theirs_by = {id(p): (g["lr"], g["weight_decay"]) for g in theirs for p in g["params"]}
    assert ours_by.keys() == theirs_by.keys()
    names = short_names(model)
    compared = 0
    for pid, (lr, wd) in ours_by.items():
        name = names[pid]
        if name == "conv.lora_magnitude_vector.default.weight":
            # documented difference: PEFT tests ndim == 1, so this (1, out, 1) vector sits at lr
            assert theirs_by[pid][0] == LR and lr == LR * RATIO
            continue
        assert lr == theirs_by[pid][0], name
        if "magnitude" not in name:  # documented: PEFT decays DoRA magnitudes, we do not
            assert wd == theirs_by[pid][1], name
        compared += 1
    assert compared >= 8


def test_head_lr_puts_every_non_lora_param_at_its_own_lr():
    model = peft_tiny(lora_bias=True, bias="all")
    groups = loraplus_param_groups(model, lr=LR, ratio=RATIO, head_lr=3e-3, weight_decay=WD)
    settings = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert settings["other"] == (3e-3, WD) and settings["other_no_decay"] == (3e-3, 0.0)
    assert settings["lora_B_no_decay"] == (LR * RATIO, 0.0)  # a LoRA bias is not "other"
    assert settings["lora_A"][0] == LR and settings["lora_B"][0] == LR * RATIO


def test_add_lora_model_mapping():
    model = add_lora(MLP(), ["fc1", "fc2"], r=3)
    model.head.requires_grad_(True)
    model.norm.requires_grad_(True)
    groups = loraplus_param_groups(model, lr=LR, ratio=4.0, weight_decay=WD)
    _check_partition(model, groups)
    assert group_of(groups, model) == {
        "fc1.lora_A": "lora_A", "fc2.lora_A": "lora_A",
        "fc1.lora_B": "lora_B", "fc2.lora_B": "lora_B",
        "head.weight": "other",
        "norm.weight": "other_no_decay", "norm.bias": "other_no_decay", "head.bias": "other_no_decay",
    }
    assert [g["name"] for g in groups] == ["lora_A", "lora_B", "other", "other_no_decay"]
    assert [g["lr"] for g in groups] == [LR, 4 * LR, LR, 4 * LR]


class _Impostor(nn.Module):
    """Holds parameters *named* like LoRA factors but is not a LoRA layer."""

    def __init__(self):
        super().__init__()
        self.lora_B = nn.Parameter(torch.randn(4, 4))
        self.lora_up = nn.Linear(4, 4)


def test_classification_is_by_owner_type_not_by_name():
    model = nn.Sequential(LoRALinear(nn.Linear(4, 4), r=2), _Impostor())
    groups = loraplus_param_groups(model, lr=LR)
    where = group_of(groups, model)
    assert where["0.lora_A"] == "lora_A" and where["0.lora_B"] == "lora_B"
    assert where["1.lora_B"] == "other" and where["1.lora_up.weight"] == "other"


def test_tied_parameter_counted_once():
    model = add_lora(MLP(d=12), ["fc2"], r=2)
    model.head.requires_grad_(True)
    model.extra = nn.Linear(12, 5)
    model.extra.weight = model.head.weight  # tied
    groups = loraplus_param_groups(model, lr=LR)
    _check_partition(model, groups)


def test_errors_are_one_line_value_errors():
    model = add_lora(MLP(), "fc1")
    for kwargs, word in [({"lr": 0}, "lr"), ({"lr": -1}, "lr"), ({"lr": LR, "ratio": 0}, "ratio"),
                         ({"lr": LR, "ratio": -2}, "ratio"),
                         ({"lr": LR, "lr_embedding": 0}, "lr_embedding"),
                         ({"lr": LR, "weight_decay": -0.1}, "weight_decay"),
                         ({"lr": LR, "head_lr": float("nan")}, "head_lr")]:
        with pytest.raises(ValueError, match=word) as info:
            loraplus_param_groups(model, **kwargs)
        assert "\n" not in str(info.value)


def test_no_lora_parameters_says_what_was_found():
    with pytest.raises(ValueError) as info:
        loraplus_param_groups(MLP(), lr=LR)
    msg = str(info.value)
    assert msg.startswith("found no LoRA parameters in MLP (8 trainable parameter tensors, "
                          "0 LoRA layers)")
    assert "add_lora" in msg and "\n" not in msg
    with pytest.raises(ValueError, match=r"named like LoRA \(e.g. 'lora_B'\)"):
        loraplus_param_groups(_Impostor(), lr=LR)


def test_all_lora_parameters_frozen():
    model = add_lora(Tiny(), ["lin"], r=2)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    with pytest.raises(ValueError, match="all 2 LoRA parameters in Tiny are frozen"):
        loraplus_param_groups(model, lr=LR)


def test_thousand_lora_layers_build_fast():
    """Loose guard against quadratic scans (the benchmark measures the real figure)."""
    model = add_lora(nn.Sequential(*[nn.Linear(8, 8) for _ in range(1000)]), "all-linear", r=2)
    loraplus_param_groups(model, lr=LR)  # warm-up
    start = time.perf_counter()
    groups = loraplus_param_groups(model, lr=LR)
    assert time.perf_counter() - start < 0.5
    assert [len(g["params"]) for g in groups] == [1000, 1000]


def test_tiny_llama_from_config_against_peft():
    """A transformers model (RMSNorm, tied-free lm_head in modules_to_save, embedding LoRA)."""
    pytest.importorskip("transformers")
    from peft import LoraConfig, get_peft_model
    from peft.optimizers import create_loraplus_optimizer as peft_create
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "embed_tokens"], modules_to_save=["lm_head"]))
    model.base_model.model.model.norm.weight.requires_grad_(True)  # a trainable RMSNorm
    ours = loraplus_param_groups(model, lr=LR, ratio=RATIO, weight_decay=WD)
    _check_partition(model, ours)
    theirs = peft_create(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=RATIO,
                         loraplus_weight_decay=WD).param_groups
    theirs_by = {id(p): (g["lr"], g["weight_decay"]) for g in theirs for p in g["params"]}
    names = short_names(model)
    for g in ours:
        for p in g["params"]:
            assert g["lr"] == theirs_by[id(p)][0], names[id(p)]
            if names[id(p)] == "model.norm.weight":  # documented: PEFT decays RMSNorm weights
                assert (g["weight_decay"], theirs_by[id(p)][1]) == (0.0, WD)
            else:
                assert g["weight_decay"] == theirs_by[id(p)][1], names[id(p)]
    assert {g["name"] for g in ours} == {"lora_A", "lora_B", "embedding", "other",
                                         "other_no_decay"}
