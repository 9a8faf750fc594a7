"""Scale-out on CPU with 2 processes (gloo): DDP through Accelerate under torchrun, FSDP2
with LoRA+ groups, and SIGTERM in a real subprocess. Tiny models from a config only."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from scalelab.data.models import write_tiny_model
from scalelab.train import FinetuneConfig, finetune

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SCALELAB_QUIET": "1"}
# the tiny model's character tokenizer makes every tweet long: cut on purpose
pytestmark = pytest.mark.filterwarnings("ignore:max_length:scalelab.ScalelabWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # no dropout: dropout masks depend on how the batch is split across processes
    return str(write_tiny_model(tmp_path_factory.mktemp("tiny") / "enc", dropout=0.0))


def _run(cmd, timeout=240):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def test_ddp_two_processes_equal_one_process_same_global_batch(tiny, tmp_path):
    args = ["--model", tiny, "--method", "loraplus", "--steps", "4", "--eval-every", "2",
            "--batch-size", "8", "--max-length", "24", "--eval-size", "32", "--quiet", "--json"]
    r = _run(TORCHRUN + ["-m", "scalelab", "finetune", *args, "--out", str(tmp_path / "ddp")])
    ddp = json.loads(r.stdout)  # printed once, by the main process
    single = finetune(FinetuneConfig(model=tiny, method="loraplus", steps=4, eval_every=2,
                                     batch_size=8, max_length=24, eval_size=32),
                      tmp_path / "one", quiet=True)
    assert ddp["steps"] == 4 and ddp["tokens"] == single.tokens  # both ranks' tokens counted
    np.testing.assert_allclose(ddp["train_loss"], single.train_loss, rtol=1e-5)
    np.testing.assert_allclose(ddp["eval_loss"], single.eval_loss, rtol=1e-5)
    a = load_file(str(tmp_path / "ddp" / "checkpoint" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoint" / "adapter.safetensors"))
    assert sorted(os.listdir(tmp_path / "ddp" / "checkpoint")) == [
        "adapter.safetensors", "meta.json", "rng-0.pt", "rng-1.pt", "state.pt"]
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    moved = max(float(b[k].abs().max()) for k in b if "lora_B" in k)
    assert moved > 1e-3  # the comparison is not between two untrained adapters


def test_ddp_causal_loss_is_the_global_token_mean_with_uneven_ranks(tmp_path):
    """Causal LM, answers of very different lengths: rank 0 and rank 1 score different numbers
    of tokens in every step, yet 2 processes (and 2 micro-batches) give the 1-process step:
    the loss is the sum over the global batch's response tokens / their global count."""
    tiny = str(write_tiny_model(tmp_path / "lm", kind="causal"))
    data = tmp_path / "qa.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"question {i}", "response": "yes " * (
        1 + (i % 2) * 6)}) for i in range(40)))
    args = ["--model", tiny, "--dataset", str(data), "--method", "loraplus", "--lr", "1e-2",
            "--steps", "3", "--eval-every", "3", "--batch-size", "4", "--max-length", "64",
            "--eval-size", "8", "--quiet", "--json"]
    r = _run(TORCHRUN + ["-m", "scalelab", "finetune", *args, "--out", str(tmp_path / "ddp")])
    ddp = json.loads(r.stdout)
    cfg = FinetuneConfig(model=tiny, dataset=str(data), method="loraplus", lr=1e-2, steps=3,
                         eval_every=3, batch_size=4, max_length=64, eval_size=8)
    single = finetune(cfg, tmp_path / "one", quiet=True)
    accum = finetune(cfg.replace(grad_accum=2), tmp_path / "acc", quiet=True)
    np.testing.assert_allclose(ddp["train_loss"], single.train_loss, rtol=1e-5)
    np.testing.assert_allclose(accum.train_loss, single.train_loss, rtol=1e-5)
    np.testing.assert_allclose(ddp["eval_loss"], single.eval_loss, rtol=1e-5)
    a = load_file(str(tmp_path / "ddp" / "checkpoint" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "one" / "checkpoint" / "adapter.safetensors"))
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    assert max(float(b[k].abs().max()) for k in b if "lora_B" in k) > 1e-3


