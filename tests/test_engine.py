"""Tests of the training engine on a toy model (CPU, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ddp_worker import ToyNet, collate, loss_fn, toy_dataset
from _ddp_worker import run as run_worker

from vilbert_lite import runs
from vilbert_lite.device import cpu_name, resolve_device
from vilbert_lite.errors import UserError
from vilbert_lite.train.engine import TrainConfig, epoch_batches, evaluate, lr_factor, train

ROOT = Path(__file__).resolve().parents[1]


def _train(out, cfg: dict, model=None, loss=loss_fn, **kw):
    model = model or ToyNet(dropout=0.1)
    return model, train(model, toy_dataset(), collate, loss, TrainConfig(**cfg), out, progress=False, **kw)


def _rows(out, kind="train") -> list[dict]:
    return [
        r
        for r in map(json.loads, (Path(out) / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == kind
    ]


def _killed_at(call: int):
    """A loss_fn that raises on its `call`-th call (1-based), like a run killed mid-training."""
    n = {"calls": 0}

    def fn(model, batch):
        n["calls"] += 1
        if n["calls"] == call:
            raise RuntimeError("simulated kill")
        return loss_fn(model, batch)

    return fn


def test_lr_schedule_warmup_then_linear_decay(tmp_path):
    total = 20
    f = [lr_factor(s, total, 0.2) for s in range(total)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # linear warm-up over 4 steps, peak at step 4
    assert all(a > b for a, b in zip(f[4:], f[5:]))  # then strictly decreasing
    assert f[-1] == pytest.approx(1 / 16) and lr_factor(total, total, 0.2) == 0.0
    assert lr_factor(0, 10, 0.0) == 1.0  # no warm-up: start at the peak
    # the engine applies it: 64 items / batch 16 = 4 steps per epoch, 5 epochs
    _, res = _train(tmp_path, dict(epochs=5, batch_size=16, lr=1e-3, warmup_frac=0.2, log_every=1))
    lrs = [r["lr"] for r in _rows(tmp_path)]
    assert res["steps"] == total and lrs == pytest.approx([1e-3 * x for x in f])


def test_grad_accumulation_matches_larger_batch(tmp_path):
    cfg = dict(batch_size=16, lr=1e-2, warmup_frac=0.0, max_steps=1)
    big, _ = _train(tmp_path / "big", cfg, ToyNet())
    acc, res = _train(tmp_path / "acc", {**cfg, "batch_size": 8, "grad_accum": 2}, ToyNet())
    assert res["steps"] == 1 and res["samples"] == 16
    assert epoch_batches(64, TrainConfig(batch_size=8), 0)[:2] == [
        b[i : i + 8] for b in epoch_batches(64, TrainConfig(batch_size=16), 0)[:1] for i in (0, 8)
    ]  # the same 16 samples
    for (name, p), q in zip(big.state_dict().items(), acc.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), name
    assert not torch.equal(big.state_dict()["net.0.weight"], ToyNet().state_dict()["net.0.weight"])


def test_length_bucketing_batches():
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(5, 31, (1000,), generator=g).tolist()
    plain = epoch_batches(1000, TrainConfig(batch_size=32), 0, lengths=lengths)
    cfg = TrainConfig(batch_size=32, bucket=10)
    buck = epoch_batches(1000, cfg, 0, lengths=lengths)
    # every item once, the same batch count and the same short last batch size
    assert sorted(i for b in buck for i in b) == list(range(1000))
    assert sorted(len(b) for b in buck) == sorted(len(b) for b in plain)

    def padded(batches):  # text positions a batch padded to its longest would hold
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded(buck) < 0.75 * padded(plain)
    # deterministic per (seed, epoch), shuffled across epochs, and not in length order
    assert buck == epoch_batches(1000, cfg, 0, lengths=lengths)
    assert buck != epoch_batches(1000, cfg, 1, lengths=lengths)
    firsts = [lengths[b[0]] for b in buck]
    assert firsts != sorted(firsts)
    # without lengths bucketing is off; wrong lengths are an error
    assert epoch_batches(1000, cfg, 0) == plain
    with pytest.raises(ValueError, match="999 lengths for 1000 items"):
        epoch_batches(1000, cfg, 0, lengths=lengths[:999])


def test_toy_model_learns_and_run_folder(tmp_path):
    evals = []

    def eval_fn(model):
        assert not model.training and not torch.is_grad_enabled()
        evals.append(1)
        return {"val_loss": loss_fn(model, collate(toy_dataset(64, seed=2)))[0].item()}

    cfg = dict(epochs=8, batch_size=16, lr=1e-2, log_every=4)
    model, res = _train(tmp_path, cfg, eval_fn=eval_fn)
    hist = res["history"]
    assert len(hist) == 8 and len(evals) == 8 and res["steps"] == 32
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]  # the loss falls clearly
    assert hist[-1]["acc"] > 0.8 and hist[-1]["eval_val_loss"] < hist[0]["eval_val_loss"]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"train_config.json", "metrics.jsonl", "metrics.csv", "checkpoint.pt", "model.pt", "DONE"} <= names
    assert TrainConfig.from_dict(json.loads((tmp_path / "train_config.json").read_text())) == TrainConfig(
        **cfg
    )
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [4, 8, 12, 16, 20, 24, 28, 32]
    assert {"step", "epoch", "lr", "loss", "acc", "samples_per_s"} <= set(rows[0]) and len(
        _rows(tmp_path, "eval")
    ) == 8
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 8 + 8 and "loss" in csv_lines[0]
    assert runs.load_done(tmp_path) == json.loads(json.dumps(res))
    # A finished run with the same config is reused: no training, the final weights are loaded.
    fresh = ToyNet(seed=5)
    _, again = _train(tmp_path, cfg, fresh, loss=_killed_at(1))
    assert again == runs.load_done(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    # ...and a different config is never silently reused.
    with pytest.raises(ValueError, match=r"lr: 0\.01 -> 0\.02"):
        _train(tmp_path, {**cfg, "lr": 2e-2})


def test_resume_gives_bit_identical_weights(tmp_path):
    cfg = dict(epochs=3, batch_size=8, grad_accum=2, lr=5e-3, ckpt_every=3, log_every=2)  # 4 steps/epoch
    ref, ref_res = _train(tmp_path / "ref", cfg)
    # killed in epoch 1 at micro-batch 3 (global step 7); the last checkpoint is step 6
    with pytest.raises(RuntimeError, match="simulated kill"):
        _train(tmp_path / "run", cfg, loss=_killed_at(8 + 5 + 1))
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["step"] == 6
    assert not runs.is_done(tmp_path / "run")
    model, res = _train(tmp_path / "run", cfg, ToyNet(dropout=0.1, seed=123))  # resume=True by default
    for (name, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    strip = ("wall_time_s", "out_dir")
    assert {k: v for k, v in res.items() if k not in strip} == {
        k: v for k, v in ref_res.items() if k not in strip
    }
    assert [(r["step"], r["loss"]) for r in _rows(tmp_path / "run")] == [
        (r["step"], r["loss"]) for r in _rows(tmp_path / "ref")
    ]


def test_checkpoints_asked_by_the_environment_resume_to_the_same_weights(tmp_path, monkeypatch):
    """$VILBERT_LITE_CKPT_EVERY checkpoints a run whose config asks for none, without entering its config: a run
    killed mid-way resumes from the last of them to the weights of an uninterrupted run."""
    cfg = dict(epochs=3, batch_size=8, grad_accum=2, lr=5e-3, log_every=2)  # 4 steps/epoch, ckpt_every=0
    ref, ref_res = _train(tmp_path / "ref", cfg)
    monkeypatch.setenv("VILBERT_LITE_CKPT_EVERY", "4")  # = one epoch: saved after the epoch's bookkeeping
    with pytest.raises(RuntimeError, match="simulated kill"):
        _train(tmp_path / "run", cfg, loss=_killed_at(8 + 5 + 1))  # step 7 dies; step 4 was saved
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]["step"] == 4
    calls = {"n": 0}

    def counting(model, batch):
        calls["n"] += 1
        return loss_fn(model, batch)

    model, res = _train(tmp_path / "run", cfg, ToyNet(dropout=0.1, seed=123), loss=counting)
    assert calls["n"] == 8 * 2  # resumed at step 4: steps 5-12 ran, 2 micro-batches each
    for (name, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    strip = ("wall_time_s", "out_dir")
    assert {k: v for k, v in res.items() if k not in strip} == {
        k: v for k, v in ref_res.items() if k not in strip
    }
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved == json.loads((tmp_path / "ref" / "train_config.json").read_text())  # same config, same key
    # saving alone changes nothing: an uninterrupted run with the checkpoints ends where the reference did
    whole, _ = _train(tmp_path / "whole", cfg)
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), whole.state_dict().values()))
    monkeypatch.setenv("VILBERT_LITE_CKPT_EVERY", "often")
    with pytest.raises(UserError, match="VILBERT_LITE_CKPT_EVERY='often': expected a whole number"):
        _train(tmp_path / "other", cfg)


def test_done_records_the_thread_layout(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, res = _train(tmp_path / "run", dict(epochs=1, batch_size=8, lr=5e-3, log_every=2))
    finally:
        torch.set_num_threads(before)
    done = runs.load_done(tmp_path / "run")
    assert res["torch_threads"] == done["torch_threads"] == 1 and done["device"] == "cpu"
    # and what else the sums depend on: the torch build and the processor (its vector instruction sets)
    assert done["torch"] == torch.__version__ and done["cpu"] == cpu_name() and "gpu" not in done


def test_cpu_name_reads_the_model_and_the_vector_instruction_sets(tmp_path, monkeypatch):
    from vilbert_lite import device

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f\n"
    )
    real = device.Path
    monkeypatch.setattr(device, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real(p))
    assert device.cpu_name() == "Some CPU 9000 (sse4_2 avx avx2 fma avx512f)"
    cpuinfo.write_text("model name\t: Bare\n")
    assert device.cpu_name() == "Bare"


def test_resume_false_starts_over(tmp_path):
    cfg = dict(batch_size=16, lr=1e-3, max_steps=2)
    _train(tmp_path, cfg)
    calls = _killed_at(0)  # never raises, counts calls
    _train(tmp_path, cfg, loss=calls, resume=False)
    assert len(_rows(tmp_path)) == 1 and runs.is_done(tmp_path)


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    cfg = dict(epochs=2, batch_size=16, lr=1e-3, ckpt_every=2, log_every=1)
    real_save, calls = torch.save, {"n": 0}

    def crashing_save(obj, f, *a, **kw):  # the second checkpoint dies half-way through writing
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial garbage")
            raise OSError("disk full")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        _train(tmp_path, cfg)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.pt",
        "metrics.jsonl",
        "train_config.json",
    ]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["state"]["step"] == 2 and ToyNet().load_state_dict(ck["model"])
    _, res = _train(tmp_path, cfg)  # and the run resumes from it
    assert res["steps"] == 8


def test_nan_loss_stops_with_step_and_batch(tmp_path):
    def nan_at_step_6(model, batch):
        loss, logs = loss_fn(model, batch)
        nan_at_step_6.calls += 1
        return (loss * float("nan") if nan_at_step_6.calls == 6 else loss), logs

    nan_at_step_6.calls = 0
    cfg = dict(epochs=3, batch_size=16, lr=1e-3, ckpt_every=4)  # 4 steps/epoch: step 6 is epoch 1, batch 1
    with pytest.raises(
        FloatingPointError, match=r"global step 6, epoch 1, batch index 1.*checkpoint of step 4"
    ):
        _train(tmp_path, cfg, loss=nan_at_step_6)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["state"]["step"] == 4 and not runs.is_done(tmp_path)
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    ToyNet().load_state_dict(ck["model"])


def test_bad_config_fails_before_training(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['lr_max'\]"):
        train(ToyNet(), toy_dataset(), collate, loss_fn, {"lr_max": 1.0}, out)
    with pytest.raises(ValueError, match=r"TrainConfig\.lr: expected float, got 'fast' \(str\)"):
        train(ToyNet(), toy_dataset(), collate, loss_fn, {"lr": "fast"}, out)
    with pytest.raises(ValueError, match=r"TrainConfig\.epochs: expected int, got 1\.5"):
        TrainConfig.from_dict({"epochs": 1.5})
    with pytest.raises(ValueError, match=r"TrainConfig\.shuffle: expected bool"):
        TrainConfig(shuffle=1)
    with pytest.raises(ValueError, match=r"TrainConfig\.betas: expected tuple\[float, float\]"):
        TrainConfig.from_dict({"betas": [0.9]})
    with pytest.raises(ValueError, match=r"TrainConfig\.amp: must be one of"):
        TrainConfig(amp="fp16")
    assert TrainConfig.from_dict({"lr": 1, "betas": [0.9, 0.99]}).betas == (0.9, 0.99)
    assert TrainConfig.from_dict(TrainConfig(max_steps=3).to_dict()) == TrainConfig(max_steps=3)
    assert not out.exists()


def test_batch_size_must_divide_across_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="batch_size=16 must divide among 3 processes"):
        _train(tmp_path, dict(batch_size=16))


def test_save_pretrained_and_evaluate(tmp_path):
    class Pretrained(ToyNet):
        def save_pretrained(self, path):
            Path(path).mkdir()
            torch.save(self.state_dict(), Path(path) / "weights.pt")

    model, _ = _train(tmp_path, dict(batch_size=16, max_steps=1), Pretrained())
    assert (tmp_path / "model" / "weights.pt").exists() and not (tmp_path / "model.pt").exists()
    outs = evaluate(
        model, toy_dataset(20), collate, lambda m, b: m(b["x"]).argmax(-1), 8, "cpu", progress=False
    )
    assert [len(o) for o in outs] == [8, 8, 4] and model.training
    assert resolve_device("auto").type in ("cpu", "cuda") and resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(os.environ.get("VILBERT_SKIP_DDP") == "1", reason="VILBERT_SKIP_DDP=1")
def test_ddp_two_processes_match_one(tmp_path):
    """torchrun with 2 CPU processes (gloo) gives the same loss curve as 1 process, same global batch."""
    one_res = run_worker(tmp_path / "one")  # the same code in this process; ToyNet without dropout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "_ddp_worker.py"), str(tmp_path / "two")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(one) == len(two) == 12 and runs.load_done(tmp_path / "two")["world_size"] == 2
    assert [r["step"] for r in _rows(tmp_path / "two", "eval")] == [4, 8, 12]
    for a, b in zip(one, two):  # measured: ~1e-7 relative (float reduction order)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), a["step"]
    assert one[-1]["loss"] < one[0]["loss"]
    two_res = runs.load_done(tmp_path / "two")
    assert two_res["history"][-1]["eval_val_loss"] == pytest.approx(
        one_res["history"][-1]["eval_val_loss"], rel=1e-5
    )
    one_sd, two_sd = torch.load(tmp_path / "one" / "model.pt"), torch.load(tmp_path / "two" / "model.pt")
    for name, p in one_sd.items():
        assert torch.allclose(p, two_sd[name], rtol=1e-4, atol=1e-6), name


def test_lr_scale_gives_parameter_groups_their_own_rate(tmp_path):
    """lr_scale {prefix: m}: parameters under the prefix move with m * lr; m = 0 freezes them."""
    model = ToyNet()
    first = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(tmp_path / "a", dict(epochs=1, batch_size=16, lr=1e-2, lr_scale={"net.0.": 0.0}), model=model)
    moved = {n: not torch.equal(p, first[n]) for n, p in model.named_parameters()}
    assert moved == {"net.0.weight": False, "net.0.bias": False, "net.1.weight": True, "net.1.bias": True,
                     "net.4.weight": True, "net.4.bias": True}  # fmt: skip
    with pytest.raises(ValueError, match="lr_scale"):
        TrainConfig(lr_scale={"net.0.": -1})
    # a scale of 1 everywhere is the plain run, bit for bit
    plain, _ = _train(tmp_path / "b", dict(epochs=2, batch_size=16, lr=1e-2, log_every=1))
    same, _ = _train(
        tmp_path / "c", dict(epochs=2, batch_size=16, lr=1e-2, log_every=1, lr_scale={"net.": 1.0})
    )
    for p, q in zip(plain.parameters(), same.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
