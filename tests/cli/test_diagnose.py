"""`scalelab diagnose`, the reference models, and loading a user's saved model safely."""

import json

import pytest
import torch
from torch import nn

from scalelab.cli import main
from scalelab.diagnostics import from_torchscript, load_state_dict_file
from scalelab.nn import reference_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")

SMALL = ["--depth", "3", "--width", "16", "--batch", "12", "--resolution", "8"]


def _run(argv, capsys):
    code = main(["diagnose", *argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_diagnose_reference_mlp_writes_figures_and_json(tmp_path, capsys):
    code, out, err = _run([*SMALL, "--data", "gaussian", "--in-dim", "2", "--classes", "3",
                           "--out", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)  # JSON alone on stdout
    assert doc == json.loads((tmp_path / "diagnose.json").read_text())
    for f in ("profile.png", "alignment.png", "output_field.png"):
        assert f in doc["figures"] and (tmp_path / f).stat().st_size > 1000
    assert len(doc["profile"]) == 4 and doc["profile_theory"] is not None  # 4 Linear layers
    assert len(doc["profile_theory"]["variance"]) == 4
    assert doc["alignment"]["layers"] == ["0", "2", "4", "6"]
    assert all(-1 <= v <= 1 for v in doc["alignment"]["values"])
    assert doc["output_field"]["plane"] is False
    code2, out2, _ = _run([*SMALL, "--data", "gaussian", "--in-dim", "2", "--classes", "3",
                           "--out", str(tmp_path / "again"), "--json"], capsys)
    assert json.loads(out2)["profile"] == doc["profile"]  # same seed, same numbers


def test_diagnose_state_dict_and_torchscript(tmp_path, capsys):
    model = reference_model("resnet", 64, 16, 2, 10, act="relu")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)  # weights the reference init would not give
    torch.save(model.state_dict(), tmp_path / "w.pt")
    code, out, err = _run(["--model", "resnet", "--act", "relu", "--depth", "2", "--width", "16",
                           "--batch", "8", "--resolution", "4", "--state-dict",
                           str(tmp_path / "w.pt"), "--out", str(tmp_path / "a"), "--json"],
                          capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["source"] == "state_dict"
    assert [p["name"] for p in doc["profile"]] == ["input", "blocks.0", "blocks.1", "output"]

    mlp = nn.Sequential(nn.Linear(64, 8), nn.LeakyReLU(0.2), nn.Linear(8, 10))
    torch.jit.save(torch.jit.script(mlp), tmp_path / "m.ts")
    code, out, err = _run(["--torchscript", str(tmp_path / "m.ts"), "--batch", "8",
                           "--resolution", "4", "--out", str(tmp_path / "b"), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"]["source"] == "torchscript" and len(doc["alignment"]["values"]) == 2


def test_from_torchscript_and_state_dict_round_trip(tmp_path):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.GELU("tanh"), nn.ELU(0.5),
                        nn.Sequential(nn.Linear(5, 2, bias=False), nn.Tanh()))
    torch.jit.save(torch.jit.script(mlp), tmp_path / "m.ts")
    eager = from_torchscript(tmp_path / "m.ts")
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(eager(x), mlp(x))
    model = reference_model("mlp", 3, 4, 2, 2)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    other = load_state_dict_file(reference_model("mlp", 3, 4, 2, 2), tmp_path / "w.pt")
    torch.testing.assert_close(other(x[:, :3]), model(x[:, :3]))
    with pytest.raises(ValueError, match="cannot rebuild .* 'LayerNorm'"):
        from_torchscript(torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))))
    torch.save(model, tmp_path / "pickled.pt")  # a full pickle is refused, not unpickled
    with pytest.raises(ValueError, match="weights_only"):
        load_state_dict_file(model, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_state_dict_file(reference_model("mlp", 3, 8, 2, 2), tmp_path / "w.pt")


@pytest.mark.parametrize("argv,msg", [
    (["--data", "nope"], "data must be one of"),
    (["--model", "cnn"], "model must be one of"),
    (["--init", "xavier"], "init must be one of"),
    (["--torchscript", "/no/such/file.ts"], "not found"),
    (["--state-dict", "/no/such/w.pt"], "not found"),
    (["--batch", "1"], "batch must be an integer >= 2"),
    (["--data", "gaussian", "--in-dim", "5", "--model", "mlp", "--torchscript", "x", "--state-dict",
      "y"], "not both"),
])
def test_bad_input_is_one_line_exit_2(argv, msg, tmp_path, capsys):
    code, out, err = _run([*argv, "--out", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1