FSDP_WORKER = r'''
import json, os, sys
import torch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from scalelab._utils import seed_everything
from scalelab.data.models import load_model
from scalelab.train.batches import batch_indices, encode, shard
from scalelab.train.checkpoint import load_checkpoint, save_checkpoint
from scalelab.train.config import FinetuneConfig
from scalelab.train.setup import add_adapters, build_optimizer, build_scheduler, check_inputs

cfg = FinetuneConfig(**json.loads(sys.argv[1]))
out, first, last = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
data, source = check_inputs(cfg)
seed_everything(cfg.seed)
model, tok = load_model(source, task=data.task, num_labels=data.num_classes)
model = add_adapters(model, cfg, data.task)
barrier = None
if world > 1:
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.base_model.model.bert.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    barrier = torch.distributed.barrier
names = {id(p): n for n, p in model.named_parameters()}
opt = build_optimizer(model, cfg)  # LoRA+ groups built on the sharded parameters
sched = build_scheduler(opt, cfg)
if first > 0:
    load_checkpoint(out, model=model, optimizer=opt, scheduler=sched, process_index=rank)
for step in range(first, last):
    idx = shard(batch_indices(step, len(data.train), cfg.batch_size, cfg.seed), rank, world)
    loss = model(**encode(data.task, tok, [data.train[i] for i in idx], 24)).loss
    loss.backward(); opt.step(); sched.step(); opt.zero_grad()
save_checkpoint(out, model=model, optimizer=opt, scheduler=sched, meta={"step": last},
                process_index=rank, is_main=rank == 0, wait=barrier)
groups = [{"name": g["name"], "lr": g["lr"], "params": sorted(names[id(p)] for p in g["params"]),
           "dtensor": all(isinstance(p, DTensor) for p in g["params"])} for g in opt.param_groups]
if rank == 0:
    json.dump(groups, open(os.path.join(out, "groups.json"), "w"))
'''


def _fsdp_case(tiny, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(FSDP_WORKER)
    cfg = json.dumps(dict(model=tiny, method="loraplus", ratio=16.0, steps=3, batch_size=8,
                          max_length=24, eval_size=16))
    return worker, cfg


def _groups_and_weights(folder):
    groups = json.loads((folder / "groups.json").read_text())
    return groups, load_file(str(folder / "checkpoint" / "adapter.safetensors"))


def _in_process(worker, *argv):
    """Run the worker here as a single process (no torchrun: WORLD_SIZE unset)."""
    old = sys.argv
    sys.argv = [str(worker), *argv]
    try:
        runpy.run_path(str(worker), run_name="__main__")
    finally:
        sys.argv = old


def test_fsdp2_keeps_loraplus_groups_and_matches_one_process(tiny, tmp_path):
    worker, cfg = _fsdp_case(tiny, tmp_path)
    _run(TORCHRUN + [str(worker), cfg, str(tmp_path / "fsdp"), "0", "3"])
    _in_process(worker, cfg, str(tmp_path / "one"), "0", "3")
    g_fsdp, w_fsdp = _groups_and_weights(tmp_path / "fsdp")
    g_one, w_one = _groups_and_weights(tmp_path / "one")
    assert [g["name"] for g in g_fsdp] == ["lora_A", "lora_B", "other", "other_no_decay"]
    assert all(g["dtensor"] for g in g_fsdp) and not any(g["dtensor"] for g in g_one)
    assert [(g["name"], g["lr"], g["params"]) for g in g_fsdp] == [
        (g["name"], g["lr"], g["params"]) for g in g_one]
    lrs = {g["name"]: g["lr"] for g in g_fsdp}
    assert lrs["lora_B"] == 16 * lrs["lora_A"]
    for k in w_one:
        torch.testing.assert_close(w_fsdp[k], w_one[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_fsdp2_checkpoint_resume_matches(tiny, tmp_path):
    worker, cfg = _fsdp_case(tiny, tmp_path)
    _run(TORCHRUN + [str(worker), cfg, str(tmp_path / "a"), "0", "2"])
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoint").iterdir()) == [
        "adapter.safetensors", "meta.json", "optimizer-0.pt", "optimizer-1.pt", "rng-0.pt",
        "rng-1.pt", "state.pt"]
    _run(TORCHRUN + [str(worker), cfg, str(tmp_path / "a"), "2", "3"])
    _in_process(worker, cfg, str(tmp_path / "one"), "0", "3")
    _, w_resumed = _groups_and_weights(tmp_path / "a")
    _, w_one = _groups_and_weights(tmp_path / "one")
    for k in w_one:
        torch.testing.assert_close(w_resumed[k], w_one[k], rtol=1e-4, atol=1e-5)


def test_sigterm_in_subprocess_saves_checkpoint_then_resume_matches(tmp_path):
    tiny = str(write_tiny_model(tmp_path / "enc", dropout=0.1))
    args = ["--model", tiny, "--batch-size", "4", "--max-length", "16", "--eval-size", "8",
            "--eval-every", "100000", "--checkpoint-every", "5", "--quiet"]
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "scalelab", "finetune", *args, "--steps",
                             "100000", "--out", str(out)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint" / "meta.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    step = json.loads((out / "checkpoint" / "meta.json").read_text())["result"]["steps"]
    assert 5 <= step < 100000 and "SIGTERM" in err and "--resume" in err
    total = step + 3
    cfg = FinetuneConfig(model=tiny, batch_size=4, max_length=16, eval_size=8,
                         eval_every=100000, checkpoint_every=5, steps=total)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess ran with one thread
    try:
        resumed = finetune(cfg, out, quiet=True, resume=True)
        straight = finetune(cfg, tmp_path / "straight", quiet=True)
    finally:
        torch.set_num_threads(threads)
    assert resumed.steps == total and resumed.train_loss == straight.train_loss
    a = load_file(str(out / "checkpoint" / "adapter.safetensors"))
    b = load_file(str(tmp_path / "straight" / "checkpoint" / "adapter.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)
