"""The fine-tuning loop on a tiny model built from a config (no download): groups, resume,
signals, divergence. The real MiniLM runs are in tests/train/test_real_model.py."""

import importlib
import json
import math
import signal
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scalelab.data.models import write_tiny_model
from scalelab.train import FinetuneConfig, finetune
from scalelab.train.batches import batch_indices, encode_causal
from scalelab.train.checkpoint import read_meta

# the module itself (the package exports a function of the same name)
ft = importlib.import_module("scalelab.train.run")


# the tiny model's character tokenizer makes every tweet long: cut on purpose
pytestmark = pytest.mark.filterwarnings("ignore:max_length:scalelab.ScalelabWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("tiny") / "enc"))


def _cfg(model, **kw):
    base = dict(model=model, dataset="tweets", batch_size=8, max_length=24, eval_size=32,
                eval_every=5, steps=10)
    base.update(kw)
    return FinetuneConfig(**base)


def _weights(out):
    return load_file(str(out / "checkpoint" / "adapter.safetensors"))


def _inject(monkeypatch, fn):
    """Call ``fn(n, output)`` after the n-th training forward of the model (fault injection)."""
    orig = ft.add_adapters

    def patched(model, config, task, **kw):
        model = orig(model, config, task, **kw)
        calls = {"n": 0}

        def hook(module, args, output):
            if module.training:
                calls["n"] += 1
                return fn(calls["n"], output)
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(ft, "add_adapters", patched)


def test_run_writes_results(tiny, tmp_path):
    r = finetune(_cfg(tiny, steps=6, eval_every=3), tmp_path, quiet=True)
    assert r.status == "ok" and r.steps == 6 and r.eval_steps == [3, 6]
    assert len(r.train_loss) == 6 and all(math.isfinite(v) for v in r.train_loss)
    assert r.final_eval_loss == r.eval_loss[-1] and 0 <= r.accuracy <= 1
    assert r.tokens > 6 * 8 and r.tokens_per_s > 0 and r.perplexity is None
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["eval_loss"] == r.eval_loss and on_disk["config"]["steps"] == 6
    assert {f.name for f in (tmp_path / "checkpoint").iterdir()} == {
        "adapter.safetensors", "state.pt", "rng-0.pt", "meta.json"}
    # a fresh 3-class head starts near chance: ln(3)
    assert abs(r.eval_loss[0] - math.log(3)) < 0.1


def test_same_seed_same_numbers(tiny):
    a = finetune(_cfg(tiny, steps=4, dropout=0.1), quiet=True)
    b = finetune(_cfg(tiny, steps=4, dropout=0.1), quiet=True)
    c = finetune(_cfg(tiny, steps=4, dropout=0.1, seed=1), quiet=True)
    assert a.train_loss == b.train_loss and a.eval_loss == b.eval_loss
    assert a.train_loss != c.train_loss


def test_loraplus_ratio_one_equals_lora(tiny, tmp_path):
    """Reduces-to-baseline: LoRA+ with ratio 1 and the head at lr is LoRA, step for step."""
    a = finetune(_cfg(tiny, method="lora", lr=1e-3, steps=5), tmp_path / "a", quiet=True)
    b = finetune(_cfg(tiny, method="loraplus", lr=1e-3, ratio=1.0, head_lr=1e-3, steps=5),
                 tmp_path / "b", quiet=True)
    assert a.train_loss == b.train_loss
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("method,ratio", [("lora", 1.0), ("loraplus", 16.0), ("loraplus", 4.0)])
def test_first_adam_step_moves_B_by_lr_times_ratio(tiny, tmp_path, method, ratio):
    """Adam's first update is lr * sign(grad) (|g| >> eps); B starts at 0 under Init[A], so
    after one step max|B| = lr_B = lr * ratio exactly (LoRA: ratio 1), and the head moved by
    its own lr."""
    lr = 1e-3
    finetune(_cfg(tiny, method=method, lr=lr, ratio=ratio, head_lr=2e-3, steps=1), tmp_path,
             quiet=True)
    w = _weights(tmp_path)
    b_max = max(float(v.abs().max()) for k, v in w.items() if "lora_B" in k)
    assert b_max == pytest.approx(lr * ratio, rel=1e-3)


def test_resume_is_bitwise(tiny, tmp_path):
    """2 x 10 steps with a resume equals 20 steps, bit for bit (dropout on: RNG restored)."""
    straight = finetune(_cfg(tiny, steps=20, dropout=0.1), tmp_path / "a", quiet=True)
    finetune(_cfg(tiny, steps=10, dropout=0.1), tmp_path / "b", quiet=True)
    resumed = finetune(_cfg(tiny, steps=20, dropout=0.1), tmp_path / "b", quiet=True, resume=True)
    assert resumed.steps == 20 and resumed.eval_steps == [5, 10, 15, 20]
    assert resumed.train_loss == straight.train_loss and resumed.eval_loss == straight.eval_loss
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_other_config_and_starts_fresh_without_one(tiny, tmp_path):
    finetune(_cfg(tiny, steps=2), tmp_path, quiet=True)
    with pytest.raises(ValueError, match="cannot resume: the checkpoint was made with lr=0.00025, "
                                         "this run has lr=0.01"):
        finetune(_cfg(tiny, steps=4, lr=1e-2), tmp_path, quiet=True, resume=True)
    # the default given explicitly is the same configuration
    r = finetune(_cfg(tiny, steps=4, lr=2.5e-4), tmp_path, quiet=True, resume=True)
    assert r.steps == 4
    r = finetune(_cfg(tiny, steps=2), tmp_path / "empty", quiet=True, resume=True)
    assert r.steps == 2


def test_stop_request_saves_checkpoint_and_resume_matches(tiny, tmp_path):
    """A stop request (what SIGINT/SIGTERM set) after step 3 checkpoints and stops; --resume
    then matches an uninterrupted run bit for bit. Driven without OS signals, so the test
    is deterministic under pytest-xdist on a busy machine (the signal itself is tested in
    test_signal_sets_the_stop_flag and, end to end, in a real subprocess in
    tests/train/test_distributed.py)."""
    straight = finetune(_cfg(tiny, steps=8, dropout=0.1), tmp_path / "a", quiet=True)

    class StopAfterThree(ft.FinetuneRun):
        def step(self):
            loss = super().step()
            if self.result.steps == 3:
                self.request_stop(signal.SIGINT)
            return loss
    r = StopAfterThree(_cfg(tiny, steps=8, dropout=0.1, eval_every=100), tmp_path / "b",
                       quiet=True).run()
    assert r.status == "interrupted" and r.signal == signal.SIGINT and r.steps == 3
    assert "--resume" in r.message and read_meta(tmp_path / "b")["result"]["steps"] == 3
    assert not (tmp_path / "b" / "adapter").exists()  # unfinished: no adapter yet
    resumed = finetune(_cfg(tiny, steps=8, dropout=0.1), tmp_path / "b", quiet=True, resume=True)
    assert resumed.train_loss == straight.train_loss
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers are installed from the main thread only")
def test_signal_sets_the_stop_flag_and_handlers_are_restored():
    """SIGINT then SIGTERM inside SignalStop set its flag (signal.raise_signal runs the Python
    handler before it returns: no timing involved); a second SIGINT interrupts at once."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with ft.SignalStop() as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    def poison(n, out):
        if n == 7:
            out.logits = out.logits * float("nan")
        return out
    _inject(monkeypatch, poison)
    r = finetune(_cfg(tiny, steps=20, eval_every=100, checkpoint_every=3), tmp_path, quiet=True)
    assert r.status == "diverged" and r.steps == 6 and r.train_loss[-1] is None
    assert "became nan at step 7" in r.message and "step 6" in r.message
    assert read_meta(tmp_path)["result"]["steps"] == 6
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "diverged"


def test_batches_are_a_function_of_the_step():
    n, b = 50, 8
    epoch0 = np.concatenate([batch_indices(s, n, b, seed=3) for s in range(6)])
    assert len(set(epoch0.tolist())) == 48  # one epoch: no repeats, last partial batch dropped
    assert np.array_equal(batch_indices(7, n, b, 3), batch_indices(7, n, b, 3))
    assert not np.array_equal(batch_indices(0, n, b, 3), batch_indices(0, n, b, 4))
    assert not np.array_equal(batch_indices(0, n, b, 3), batch_indices(6, n, b, 3))  # new epoch


def test_epochs_are_totals(tmp_path, tiny):
    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(50)))
    cfg = _cfg(tiny, dataset=str(f), steps=None, epochs=2, eval_size=10)
    assert cfg.total_steps(40) == 10
    r = finetune(cfg, quiet=True)
    assert r.steps == 10 and r.eval_steps == [5, 10]


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(method="qlora"), dict(init="C"),
                                 dict(steps=3, epochs=1.0), dict(head_lr="fast"),
                                 dict(lr=-1.0), dict(targets="query")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        FinetuneConfig(**bad)


def test_causal_tiny_model_and_masking(tmp_path):
    model = str(write_tiny_model(tmp_path / "causal", kind="causal"))
    f = tmp_path / "qa.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": f"what is {i}", "response": f"it is {i}"})
                           for i in range(30)))
    r = finetune(FinetuneConfig(model=model, dataset=str(f), steps=3, eval_every=3,
                                batch_size=4, max_length=40), quiet=True)
    assert r.accuracy is None and r.perplexity == pytest.approx(math.exp(r.final_eval_loss))
    from scalelab.data.models import load_model

    _, tok = load_model(model, task="causal")
    batch = encode_causal(tok, [("a long prompt " * 10, "yes")], max_length=12)
    scored = batch["labels"][0] != -100
    assert batch["input_ids"].shape[1] == 12 and 1 <= int(scored.sum()) <= 11
    assert torch.equal(batch["input_ids"][0][scored], batch["labels"][0][scored])
