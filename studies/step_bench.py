"""What does one `cpu` pretraining step cost, and what makes it cheaper? Samples/s of the real step (the `cpu`
world's captions and region features, `mini`, the three losses, AdamW, clipping) under a few variants.

    .venv/bin/python studies/step_bench.py                       -> reports/bench/pretrain_step.json
    .venv/bin/python studies/step_bench.py --variants base compile --steps 20

Each variant builds the model from the same seed and times `--steps` updates after `--warmup` untimed ones, on
the batches `engine.epoch_batches` gives epoch 0 (so bucketing is measured with its real batches). Run it on a
quiet machine: the numbers are wall-clock. Variants (combine with "+", e.g. `bucket+nodrop+bs32`):
  base     the profile's step as it was: batch 64, dropout 0.1, batches in random order (padded to their longest)
  bucket   length bucketing (TrainConfig.bucket = 50): captions of similar length share a batch
  nodrop   every dropout probability 0
  bs32     batch 32
  compile  torch.compile(model, dynamic=True); the compile time is reported separately
  threads1 torch.set_num_threads(1)
  bf16     bf16 autocast on the CPU (`TrainConfig.amp = "bf16"`; the default `auto` uses it on CUDA only)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vilbert_lite.data.collate import make_collate
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.pretrain.data import MAX_SEQ_LENGTH, CaptionImageDataset, _store_widths, synthetic_data
from vilbert_lite.pretrain.objectives import pretraining_loss_fn
from vilbert_lite.pretrain.run import resolve_configs
from vilbert_lite.train.engine import TrainConfig, epoch_batches

ROOT = Path(__file__).resolve().parents[1]

NODROP = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
          "v_hidden_dropout_prob": 0.0, "v_attention_probs_dropout_prob": 0.0}  # fmt: skip


def run_variant(name: str, data, args) -> dict:
    parts = set(name.split("+"))
    unknown = parts - {"base", "bucket", "nodrop", "bs32", "compile", "threads1", "bf16"}
    if unknown:
        raise SystemExit(f"unknown variant part(s) {sorted(unknown)}")
    tok, ds, config = data
    torch.set_num_threads(1 if "threads1" in parts else args.threads)
    # dropout as the recipe had it (0.1) unless "nodrop": `mini` itself has none since the grounding recipe
    config = config.replace(**(NODROP if "nodrop" in parts else {k: 0.1 for k in NODROP}))
    cfg = TrainConfig(batch_size=32 if "bs32" in parts else 64, bucket=50 if "bucket" in parts else 0, seed=0)
    batches = epoch_batches(len(ds), cfg, 0, 1, ds.lengths)[: args.warmup + args.steps]
    collate = make_collate(tok.pad_token_id)
    torch.manual_seed(0)
    model = ViLBertForPreTraining(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    loss_fn = pretraining_loss_fn(tok)
    net = torch.compile(model, dynamic=True) if "compile" in parts else model
    tokens = []

    def step(idx):
        b = collate([ds[i] for i in idx])
        tokens.append(b["input_ids"].numel())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in parts):
            loss, _ = loss_fn(net, b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if args.profile_ops and not getattr(args, "_profiled", False):
        args._profiled = True
        for idx in batches[:3]:
            step(idx)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for idx in batches[3:8]:
                step(idx)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        args.ops = [{"op": e.key, "self_share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
                    for e in ops[:12]]  # fmt: skip
        print(json.dumps(args.ops, indent=1))
    t = time.perf_counter()
    for idx in batches[: args.warmup]:
        step(idx)
    warm = time.perf_counter() - t
    tokens.clear()
    t = time.perf_counter()
    for idx in batches[args.warmup :]:
        step(idx)
    dt = time.perf_counter() - t
    n = sum(len(b) for b in batches[args.warmup :])
    row = {"variant": name, "threads": torch.get_num_threads(), "batch_size": cfg.batch_size, "steps": len(batches) - args.warmup,
           "seconds": round(dt, 2), "samples_per_s": round(n / dt, 1), "ms_per_step": round(1e3 * dt / args.steps, 1),
           "padded_text_tokens_per_sample": round(sum(tokens) / n, 2), "warmup_s": round(warm, 1)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=["base", "bucket", "nodrop", "bucket+nodrop", "bs32",
                                                       "bucket+nodrop+bs32", "threads1"])  # fmt: skip
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile-ops", action="store_true", help="also profile 5 steps of the first variant")
    ap.add_argument("--out", default=str(ROOT / "reports/bench/pretrain_step.json"))
    a = ap.parse_args()
    prof, config, _ = resolve_configs("cpu", 0)
    tok = get_tokenizer()
    train, _, visual, _, _ = synthetic_data("cpu", 0, False, 1.0, sizes=prof.world)
    d, c = _store_widths(visual)
    config = config.replace(v_feature_size=d, v_target_size=c)
    ds = CaptionImageDataset(train, visual, tok, MAX_SEQ_LENGTH)
    rows = [run_variant(v, (tok, ds, config), a) for v in a.variants]
    out = {"what": "samples/s of the cpu pretraining step (mini, batch of the variant, 3 losses, AdamW)",
           "command": "studies/step_bench.py " + " ".join(sys.argv[1:]), "torch": torch.__version__,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "caption_tokens_mean": round(sum(ds.lengths) / len(ds), 2), "rows": rows}  # fmt: skip
    if a.profile_ops:
        out["profile_ops"] = {"variant": a.variants[0], "steps": 5, "ops": a.ops}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
