"""``scalelab finetune`` on a tiny model from a config: --compare, report.json, exit codes."""

import importlib
import json

import pytest

from scalelab.cli import main
from scalelab.data.models import write_tiny_model

ft = importlib.import_module("scalelab.train.run")
RUN_KEYS = {"variant", "method", "init", "lr", "ratio", "head_lr", "steps", "eval_steps",
            "eval_loss", "final_eval_loss", "accuracy", "steps_to_target", "wall_s",
            "tokens_per_s", "status"}


# the tiny model's character tokenizer makes every tweet long: cut on purpose
pytestmark = pytest.mark.filterwarnings("ignore:max_length:scalelab.ScalelabWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_tiny_model(tmp_path_factory.mktemp("tiny") / "enc"))


def _args(tiny, out, *extra):
    return ["finetune", "--model", tiny, "--steps", "6", "--eval-every", "2", "--batch-size",
            "8", "--max-length", "24", "--eval-size", "32", "--out", str(out), "--quiet", *extra]


def test_compare_writes_report_and_table(tiny, tmp_path, capsys):
    (tmp_path / "other.txt").write_text("kept")
    assert main(_args(tiny, tmp_path, "--compare", "lora,loraplus")) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["variant", "lr", "ratio"] and "loraplus" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"config", "target_loss", "runs"}
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert (tmp_path / "other.txt").read_text() == "kept"
    lora, plus = report["runs"]
    for run in report["runs"]:
        assert RUN_KEYS <= set(run) and run["status"] == "ok" and run["steps"] == 6
        assert run["eval_steps"] == [2, 4, 6] and len(run["eval_loss"]) == 3
        assert run["final_eval_loss"] == run["eval_loss"][-1]
    assert (lora["variant"], lora["method"], lora["ratio"], lora["lr"]) == ("lora", "lora", 1.0,
                                                                            2e-3)
    assert (plus["method"], plus["ratio"], plus["lr"], plus["head_lr"]) == ("loraplus", 16.0,
                                                                            2.5e-4, 3e-3)
    assert report["target_loss"] == min(lora["eval_loss"])
    for run in report["runs"]:
        hits = [s for s, v in zip(run["eval_steps"], run["eval_loss"], strict=True)
                if v <= report["target_loss"]]
        assert run["steps_to_target"] == (hits[0] if hits else None)
    assert report["config"]["method"] == "loraplus" and report["config"]["steps"] == 6


def test_json_is_alone_on_stdout_and_init_variants(tiny, tmp_path, capsys):
    assert main(_args(tiny, tmp_path, "--compare", "init-a,init-b", "--method", "lora",
                      "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["variant"], r["init"], r["method"]) for r in report["runs"]] == [
        ("init-a", "A", "lora"), ("init-b", "B", "lora")]
    assert report["runs"][0]["eval_loss"] != report["runs"][1]["eval_loss"]


def test_single_run_json_and_resume_is_noop_when_done(tiny, tmp_path, capsys):
    assert main(_args(tiny, tmp_path, "--json")) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 6 and first["variant"] == "loraplus"
    assert main(_args(tiny, tmp_path, "--json", "--resume")) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["eval_loss"] == first["eval_loss"] and again["train_loss"] == first["train_loss"]


def test_diverged_variant_gets_its_row_and_exit_1(tiny, tmp_path, capsys, monkeypatch):
    orig = ft.add_adapters

    def poisoned(model, config, task, **kw):  # LoRA+ runs produce a NaN loss at their 3rd step
        model = orig(model, config, task, **kw)
        calls = {"n": 0}

        def hook(module, args, output):
            if module.training and config.method == "loraplus":
                calls["n"] += 1
                if calls["n"] == 3:
                    output.logits = output.logits * float("inf") * 0
            return output
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(ft, "add_adapters", poisoned)
    assert main(_args(tiny, tmp_path, "--compare", "lora,loraplus")) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    lora, plus = report["runs"]
    assert lora["status"] == "ok" and plus["status"] == "diverged" and plus["steps"] == 2
    assert plus["eval_steps"] == [2] and "diverged" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "{tmp}/missing.csv"], "dataset file not found: '{tmp}/missing.csv'"),
    (["--dataset", "{tmp}/cols.csv"], "must have columns text,label or prompt,response"),
    (["--dataset", "{tmp}/empty.csv"], "has 0 rows"),
    (["--dataset", "{tmp}/one.csv"], "one class ('x')"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
    (["--compare", "lora,qlora"], "got 'qlora'"),
    (["--head-lr", "fast"], "head_lr must be a number > 0 or 'official'"),
    (["--dataset", "chat"], "is an encoder"),
])
def test_bad_input_exit_2_before_any_model_loads(tmp_path, capsys, monkeypatch, argv, message):
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty.csv").write_text("text,label\n")
    (tmp_path / "one.csv").write_text("text,label\nhi,x\nho,x\n")

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")
    monkeypatch.setattr("scalelab.data.models.load_model", no_load)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    model = [] if "--model" in argv else ["--model", "minilm"]
    assert main(["finetune", *model, *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert message.replace("{tmp}", str(tmp_path)) in err


def test_compare_resume_reads_finished_variants_and_extends(tiny, tmp_path, capsys, monkeypatch):
    assert main(_args(tiny, tmp_path, "--compare", "lora,loraplus")) == 0
    first = json.loads((tmp_path / "report.json").read_text())
    with monkeypatch.context() as m:
        def no_training(*a, **k):
            raise AssertionError("a finished variant was trained again")
        m.setattr(ft.FinetuneRun, "run", no_training)
        assert main(_args(tiny, tmp_path, "--compare", "lora,loraplus", "--resume")) == 0
    assert json.loads((tmp_path / "report.json").read_text()) == first
    longer = [a if a != "6" else "8" for a in _args(tiny, tmp_path, "--compare", "lora,loraplus",
                                                    "--resume")]
    assert main(longer) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for old, new in zip(first["runs"], report["runs"], strict=True):
        assert new["steps"] == 8 and new["eval_steps"] == [2, 4, 6, 8]
        assert new["eval_loss"][:3] == old["eval_loss"]  # the first 6 steps were not redone
