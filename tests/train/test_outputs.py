"""What a run leaves behind and how it is used: the PEFT adapter and the merged model (logits
round trips), predict / evaluate / export, schedules, grad accumulation, config files.
Tiny models from a config only (no download)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scalelab.cli import main
from scalelab.data.models import write_tiny_model
from scalelab.train import FinetuneConfig, FinetuneRun, finetune

# the tiny model's character tokenizer makes every tweet long: cut on purpose
pytestmark = pytest.mark.filterwarnings("ignore:max_length:scalelab.ScalelabWarning")

WORDS = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}


def _easy_csv(path, n=80, seed=0):
    """A task the tiny model learns in a few dozen steps: a word's polarity."""
    rng = np.random.default_rng(seed)
    rows = ["text,label"]
    for i in range(n):
        lab = "pos" if i % 2 == 0 else "neg"
        rows.append(f"{rng.choice(WORDS[lab])} {rng.choice(WORDS[lab])},{lab}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished classification run on the easy task (module-scoped: trained once)."""
    root = tmp_path_factory.mktemp("run")
    tiny = str(write_tiny_model(root / "enc", dropout=0.0))
    data = _easy_csv(root / "easy.csv")
    cfg = FinetuneConfig(model=tiny, dataset=str(data), method="loraplus", lr=5e-3,
                         head_lr=2e-2, steps=40, batch_size=16, max_length=16, eval_size=16,
                         eval_every=20)
    run = FinetuneRun(cfg, root / "out", quiet=True)
    result = run.run()
    return {"tiny": tiny, "data": data, "out": root / "out", "run": run, "result": result}


def _logits_scalelab(run, texts):
    enc = run.tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    run.model.eval()
    with torch.no_grad():
        return run.model(**enc).logits


def test_adapter_is_peft_format_and_reproduces_logits(trained):
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out, run = trained["out"], trained["run"]
    adapter = out / "adapter"
    assert trained["result"].status == "ok" and trained["result"].adapter == str(adapter.resolve())
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json",
            "tokenizer.json"} <= names
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == str(Path(trained["tiny"]
                                                                              ).resolve())
    assert acfg["modules_to_save"] and acfg["task_type"] == "SEQ_CLS"
    cfg = AutoConfig.from_pretrained(adapter)
    assert cfg.id2label == {0: "neg", 1: "pos"} and cfg.label2id == {"neg": 0, "pos": 1}
    # the tiny folder was saved with a 3-class head: the adapter brings the trained 2-class one
    base = AutoModelForSequenceClassification.from_pretrained(trained["tiny"], config=cfg,
                                                              ignore_mismatched_sizes=True)
    peft_model = PeftModel.from_pretrained(base, adapter).eval()
    tok = AutoTokenizer.from_pretrained(adapter)
    texts = ["good nice", "awful sad", "fine bad"]
    enc = tok(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        theirs = peft_model(**enc).logits
    torch.testing.assert_close(theirs, _logits_scalelab(run, texts), rtol=1e-5, atol=1e-5)
    doc = json.loads((out / "run.json").read_text())
    assert doc["model_location"] == str(Path(trained["tiny"]).resolve())
    assert doc["config"]["precision"] == "fp32" and doc["labels"] == ["neg", "pos"]
    assert set(doc["versions"]) >= {"torch", "transformers", "peft", "scalelab"}
    assert len(doc["data_fingerprint"]) == 64


BLOCKER = r'''
import sys, importlib.abc, importlib.machinery
class Block(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Any import of peft or scalelab fails (as if not installed)."""
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("peft", "scalelab"):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ImportError(f"{module.__name__} is blocked in this test")
sys.meta_path.insert(0, Block())
import json, torch
from transformers import AutoModelForSequenceClassification, AutoModelForCausalLM, AutoTokenizer
folder, kind, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cls = AutoModelForSequenceClassification if kind == "cls" else AutoModelForCausalLM
model = cls.from_pretrained(folder).eval()
tok = AutoTokenizer.from_pretrained(folder)
enc = tok(texts, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
imported = sorted(m for m in sys.modules if m.split(".")[0] in ("peft", "scalelab"))
print(json.dumps({"logits": logits.tolist(), "imported": imported,
                  "id2label": getattr(model.config, "id2label", None)}))
'''


def _load_plain(folder, kind, texts):
    r = subprocess.run([sys.executable, "-c", BLOCKER, str(folder), kind, json.dumps(texts)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_merged_export_loads_without_peft_or_scalelab(trained, tmp_path):
    texts = ["good nice", "awful sad"]
    assert main(["export", str(trained["out"]), "--merge", "--out", str(tmp_path / "m")]) == 0
    got = _load_plain(tmp_path / "m", "cls", texts)
    assert got["imported"] == [] and got["id2label"] == {"0": "neg", "1": "pos"}
    want = _logits_scalelab(trained["run"], texts)
    torch.testing.assert_close(torch.tensor(got["logits"]), want, rtol=1e-5, atol=1e-5)
    # without --merge: the PEFT adapter folder, as it is
    assert main(["export", str(trained["out"]), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == (
        trained["out"] / "adapter" / "adapter_model.safetensors").read_bytes()
    # an existing non-empty folder is refused
    assert main(["export", str(trained["out"]), "--out", str(tmp_path / "a")]) == 2


def test_predict_on_a_csv_with_known_labels(trained, tmp_path, capsys):
    f = tmp_path / "new.csv"
    rows = [("great good", "pos"), ("poor bad", "neg"), ("nice fine", "pos"), ("sad awful", "neg")]
    f.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    assert main(["predict", str(trained["out"]), "--input", str(f), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in preds] == [lab for _, lab in rows]
    for p in preds:
        assert set(p["probabilities"]) == {"neg", "pos"}
        assert math.isclose(sum(p["probabilities"].values()), 1.0, abs_tol=1e-5)
        assert p["probabilities"][p["label"]] == max(p["probabilities"].values())
    # plain lines on standard input, table output
    proc = subprocess.run([sys.executable, "-m", "scalelab", "predict", str(trained["out"]),
                           "--input", "-"], input="good great\nbad poor\n", text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["pos", "neg"]


def test_evaluate_reproduces_the_runs_final_eval(trained, capsys):
    assert main(["evaluate", str(trained["out"]), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    r = trained["result"]
    assert got["loss"] == pytest.approx(r.final_eval_loss, rel=1e-6)
    assert got["accuracy"] == pytest.approx(r.accuracy) and got["examples"] == 16
    assert main(["evaluate", str(trained["out"]), "--dataset", str(trained["data"]),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 80


def test_compare_folder_names_its_variants(tmp_path, capsys):
    (tmp_path / "lora" / "adapter").mkdir(parents=True)
    (tmp_path / "loraplus" / "adapter").mkdir(parents=True)
    assert main(["predict", str(tmp_path), "--input", "-"]) == 2
    err = capsys.readouterr().err
    assert "is a comparison; pick one variant" in err and "loraplus" in err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("tiny") / "enc", dropout=0.0))


def _weights(folder):
    return load_file(str(folder / "checkpoint" / "adapter.safetensors"))


def test_grad_accum_equals_the_full_batch(tiny, tmp_path):
    """batch 16 in one step == batch 16 as 2 (or 4) micro-batches of 8 (4), fp32."""
    base = dict(model=tiny, dataset="tweets", batch_size=16, max_length=24, eval_size=16,
                eval_every=4, steps=4)
    one = finetune(FinetuneConfig(**base), tmp_path / "1", quiet=True)
    for k in (2, 4):
        acc = finetune(FinetuneConfig(**base, grad_accum=k), tmp_path / str(k), quiet=True)
        np.testing.assert_allclose(acc.train_loss, one.train_loss, rtol=1e-6)
        np.testing.assert_allclose(acc.eval_loss, one.eval_loss, rtol=1e-6)
        a, b = _weights(tmp_path / "1"), _weights(tmp_path / str(k))
        for n in a:
            torch.testing.assert_close(b[n], a[n], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="divisible by grad_accum"):
        FinetuneConfig(**base, grad_accum=3)


def _closed_form(name, lr, warmup, total, s):
    """The lr of step s (0-based) of transformers' schedules, written out."""
    if s < warmup:
        return lr * s / max(1, warmup)
    if name == "constant":
        return lr
    progress = (s - warmup) / max(1, total - warmup)
    if name == "linear":
        return lr * max(0.0, 1 - progress)
    return lr * max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))


@pytest.mark.parametrize("name,warm", [("constant", dict(warmup_steps=2)),
                                       ("linear", dict(warmup_steps=2)),
                                       ("cosine", dict(warmup_ratio=0.25))])
def test_schedules_follow_transformers(tiny, name, warm):
    cfg = FinetuneConfig(model=tiny, method="lora", lr=1e-3, steps=8, batch_size=4,
                         max_length=16, eval_size=8, eval_every=8, lr_scheduler=name, **warm)
    r = finetune(cfg, quiet=True)
    want = [_closed_form(name, 1e-3, 2, 8, s) for s in range(8)]
    np.testing.assert_allclose(r.lr_history, want, rtol=1e-12, atol=1e-15)
    assert r.config["lr_scheduler"] == name


def test_config_file_precedence_unknown_keys_and_rerun(tiny, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {tiny}\nsteps: 4\nbatch-size: 4\nmax_length: 16\neval_size: 8\n"
                   "eval_every: 2\nlr: 2e-3\nmethod: lora\nlr_scheduler: linear\n")
    assert main(["finetune", "--config", str(cfg), "--lr", "1e-3", "--out",
                 str(tmp_path / "a"), "--quiet", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert a["lr"] == 1e-3 and a["steps"] == 4 and a["config"]["lr_scheduler"] == "linear"
    # the resolved config.yaml reruns the same run
    assert main(["finetune", "--config", str(tmp_path / "a" / "config.yaml"), "--out",
                 str(tmp_path / "b"), "--quiet", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["train_loss"] == a["train_loss"] and b["config"] == a["config"]
    for text, message in [("ratoi: 4\n", "unknown key 'ratoi'; did you mean 'ratio'?"),
                          ("warmup-ration: 0.1\n", "did you mean 'warmup_ratio'?"),
                          ("steps: many\n", "steps must be an integer, got 'many'"),
                          ("- 1\n- 2\n", "must hold a mapping"),
                          ("lr: [\n", "is not valid YAML")]:
        cfg.write_text(text)
        assert main(["finetune", "--config", str(cfg), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, err
        assert str(cfg) in err


def test_bf16_precision_is_recorded_and_checked_on_resume(tiny, tmp_path):
    cfg = FinetuneConfig(model=tiny, steps=2, batch_size=4, max_length=16, eval_size=8,
                         eval_every=2, precision="bf16")
    r = finetune(cfg, tmp_path, quiet=True)
    assert r.config["precision"] == "bf16" and all(math.isfinite(v) for v in r.train_loss)
    with pytest.raises(ValueError, match="precision='bf16', this run has precision='fp32'"):
        finetune(cfg.replace(precision="fp32", steps=4), tmp_path, quiet=True, resume=True)
