"""Checkpoints of a fine-tuning run: safe to load, written atomically, enough to resume exactly.

A checkpoint is a folder ``OUT/checkpoint/`` with

- ``adapter.safetensors``: every trainable parameter (LoRA A/B, the classifier head), by name;
- ``state.pt``: optimizer and scheduler state dicts (tensors, numbers, lists only);
- ``rng-<rank>.pt``: each process's torch / CUDA / Python / NumPy random states;
- ``meta.json``: the step reached (the data position: batches are a pure function of the
  seed and the step), the metrics so far and the configuration.

Tensors are read with ``safetensors`` and ``torch.load(weights_only=True)``: loading never
runs pickled code. The folder is written as ``checkpoint.tmp`` and renamed, so a crash or a
signal mid-write leaves the previous checkpoint intact (a crash between the two renames
leaves ``checkpoint.old``, which :func:`read_meta` puts back).

A checkpoint that cannot be read is never treated as absent: every unreadable, missing or
truncated file is a :class:`CheckpointError` (a ``ValueError``: one line, exit status 2 in
the CLI) naming the file and what is wrong.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_DIR = "checkpoint"
META_KEYS = ("config", "result")


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or not what it should be."""


def _bad(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint file {str(path)!r} {what}; the checkpoint was left as "
                           "it is (move it away, or start over with --overwrite)")


def _load_tensor_file(path: Path, **kw):
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file."""
    import pickle

    import torch

    if not path.is_file():
        raise _bad(path, "is missing")
    try:
        return torch.load(path, weights_only=True, map_location="cpu", **kw)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError, KeyError,
            AttributeError, ImportError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise _bad(path, f"cannot be read (truncated or corrupt: {first})") from None


def _rng_state() -> dict[str, Any]:
    import torch

    st = random.getstate()
    np_st = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [st[0], list(st[1]), st[2]],
        "numpy": [np_st[0], torch.from_numpy(np_st[1].astype(np.int64)), int(np_st[2]),
                  int(np_st[3]), float(np_st[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _full(t):
    """A plain tensor: FSDP2 ``DTensor`` shards are gathered (a collective: all ranks call)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _local_state(state_dict: dict) -> dict:
    """An optimizer state dict with FSDP2 ``DTensor`` state reduced to this rank's shard."""
    state = {i: {k: (v.to_local() if hasattr(v, "to_local") else v) for k, v in st.items()}
             for i, st in state_dict["state"].items()}
    return {"state": state, "param_groups": state_dict["param_groups"]}


def _as_param_layout(state_dict: dict, params: list) -> dict:
    """Inverse of :func:`_local_state`: shards back into ``DTensor``s laid out as ``params``."""
    from torch.distributed.tensor import DTensor

    for i, st in state_dict["state"].items():
        p = params[int(i)]
        if isinstance(p, DTensor):
            for k, v in st.items():
                if hasattr(v, "shape") and tuple(v.shape) == tuple(p.to_local().shape):
                    st[k] = DTensor.from_local(v, p.device_mesh, p.placements, shape=p.shape,
                                               stride=p.stride())
    return state_dict


