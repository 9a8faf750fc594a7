"""Resume never loses work: unreadable checkpoints are errors (exit 2, one line naming the
file, nothing overwritten), a changed dataset is refused while the same data by another
path is accepted, and text input is decoded strictly. Tiny models from a config only."""

import hashlib
import json
import shutil

import pytest

from scalelab.cli import main
from scalelab.data.models import write_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:max_length:scalelab.ScalelabWarning")


def _csv(path, flip=False, n=40):
    labs = ("neg", "pos") if not flip else ("pos", "neg")
    path.write_text("text,label\n" + "".join(f"example text {i},{labs[i % 2]}\n"
                                             for i in range(n)))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    tiny = str(write_tiny_model(root / "enc", dropout=0.0))
    data = _csv(root / "data.csv")
    out = root / "run"
    assert main(_args(tiny, data, out, "4")) == 0
    return {"tiny": tiny, "data": data, "out": out}


def _args(tiny, data, out, steps, *extra):
    return ["finetune", "--model", tiny, "--dataset", str(data), "--steps", steps, "--eval-every",
            "2", "--batch-size", "4", "--max-length", "16", "--eval-size", "8", "--out", str(out),
            "--quiet", *extra]


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def _copy(base, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base["out"], out)
    return out


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


CORRUPTIONS = {
    "meta-missing": ("meta.json", lambda p: p.unlink(), "is missing"),
    "meta-garbage": ("meta.json", lambda p: p.write_text("{not json"), "is not valid JSON"),
    "meta-empty": ("meta.json", lambda p: p.write_text(""), "is not valid JSON"),
    "meta-incomplete": ("meta.json", lambda p: p.write_text('{"config": {}}'), "lacks the keys"),
    "adapter-truncated": ("adapter.safetensors", _truncate, "cannot be read"),
    "adapter-missing": ("adapter.safetensors", lambda p: p.unlink(), "is missing"),
    "state-truncated": ("state.pt", _truncate, "cannot be read"),
    "state-empty": ("state.pt", lambda p: p.write_bytes(b""), "cannot be read"),
    "state-garbage": ("state.pt", lambda p: p.write_bytes(b"\x80\x04garbage" * 10),
                      "cannot be read"),
    "rng-missing": ("rng-0.pt", lambda p: p.unlink(), "is missing"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_unreadable_checkpoint_is_an_error_and_is_kept(base, tmp_path, capsys, case):
    name, corrupt, message = CORRUPTIONS[case]
    out = _copy(base, tmp_path)
    corrupt(out / "checkpoint" / name)
    before = _digest(out)
    assert main(_args(base["tiny"], base["data"], out, "6", "--resume")) == 2
    err = _one_line_error(capsys)
    assert name in err and message in err
    assert _digest(out) == before  # nothing was overwritten
    # without --resume, a fresh run does not silently replace it either
    assert main(_args(base["tiny"], base["data"], out, "6")) == 2
    _one_line_error(capsys)
    assert _digest(out) == before


def test_fresh_run_refuses_a_folder_with_a_checkpoint_unless_overwrite(base, tmp_path, capsys):
    out = _copy(base, tmp_path)
    assert main(_args(base["tiny"], base["data"], out, "4")) == 2
    err = _one_line_error(capsys)
    assert "holds a checkpoint of an earlier run (step 4)" in err and "--overwrite" in err
    (out / "checkpoint" / "meta.json").write_text("garbage")  # even unreadable: overwrite wins
    assert main(_args(base["tiny"], base["data"], out, "2", "--overwrite")) == 0
    assert json.loads((out / "run.json").read_text())["steps"] == 2


def test_changed_dataset_is_refused_same_data_by_another_path_is_accepted(base, tmp_path,
                                                                          capsys):
    out = _copy(base, tmp_path)
    flipped = _csv(tmp_path / "data.csv", flip=True)  # same name, other folder, labels flipped
    assert main(_args(base["tiny"], flipped, out, "6", "--resume")) == 2
    err = _one_line_error(capsys)
    assert "the training data differ from the checkpoint's" in err
    copy = tmp_path / "elsewhere" / "renamed.csv"
    copy.parent.mkdir()
    shutil.copy(base["data"], copy)
    assert main(_args(base["tiny"], copy, out, "6", "--resume", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"] == 6 and doc["eval_steps"] == [2, 4, 6]


def test_resume_accepts_explicit_defaults_and_refuses_a_changed_schedule(base, tmp_path,
                                                                         capsys):
    out = _copy(base, tmp_path)
    assert main(_args(base["tiny"], base["data"], out, "6", "--resume", "--lr", "0.00025",
                      "--ratio", "16", "--head-lr", "0.003", "--lr-scheduler", "constant")) == 0
    out2 = tmp_path / "lin"
    assert main(_args(base["tiny"], base["data"], out2, "4", "--lr-scheduler", "linear")) == 0
    assert main(_args(base["tiny"], base["data"], out2, "6", "--resume",
                      "--lr-scheduler", "linear")) == 2
    assert "schedule (warm-up included) was laid out for steps=4" in _one_line_error(capsys)


def test_text_files_are_decoded_strictly(base, tmp_path, capsys):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nun caf\u00e9 noir,pos\nthe tea,neg\nmore,pos\nless,neg\n"
                      .encode("latin-1"))
    assert main(_args(base["tiny"], latin, tmp_path / "o", "2")) == 2
    err = _one_line_error(capsys)
    assert str(latin) in err and "line 2" in err and "--encoding" in err
    assert main(_args(base["tiny"], latin, tmp_path / "o", "2", "--encoding", "latin-1")) == 0
    capsys.readouterr()
    for enc, name in (("utf-16", "UTF-16"), ("utf-16-le", "UTF-16")):
        f = tmp_path / f"{enc}.csv"
        f.write_bytes("text,label\nhello,pos\nbye,neg\n".encode(enc))
        assert main(_args(base["tiny"], f, tmp_path / "o2", "2")) == 2
        err = _one_line_error(capsys)
        assert name in err and "\x00" not in err and "columns" not in err
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + b"text,label\nhello,pos\nbye,neg\nyes,pos\nno,neg\n")
    assert main(_args(base["tiny"], bom, tmp_path / "o3", "2")) == 0
    jl = tmp_path / "latin.jsonl"
    jl.write_bytes('{"prompt": "caf\u00e9", "response": "oui"}\n'.encode("latin-1"))
    assert main(["finetune", "--dataset", str(jl), "--out", str(tmp_path / "o4")]) == 2
    assert str(jl) in _one_line_error(capsys)


def test_a_max_length_that_cuts_most_examples_warns(base, tmp_path, capsys):
    assert main(_args(base["tiny"], base["data"], tmp_path / "o", "2", "--max-length", "2")
                ) == 0
    err = capsys.readouterr().err
    assert "warning: max_length 2 cuts 100% of the training examples" in err
