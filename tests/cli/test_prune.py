"""``scalelab prune``: the report on stdout, JSON alone with --json, one-line errors."""

import json

from scalelab.cli import main

BASE = ["prune", "--model", "mlp", "--depth", "4", "--width", "16", "--dataset",
        "sklearn-digits"]


def test_prune_json_is_exact_and_alone_on_stdout(capsys):
    assert main(BASE + ["--sparsity", "0.9", "--method", "snip", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = 64 * 16 + 16 * 16 * 3 + 16 * 10  # 4 hidden layers: 5 Linear layers
    assert doc["total"] == total and doc["kept"] == round(0.1 * total)
    assert doc["method"] == "snip" and doc["rescaled"] is True
    assert [ly["shape"] for ly in doc["layers"]] == [[16, 64]] + [[16, 16]] * 3 + [[10, 16]]


def test_prune_table_and_training(capsys):
    assert main(BASE + ["--method", "synflow", "--iterations", "5", "--no-rescale",
                        "--train-steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "method synflow, scope global" in out and "rescaled to the EOC: no" in out
    assert "test accuracy after 5 Adam steps" in out


def test_collapse_warns_or_fails_with_strict(capsys):
    argv = ["prune", "--model", "mlp", "--depth", "12", "--width", "16", "--dataset",
            "sklearn-digits", "--init", "standard", "--sparsity", "0.99", "--method", "snip"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: layer collapse" in captured.err and "COLLAPSED" in captured.out
    assert main(argv + ["--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: layer collapse") and "\n" not in err


def test_bad_options_exit_2(capsys):
    assert main(BASE + ["--method", "l1"]) == 2
    assert "error: method must be one of" in capsys.readouterr().err
    assert main(BASE + ["--model", "vit"]) == 2
    assert "error: --model must be one of" in capsys.readouterr().err
