"""Embedded text datasets, user files and model names: loaded and validated before any model."""

import collections
import json

import pytest

from scalelab.data.models import cache_dir, resolve_model
from scalelab.data.text import load_text_dataset


def test_tweets_real_counts_and_split():
    d = load_text_dataset("tweets", eval_size=500)
    assert d.task == "classification" and d.labels == ("negative", "neutral", "positive")
    # OFFLINE_ASSETS.md: 38,158 rows, 16,186 negative / 15,018 neutral / 6,954 positive
    assert len(d.train) + len(d.eval) == 38158 and len(d.eval) == 500
    counts = collections.Counter(y for _, y in d.train + d.eval)
    assert [counts[i] for i in range(3)] == [16186, 15018, 6954]
    again = load_text_dataset("tweets", eval_size=500)
    assert again.eval == d.eval and again.train[:50] == d.train[:50]


def test_bbc_sorted_classes_and_chat_pairs():
    bbc = load_text_dataset("bbc")
    assert bbc.labels == ("business", "entertainment", "politics", "sports", "tech")
    assert len(bbc.train) + len(bbc.eval) >= 2225
    chat = load_text_dataset("chat")
    assert chat.task == "causal" and chat.labels == ()
    assert len(chat.train) + len(chat.eval) >= 2025  # one per conversation
    assert all(p and r for p, r in chat.train)


def test_max_train_and_small_eval(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(10)))
    d = load_text_dataset(str(f), eval_size=100, max_train=3)
    assert len(d.eval) == 2 and len(d.train) == 3  # at most a fifth is held out


def test_user_csv_and_jsonl(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("id,text,label\n1,good movie,10\n2,bad movie,2\n3,great,10\n4,meh,2\n5,ok,10\n")
    d = load_text_dataset(str(f))
    assert d.labels == ("2", "10")  # integer labels sort numerically
    assert sorted(y for _, y in d.train + d.eval) == [0, 0, 1, 1, 1]
    j = tmp_path / "d.jsonl"
    j.write_text("\n".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) for i in range(6)))
    d = load_text_dataset(str(j))
    assert d.task == "causal" and len(d.train) + len(d.eval) == 6


@pytest.mark.parametrize("content,message", [
    ("a,b\n1,2\n3,4\n", "must have columns text,label or prompt,response; got a,b"),
    ("text,label\n", "has 0 rows"),
    ("text,label\nx,pos\ny,pos\nz,pos\n", "one class ('pos')"),
    ("text,label\nx,pos\n,neg\n", "row 2: empty 'text'"),
])
def test_bad_files_raise_value_error(tmp_path, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_text_dataset(str(f))


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_text_dataset(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="unknown dataset 'imdb'"):
        load_text_dataset("imdb")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="must end in .csv"):
        load_text_dataset(str(tmp_path / "x.txt"))


def test_resolve_model_names(tmp_path, monkeypatch):
    assert resolve_model("minilm").kind == "encoder"
    s = resolve_model("smollm2")
    assert s.kind == "causal" and s.gguf_file.endswith(".gguf")
    with pytest.raises(ValueError, match="unknown model 'bert base'"):
        resolve_model("bert base")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="hub is offline"):
        resolve_model("someone/not-a-cached-model")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    assert resolve_model(str(tmp_path / "cfg")).kind == "causal"


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALELAB_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("SCALELAB_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "scalelab")


def test_feature_table_and_text_dataset_share_one_label_order(tmp_path):
    import numpy as np

    from scalelab.data import index_labels, read_feature_table

    # Numbers sort numerically ("2" before "10"); the text loader and the feature loader
    # index the same label column the same way.
    labels = ["10", "2", "1", "2", "10", "1"]
    feats = tmp_path / "f.csv"
    feats.write_text("a, b ,label\n" + "".join(f"{i},{-i / 2},{lab}\n"
                                               for i, lab in enumerate(labels)))
    t = read_feature_table(feats)
    assert t.classes == ("1", "2", "10")
    assert t.y.tolist() == [2, 1, 0, 1, 2, 0] and t.y.dtype == np.int64
    assert t.x.dtype == np.float32 and t.x.tolist() == [[i, -i / 2] for i in range(6)]
    text = tmp_path / "t.csv"
    text.write_text("text,label\n" + "".join(f"w{i},{lab}\n" for i, lab in enumerate(labels)))
    d = load_text_dataset(str(text), eval_size=1)
    assert d.labels == t.classes
    assert sorted(d.train + d.eval) == sorted((f"w{i}", y) for i, y in enumerate(t.y.tolist()))
    # Words sort alphabetically; one class is refused with the data named.
    assert index_labels(["b", "a ", "c", "a"], "x")[0].tolist() == [1, 0, 2, 0]
    with pytest.raises(ValueError, match=r"^x: the label column has one class \('a'\)"):
        index_labels(["a", "a"], "x")


def test_feature_table_npz_npy_and_strict_decoding(tmp_path):
    import numpy as np

    from scalelab.data import read_feature_table

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2, 2)), np.array([3, 1, 3, 1, 3, 1])
    np.savez(tmp_path / "d.npz", x=x, label=y)
    t = read_feature_table(tmp_path / "d.npz")
    assert t.x.shape == (6, 4) and np.allclose(t.x, x.reshape(6, 4)) and t.classes == ("1", "3")
    assert t.y.tolist() == [1, 0, 1, 0, 1, 0]
    np.save(tmp_path / "d.npy", np.column_stack([x.reshape(6, 4), y]))
    assert read_feature_table(tmp_path / "d.npy").y.tolist() == t.y.tolist()
    (tmp_path / "l1.csv").write_bytes("a,label\n1,caf\xe9\n2,b\n".encode("latin-1"))
    with pytest.raises(ValueError, match="line 2 is not valid utf-8.*--encoding"):
        read_feature_table(tmp_path / "l1.csv")
    assert read_feature_table(tmp_path / "l1.csv", encoding="latin-1").classes == ("b", "café")
    with pytest.raises(ValueError, match="^--label: column 'y' is not in"):
        read_feature_table(tmp_path / "l1.csv", "y", encoding="latin-1", label_arg="--label")
