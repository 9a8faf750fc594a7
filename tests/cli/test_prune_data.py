"""``scalelab prune-data`` on a user's CSV / .npz / .npy file."""

import csv
import json

import numpy as np
import pytest

from scalelab.cli import main
from scalelab.prune.data import score_examples, select_subset


@pytest.fixture
def iris_csv(tmp_path):
    from sklearn.datasets import load_iris

    d = load_iris()
    path = tmp_path / "iris.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "species"])
        for x, t in zip(d.data, d.target, strict=True):
            w.writerow([*x, d.target_names[t]])
    return path


def _json(capsys):
    out = capsys.readouterr().out
    return json.loads(out)


def test_csv_json_matches_the_library(iris_csv, capsys):
    argv = ["prune-data", str(iris_csv), "--label", "species", "--keep", "0.2", "--epochs", "3",
            "--calibration", "random-exploration", "--alpha", "0.4", "--seed", "3", "--json"]
    assert main(argv) == 0
    doc = _json(capsys)
    assert doc["n"] == 150 and doc["kept"] == 30 and len(doc["indices"]) == 30
    assert doc["classes"] == ["setosa", "versicolor", "virginica"]
    # The same numbers through the Python API (standardised features, labels in sorted order).
    from sklearn.datasets import load_iris

    d = load_iris()
    X = d.data.astype(np.float32)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    s = score_examples((X, d.target), "el2n", epochs=3, seed=3)["el2n"]
    want = select_subset(s, 0.2, "top", "random-exploration", alpha=0.4, seed=3)
    assert doc["indices"] == want.tolist()
    assert main(argv) == 0 and _json(capsys)["indices"] == doc["indices"]  # deterministic


def test_out_file_and_scores(tmp_path, iris_csv, capsys):
    out = tmp_path / "sub" / "idx.txt"
    scores = tmp_path / "scores.csv"
    assert main(["prune-data", str(iris_csv), "--label", "species", "--keep", "25",
                 "--method", "bottom", "--score", "margin", "--epochs", "2", "--out", str(out),
                 "--save-scores", str(scores)]) == 0
    assert "kept 25 of 150" in capsys.readouterr().out
    idx = [int(v) for v in out.read_text().split()]
    rows = list(csv.DictReader(open(scores)))
    assert len(idx) == 25 and len(rows) == 150
    margins = np.array([float(r["score"]) for r in rows])
    assert sorted(idx) == sorted(np.argsort(margins, kind="stable")[:25].tolist())


def test_npz_and_npy_inputs_and_random(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    for name in ("d.npz", "d.npy"):
        assert main(["prune-data", str(tmp_path / name), "--keep", "0.5", "--method", "random",
                     "--seed", "1", "--json"]) == 0
        doc = _json(capsys)
        assert doc["indices"] == select_subset(np.zeros(40), 0.5, "random", seed=1).tolist()
    out = tmp_path / "idx.npy"
    assert main(["prune-data", str(tmp_path / "d.npz"), "--keep", "10", "--epochs", "2",
                 "--out", str(out)]) == 0
    assert np.load(out).shape == (10,)


@pytest.mark.parametrize("extra,message", [
    (["--keep", "0.3"], "error: --label: column 'label' is not in"),
    (["--keep", "2.5", "--label", "species"],
     "error: keep must be a fraction in (0, 1] or an integer"),
    (["--keep", "0.3", "--label", "species", "--score", "entropy"], "error: --score must be"),
    (["--keep", "0.3", "--label", "species", "--method", "random", "--calibration",
      "random-exploration"], "error: calibration applies"),
    (["--keep", "x", "--label", "species"], "error: --keep must be"),
])
def test_bad_input_is_one_line_exit_2(iris_csv, capsys, extra, message):
    assert main(["prune-data", str(iris_csv), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(message), err


def test_missing_and_wrong_files(tmp_path, capsys):
    assert main(["prune-data", str(tmp_path / "none.csv"), "--keep", "0.5"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "d.txt").write_text("1,2\n")
    assert main(["prune-data", str(tmp_path / "d.txt"), "--keep", "0.5"]) == 2
    assert ".csv, .npz or .npy" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("a,label\n1,x\nfoo,y\n")
    assert main(["prune-data", str(tmp_path / "bad.csv"), "--keep", "0.5"]) == 2
    assert "not a number" in capsys.readouterr().err
