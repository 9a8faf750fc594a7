"""The parts of the ``loraplus-width`` reproduction that can be checked exactly.

The model builder's width rule and parameter counts (against the closed form), the compact
vocabulary and BERT masking, the cache keys and reuse, and the arithmetic that reads
best losses, gains, speed-ups and trends off hand-made curves. The quick reproduction itself
runs in tests/experiments/test_reproduce.py.
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from scalelab.experiments import _width_runs
from scalelab.experiments._width_analysis import (
    best_point,
    choose,
    compare,
    linear_fit,
    mean_curve,
    smooth,
    speedup,
    steps_to_target,
    trends,
    width_result,
)
from scalelab.experiments._width_models import (
    MASK,
    SPECIAL_TOKENS,
    UNK,
    PretrainSpec,
    compact_vocabulary,
    encoder_config,
    id_map,
    mask_tokens,
)
from scalelab.experiments._width_runs import (
    RunSpec,
    batch_order,
    cached_run,
    eval_points,
    read_cached,
    run_path,
)
from scalelab.experiments.loraplus_width import FULL, QUICK

# ---------------------------------------------------------------- model builder


@pytest.mark.parametrize("width,head_dim", [(64, 64), (128, 64), (512, 64), (96, 32)])
def test_width_rule(width, head_dim):
    cfg = encoder_config(width, 3, head_dim=head_dim, vocab_size=100, max_positions=16)
    assert cfg.hidden_size == width and cfg.num_attention_heads == width // head_dim
    assert cfg.intermediate_size == 4 * width and cfg.num_hidden_layers == 3
    assert cfg.hidden_dropout_prob == 0.0 and cfg.attention_probs_dropout_prob == 0.0


def test_width_rule_rejects_bad_widths():
    with pytest.raises(ValueError, match="width must be a multiple of head_dim=64, got 96"):
        encoder_config(96, 2)
    with pytest.raises(ValueError, match="depth"):
        encoder_config(64, 0)


@pytest.mark.parametrize("width,depth", [(32, 1), (64, 2)])
def test_parameter_count_matches_closed_form(width, depth):
    from transformers import BertModel

    V, P, T = 100, 16, 1
    model = BertModel(encoder_config(width, depth, head_dim=16, vocab_size=V, max_positions=P),
                      add_pooling_layer=False)
    # embeddings (word, position, type) + their LayerNorm; per layer: Q, K, V, O with biases,
    # two LayerNorms, FFN width -> 4 width -> width with biases.
    expected = (V + P + T) * width + 2 * width + depth * (12 * width**2 + 13 * width)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_pretrain_spec_validates():
    with pytest.raises(ValueError, match="width must be a multiple"):
        PretrainSpec(width=100)
    with pytest.raises(ValueError, match="seq_len must be >= 8"):
        PretrainSpec(width=64, seq_len=4)


# ---------------------------------------------------------------- corpus and masking


def test_compact_vocabulary_keeps_specials_then_most_frequent():
    special = (0, 100, 101, 102, 103)
    ids = [[7, 7, 7, 9, 9, 5, 101], [9, 11, 11, 11, 11, 100, 5]]
    # counts: 11 -> 4, 7 -> 3, 9 -> 3, 5 -> 2 (ties: smaller id first); specials not counted
    kept = compact_vocabulary(ids, vocab_size=8, special_ids=special)
    assert kept.tolist() == [0, 100, 101, 102, 103, 11, 7, 9]
    table = id_map(kept, 120)
    assert table[11] == 5 and table[7] == 6 and table[9] == 7
    assert table[5] == UNK and table[119] == UNK and table[101] == 2


def test_mask_tokens_rules():
    rng = np.random.default_rng(0)
    blocks = rng.integers(len(SPECIAL_TOKENS), 1000, size=(200, 64))
    blocks[:, 0], blocks[:, -1] = 2, 3  # CLS, SEP
    x, y = mask_tokens(blocks, np.random.default_rng(1), vocab_size=1000, mask_prob=0.15)
    picked = y != -100
    assert not picked[:, 0].any() and not picked[:, -1].any()  # specials never masked
    assert (y[picked] == blocks[picked]).all() and (x[~picked] == blocks[~picked]).all()
    frac = picked[:, 1:-1].mean()
    n = picked[:, 1:-1].size
    assert abs(frac - 0.15) < 4 * math.sqrt(0.15 * 0.85 / n)
    m = picked.sum()
    to_mask = (x[picked] == MASK).mean()
    kept = (x[picked] == blocks[picked]).mean()  # 10% kept, plus random hits of itself
    assert abs(to_mask - 0.8) < 4 * math.sqrt(0.16 / m)
    assert abs(kept - 0.1) < 4 * math.sqrt(0.09 / m) + 1e-3
    assert (x >= 0).all() and (x < 1000).all()
    x0, y0 = mask_tokens(blocks, np.random.default_rng(1), vocab_size=1000, mask_prob=0.0)
    assert (x0 == blocks).all() and (y0 == -100).all()


# ---------------------------------------------------------------- specs, keys, cache


def _spec(**kw):
    base = dict(pretrain=PretrainSpec(width=32, depth=1, head_dim=8, vocab_size=64, seq_len=16,
                                      steps=2, batch_size=2),
                method="loraplus", lr=1e-3, ratio=4.0, seed=0, steps=4, eval_every=2,
                eval_size=8, batch_size=2, max_length=16, rank=2, alpha=2.0)
    base.update(kw)
    return RunSpec(**base)


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value else 1
    if isinstance(value, float):
        return value * 2
    if isinstance(value, tuple):
        return value[:-1]
    if value is None:
        return 10
    return {"loraplus": "lora", "linear": "cosine"}[value]


def test_key_changes_with_every_field():
    spec = _spec()
    assert spec.key() == _spec().key()
    for f in dataclasses.fields(RunSpec):
        if f.name in ("pretrain", "method", "ratio"):
            continue
        other = dataclasses.replace(spec, **{f.name: _changed(getattr(spec, f.name))})
        assert other.key() != spec.key(), f.name
    lora = dataclasses.replace(spec, method="lora", ratio=1.0)
    assert lora.key() != spec.key()
    assert dataclasses.replace(spec, ratio=8.0).key() != spec.key()
    for f in dataclasses.fields(PretrainSpec):
        value = getattr(spec.pretrain, f.name)
        new = {"width": 64, "head_dim": 16}.get(f.name, _changed(value))
        if f.name == "mask_prob":
            new = 0.2
        elif f.name == "warmup":
            new = 0.2
        other = dataclasses.replace(spec, pretrain=dataclasses.replace(spec.pretrain,
                                                                       **{f.name: new}))
        assert other.key() != spec.key(), f"pretrain.{f.name}"
        assert other.pretrain.key() != spec.pretrain.key(), f"pretrain.{f.name}"


def test_run_spec_validates():
    with pytest.raises(ValueError, match="ratio must be 1 for method 'lora'"):
        _spec(method="lora", ratio=4.0)
    with pytest.raises(ValueError, match="method"):
        _spec(method="dora")
    with pytest.raises(ValueError, match="eval_size must be <= 2000"):
        _spec(eval_size=5000)


def test_cached_run_is_reused_and_stale_records_rerun(tmp_path, monkeypatch):
    calls = []

    def fake(spec, cache, log=None):
        calls.append(spec.key())
        return {"spec": _width_runs._spec_doc(spec), "key": spec.key(), "label": spec.label(),
                "eval_steps": [2, 4], "eval_loss": [1.0, 0.9], "status": "ok", "wall_s": 0.0}

    monkeypatch.setattr(_width_runs, "finetune_run", fake)
    spec = _spec()
    first = cached_run(spec, tmp_path, tmp_path)
    second = cached_run(spec, tmp_path, tmp_path)
    assert len(calls) == 1 and first["cached"] is False and second["cached"] is True
    assert second["eval_loss"] == [1.0, 0.9]
    assert "cached" not in json.loads(run_path(spec, tmp_path).read_text())
    other = _spec(seed=1)
    cached_run(other, tmp_path, tmp_path)
    assert len(calls) == 2
    # a record under the right name but for another spec is not trusted
    doc = json.loads(run_path(spec, tmp_path).read_text())
    doc["spec"]["lr"] = 5.0
    run_path(spec, tmp_path).write_text(json.dumps(doc))
    assert read_cached(spec, tmp_path) is None
    cached_run(spec, tmp_path, tmp_path)
    assert len(calls) == 3


def test_eval_points_and_batch_order():
    assert eval_points(120, 20) == [20, 40, 60, 80, 100, 120]
    assert eval_points(10, 4) == [4, 8, 10]
    order = batch_order(10, 3, 7, seed=5)  # 3 batches per epoch, last example of each dropped
    assert order.shape == (7, 3)
    for epoch in range(2):
        ep = order[3 * epoch:3 * epoch + 3].ravel()
        assert len(set(ep.tolist())) == 9 and set(ep.tolist()) <= set(range(10))
    assert (batch_order(10, 3, 7, seed=5) == order).all()
    assert not (batch_order(10, 3, 7, seed=6) == order).all()


def test_protocol_grid():
    p = FULL
    cfgs = p.configs()
    assert [c for c in cfgs if c[0] == "lora"] == [("lora", lr, 1.0) for lr in p.lora_lrs]
    plus = [c for c in cfgs if c[0] == "loraplus"]
    assert len(plus) == len(p.plus_etas) * len(p.ratios)
    for (_, lr_a, ratio), (eta, r) in zip(plus, [(e, r) for e in p.plus_etas for r in p.ratios],
                                          strict=True):
        assert ratio == r and math.isclose(lr_a * (lr_a * ratio), eta**2, rel_tol=1e-12)
    specs = p.run_specs()
    assert len(specs) == len(p.widths) * len(cfgs) * len(p.seeds)
    assert len({s.key() for s in specs}) == len(specs)
    assert [s.pretrain.width for s in specs][0] == max(p.widths)
    for w in p.widths:
        assert p.pretrain_spec(w).width == w
    with pytest.raises(ValueError, match="ratios must be > 1"):
        dataclasses.replace(QUICK, ratios=(1.0, 2.0))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        dataclasses.replace(QUICK, seeds=(0,))
    with pytest.raises(ValueError, match="widths"):
        dataclasses.replace(QUICK, widths=(32, 16))


def test_classifier_head_policy_and_targets(tmp_path):
    import torch
    from transformers import BertModel

    from scalelab.lora import create_loraplus_optimizer

    spec = _spec(lr=1e-3, ratio=4.0, head_lr=7e-3)
    p = spec.pretrain
    bert = BertModel(encoder_config(p.width, p.depth, head_dim=p.head_dim,
                                    vocab_size=p.vocab_size, max_positions=p.seq_len),
                     add_pooling_layer=False)
    torch.save(bert.state_dict(), tmp_path / "encoder.pt")
    model = _width_runs.build_classifier(spec, tmp_path)
    names = [n for n, q in model.named_parameters() if q.requires_grad]
    lora = [n for n in names if "lora_" in n]
    assert len(lora) == 2 * 4 * p.depth  # A and B on query, key, value, attention output
    assert not any("intermediate" in n or ".output.dense" in n and "attention" not in n
                   for n in lora)
    emb = next(q for n, q in model.named_parameters() if "word_embeddings" in n)
    assert torch.equal(emb, bert.embeddings.word_embeddings.weight)  # the encoder was loaded
    opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=spec.lr, ratio=spec.ratio,
                                    head_lr=spec.head_lr)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["lora_A"] == 1e-3 and lrs["lora_B"] == 4e-3
    assert lrs["other"] == lrs["other_no_decay"] == 7e-3  # the head, weight and bias
    ids = torch.randint(5, p.vocab_size, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    out = model(input_ids=ids, attention_mask=mask)
    assert out.shape == (3, 3)
    # padding does not change a row's logits: mean pooling over the mask only
    ids2 = ids.clone()
    ids2[0, 5:] = 0
    assert torch.allclose(model(input_ids=ids2, attention_mask=mask)[0], out[0], atol=1e-5)


# ---------------------------------------------------------------- arithmetic on curves


def test_smooth_best_and_steps_to_target():
    assert smooth([3.0, 1.0, 2.0, 6.0]) == [2.0, 2.0, 3.0, 4.0]
    assert smooth([1.0, None, 3.0]) == [1.0, None, 3.0]
    steps = [10, 20, 30, 40]
    assert best_point(steps, [1.0, 0.5, 0.7, 0.5]) == (0.5, 20)
    assert best_point(steps, [None] * 4) == (None, None)
    assert steps_to_target(steps, [1.0, 0.8, 0.6, 0.4], 0.6) == 30
    assert steps_to_target(steps, [1.0, 0.8, 0.7, 0.65], 0.6) is None
    assert steps_to_target(steps, [1.0, 0.8, 0.6, 0.4], None) is None
    assert speedup(40, 20) == 2.0 and speedup(40, None) == 0.0 and speedup(None, 10) is None
    assert mean_curve([[1.0, 2.0], [3.0, None]]) == [2.0, None]


def test_compare_gain_and_speedup():
    steps = [10, 20, 30, 40]
    lora = [1.0, 0.8, 0.7, 0.6]
    plus = [0.9, 0.6, 0.55, 0.5]
    c = compare(steps, lora, plus)
    assert c["lora_best"] == 0.6 and c["lora_step"] == 40 and c["loraplus_reaches_at"] == 20
    assert math.isclose(c["gain"], 0.1) and c["speedup"] == 2.0
    worse = compare(steps, lora, [1.0, 0.9, 0.8, 0.7])
    assert worse["speedup"] == 0.0 and math.isclose(worse["gain"], -0.1)


def _record(width, method, lr, ratio, seed, curve):
    return {"spec": {"pretrain": {"width": width}, "method": method, "lr": lr, "ratio": ratio,
                     "seed": seed},
            "label": f"{width}-{method}-{lr}-{ratio}-{seed}", "eval_steps": [1, 2, 3],
            "eval_loss": curve}


def test_choose_skips_diverged_and_breaks_ties():
    steps = [1, 2, 3]
    curves = {("lora", 1e-3, 1.0): {0: [1.0, 0.9, 0.8], 1: [1.0, 0.9, 0.8]},
              ("lora", 2e-3, 1.0): {0: [1.0, 0.5, 0.4], 1: [1.0, None, None]},  # diverged on 1
              ("loraplus", 1e-3, 2.0): {0: [1.0, 0.7, 0.6], 1: [1.0, 0.7, 0.6]},
              ("loraplus", 5e-4, 8.0): {0: [1.0, 0.7, 0.6], 1: [1.0, 0.7, 0.6]}}  # a tie
    assert choose(curves, steps, "lora", [0, 1]) == ("lora", 1e-3, 1.0)
    assert choose(curves, steps, "lora", [0]) == ("lora", 2e-3, 1.0)
    assert choose(curves, steps, "loraplus", [0, 1]) == ("loraplus", 1e-3, 2.0)  # smaller ratio
    assert choose(curves, steps, "dora", [0, 1]) is None


def test_width_result_leave_one_seed_out():
    # Smoothing a constant curve leaves it constant, so every best is the constant.
    def flat(v):
        return [v, v, v]

    recs = [
        _record(64, "lora", 1e-3, 1.0, 0, flat(0.80)), _record(64, "lora", 1e-3, 1.0, 1, flat(0.70)),
        _record(64, "lora", 1e-3, 1.0, 2, flat(0.75)),
        _record(64, "lora", 2e-3, 1.0, 0, flat(0.78)), _record(64, "lora", 2e-3, 1.0, 1, flat(0.74)),
        _record(64, "lora", 2e-3, 1.0, 2, flat(0.76)),
        _record(64, "loraplus", 1e-3, 2.0, 0, flat(0.79)),
        _record(64, "loraplus", 1e-3, 2.0, 1, flat(0.69)),
        _record(64, "loraplus", 1e-3, 2.0, 2, flat(0.70)),
        _record(64, "loraplus", 5e-4, 8.0, 0, flat(0.60)),
        _record(64, "loraplus", 5e-4, 8.0, 1, flat(0.80)),
        _record(64, "loraplus", 5e-4, 8.0, 2, flat(0.80)),
    ]
    r = width_result(recs, [0, 1, 2])
    # seed means: lora 1e-3 0.75, 2e-3 0.76 -> 1e-3; plus ratio 2 0.7267, ratio 8 0.7333 -> 2
    assert r["lora"] == ("lora", 1e-3, 1.0) and r["best_ratio"] == 2.0
    assert math.isclose(r["lora_best"], 0.75) and math.isclose(r["loraplus_best"], 0.2180 / 0.3)
    by_seed = {p["seed"]: p for p in r["per_seed"]}
    # held out 0: chosen on {1, 2}: lora 1e-3 (0.725) vs 2e-3 (0.75); plus ratio 2 (0.695)
    assert by_seed[0]["lora"] == ("lora", 1e-3, 1.0) and by_seed[0]["loraplus"][2] == 2.0
    assert math.isclose(by_seed[0]["gain"], 0.80 - 0.79)
    # held out 1: chosen on {0, 2}: lora 1e-3 (0.775) vs 2e-3 (0.77) -> 2e-3;
    # plus ratio 2 (0.745) vs 8 (0.70) -> 8; scored on seed 1: 0.74 - 0.80
    assert by_seed[1]["lora"] == ("lora", 2e-3, 1.0) and by_seed[1]["loraplus"][2] == 8.0
    assert math.isclose(by_seed[1]["gain"], 0.74 - 0.80)
    assert by_seed[1]["speedup"] == 0.0  # LoRA+ never reaches 0.74 on seed 1
    # each seed's own best ratio
    assert [by_seed[s]["own_best_ratio"] for s in (0, 1, 2)] == [8.0, 2.0, 2.0]
    gains = [by_seed[s]["gain"] for s in (0, 1, 2)]
    assert math.isclose(r["heldout_gain"], sum(gains) / 3)
    assert r["at_grid_edge"]["best_ratio"] is True


def _result(width, ratio, gains, own=None):
    own = own or [ratio] * len(gains)
    return {"width": width, "undetermined": False, "best_ratio": ratio, "seeds": [0, 1, 2],
            "heldout_gain": sum(gains) / len(gains),
            "per_seed": [{"seed": s, "own_best_ratio": o, "gain": g}
                         for s, (o, g) in enumerate(zip(own, gains, strict=True))]}


def test_trends_and_verdict():
    grows = [_result(64, 2.0, [-0.01, 0.0, -0.005]), _result(128, 2.0, [0.0, 0.005, 0.0]),
             _result(256, 8.0, [0.01, 0.0, 0.02]), _result(512, 32.0, [0.02, 0.03, 0.01])]
    t = trends(grows)
    assert t["ratio_fit"]["slope"] > 0 and t["ratio_spearman"] > 0 and t["ratio_grows"]
    assert t["gain_grows"] and t["pays_at_largest"] and t["holds"]
    x = [6, 7, 8, 9]
    g = [r["heldout_gain"] for r in grows]
    assert math.isclose(t["gain_fit"]["slope"], np.polyfit(x, g, 1)[0], rel_tol=1e-9)
    assert math.isclose(t["ratio_fit"]["slope"],
                        np.polyfit(np.log([64, 128, 256, 512]), np.log([2, 2, 8, 32]), 1)[0])
    flat = [_result(w, 8.0, [0.01, -0.01, 0.0]) for w in (64, 128, 256, 512)]
    tf = trends(flat)
    assert not tf["ratio_grows"] and not tf["gain_grows"] and not tf["holds"]
    # pays at the largest width needs a majority of positive held-out seeds
    losing = grows[:3] + [_result(512, 32.0, [0.04, -0.01, -0.001])]
    tl = trends(losing)
    assert tl["gain_grows"] and not tl["pays_at_largest"] and not tl["holds"]
    undetermined = grows[:3] + [{"width": 512, "undetermined": True}]
    assert not trends(undetermined)["holds"]


def test_linear_fit_interval():
    fit = linear_fit([0, 1, 2, 3], [1.0, 3.0, 5.0, 7.0])
    assert math.isclose(fit["slope"], 2.0) and math.isclose(fit["intercept"], 1.0)
    assert fit["ci95"] < 1e-9
    assert math.isnan(linear_fit([0, 1], [0.0, 1.0])["ci95"])