def trainable_state(model) -> dict[str, Any]:
    """The trainable parameters of ``model`` (unwrapped), detached, full, by name."""
    return {n: _full(p.detach()) for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(out_dir: str | Path, *, model, optimizer, scheduler, meta: dict[str, Any],
                    process_index: int = 0, is_main: bool = True, wait=None) -> Path:
    """Write a checkpoint of ``model`` (unwrapped), ``optimizer`` and ``scheduler``.

    Under several processes every rank calls this: each writes its RNG state, the main one
    the rest; ``wait`` (e.g. ``accelerator.wait_for_everyone``) synchronises them.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    final, tmp = out / CHECKPOINT_DIR, out / (CHECKPOINT_DIR + ".tmp")
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if wait is not None:
        wait()
    torch.save(_rng_state(), tmp / f"rng-{process_index}.pt")
    weights = {n: t.contiguous().cpu() for n, t in trainable_state(model).items()}
    opt_state = optimizer.state_dict()
    sharded = any(hasattr(v, "to_local") for st in opt_state["state"].values()
                  for v in st.values())
    if sharded:  # FSDP2: each rank keeps its own optimizer shard
        torch.save(_local_state(opt_state), tmp / f"optimizer-{process_index}.pt")
    if is_main:
        save_file(weights, str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": None if sharded else opt_state,
                    "scheduler": scheduler.state_dict()}, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if wait is not None:
        wait()
    if is_main:
        old = out / (CHECKPOINT_DIR + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    if wait is not None:
        wait()
    return final


def read_meta(out_dir: str | Path) -> dict[str, Any] | None:
    """``meta.json`` of the checkpoint under ``out_dir``; ``None`` when there is no checkpoint.

    Raises :class:`CheckpointError` when a checkpoint folder exists but its ``meta.json`` is
    missing, unreadable or incomplete: such a checkpoint must not be mistaken for none (a
    fresh start would overwrite it).
    """
    out = Path(out_dir)
    folder, old = out / CHECKPOINT_DIR, out / (CHECKPOINT_DIR + ".old")
    if not folder.exists() and old.is_dir():  # a crash between the two renames of a save
        old.rename(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise CheckpointError(f"{str(folder)!r} is not a checkpoint folder (a file)")
    path = folder / "meta.json"
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir())
        raise _bad(path, f"is missing (the folder holds {', '.join(present) or 'nothing'}), so "
                   "the step it holds is unknown")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno}" if hasattr(e, "lineno") else ""
        raise _bad(path, f"is not valid JSON{where}") from None
    if not isinstance(meta, dict) or any(k not in meta for k in META_KEYS) or not isinstance(
            meta.get("result"), dict) or "steps" not in meta["result"]:
        raise _bad(path, f"lacks the keys a checkpoint needs ({', '.join(META_KEYS)}, "
                   "result.steps)")
    return meta


def load_checkpoint(out_dir: str | Path, *, model, optimizer, scheduler,
                    process_index: int = 0) -> dict[str, Any]:
    """Restore ``model`` (unwrapped), ``optimizer``, ``scheduler`` and RNG; return the meta."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(out_dir) / CHECKPOINT_DIR
    meta = read_meta(out_dir)
    if meta is None:
        raise CheckpointError(f"no checkpoint under {str(out_dir)!r}")
    saved_nproc = int(meta.get("num_processes", 0) or 0)
    rng_file = folder / f"rng-{process_index}.pt"
    if not rng_file.is_file():
        if saved_nproc and process_index >= saved_nproc:
            raise CheckpointError(f"checkpoint {str(folder)!r} was saved by {saved_nproc} "
                                  f"process(es): resume with that many (this is process "
                                  f"{process_index})")
        raise _bad(rng_file, "is missing")
    wfile = folder / "adapter.safetensors"
    if not wfile.is_file():
        raise _bad(wfile, "is missing")
    try:
        weights = load_file(str(wfile))
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise _bad(wfile, f"cannot be read (truncated or corrupt: {first})") from None
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(weights) != expected:
        missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise CheckpointError(f"checkpoint {str(wfile)!r} does not match the model: missing "
                              f"{missing[:3]}, unexpected {extra[:3]}")
    bad_shape = [n for n, t in weights.items()
                 if not hasattr(params[n], "device_mesh") and tuple(t.shape) != tuple(params[n].shape)]
    if bad_shape:
        n = bad_shape[0]
        raise CheckpointError(f"checkpoint {str(wfile)!r}: {n} has shape "
                              f"{tuple(weights[n].shape)}, the model's is {tuple(params[n].shape)}")
    state = _load_tensor_file(folder / "state.pt")
    if not isinstance(state, dict) or "optimizer" not in state or "scheduler" not in state:
        raise _bad(folder / "state.pt", "does not hold optimizer and scheduler states")
    if state["optimizer"] is None:
        local = _load_tensor_file(folder / f"optimizer-{process_index}.pt")
        params_in_order = [p for g in optimizer.param_groups for p in g["params"]]
        opt_state = _as_param_layout(local, params_in_order)
    else:
        opt_state = state["optimizer"]
    rng = _load_tensor_file(rng_file)
    with torch.no_grad():
        for n, t in weights.items():
            p = params[n]
            if hasattr(p, "device_mesh"):  # FSDP2: keep this rank's shard of the full tensor
                from torch.distributed.tensor import distribute_tensor

                t = distribute_tensor(t.to(p.device), p.device_mesh, p.placements).to_local()
                p.to_local().copy_(t)
            else:
                p.copy_(t)
    try:
        optimizer.load_state_dict(opt_state)
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(rng)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise _bad(folder / "state.pt", f"does not fit this run ({first})") from None
    return meta
