"""The real embedded models (MiniLM-L6, SmolLM2-135M) on the real data. One short run in the
default suite; the rest are marked slow (`make test-slow`)."""

import json
import math
import time

import pytest
from safetensors.torch import load_file

from scalelab.cli import main
from scalelab.train import FinetuneConfig, finetune


def test_minilm_tweets_two_steps(tmp_path):
    r = finetune(FinetuneConfig(steps=2, eval_every=2, eval_size=32, batch_size=8),
                 tmp_path, quiet=True)
    assert r.status == "ok" and r.steps == 2 and r.method == "loraplus"
    assert all(math.isfinite(v) for v in r.train_loss) and 0 <= r.accuracy <= 1
    assert abs(r.eval_loss[0] - math.log(3)) < 0.3  # a fresh 3-class head on a real encoder
    w = load_file(str(tmp_path / "checkpoint" / "adapter.safetensors"))
    lora = [k for k in w if "lora_" in k]
    # MiniLM-L6: 6 layers x (query, value) x (A, B), plus the classifier head (weight, bias)
    assert len(lora) == 24 and len(w) == 26
    assert all(w[k].shape in ((8, 384), (384, 8)) for k in lora)


@pytest.mark.slow
def test_short_comparison_on_the_default_within_budget(tmp_path, capsys):
    """The issue's short comparison: `--steps 12 --eval-every 6`, about two minutes on 2 cores."""
    t0 = time.perf_counter()
    assert main(["finetune", "--compare", "lora,loraplus", "--steps", "12", "--eval-every", "6",
                 "--out", str(tmp_path), "--quiet"]) == 0
    wall = time.perf_counter() - t0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["variant"] for r in report["runs"]] == ["lora", "loraplus"]
    assert all(r["eval_steps"] == [6, 12] for r in report["runs"])
    # both learn something in 12 steps: below the chance loss ln(3)
    assert all(r["final_eval_loss"] < math.log(3) for r in report["runs"])
    assert wall < 240, wall


@pytest.mark.slow
def test_smollm2_chat_causal_lm(tmp_path):
    r = finetune(FinetuneConfig(model="smollm2", dataset="chat", method="loraplus", steps=4,
                                eval_every=2, eval_size=32, batch_size=4, max_length=64),
                 tmp_path, quiet=True)
    assert r.status == "ok" and r.accuracy is None
    assert r.perplexity == pytest.approx(math.exp(r.final_eval_loss))
    assert r.eval_loss[-1] < r.eval_loss[0] + 0.05
