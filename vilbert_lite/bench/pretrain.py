"""`vilbert-lite bench pretrain`: training samples/s of the pretraining model."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from vilbert_lite import runs
from vilbert_lite.device import resolve_device
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.pretrain.data import MAX_REGIONS, MAX_SEQ_LENGTH
from vilbert_lite.pretrain.objectives import make_pretraining_batch, pretraining_loss
from vilbert_lite.profiles import get_profile


def _bench_model(config: ViLBertConfig, batch: int, steps: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = ViLBertForPreTraining(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    T, R = MAX_SEQ_LENGTH, MAX_REGIONS + 1
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, config.vocab_size, (batch, T), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    raw = {
        "input_ids": ids, "attention_mask": torch.ones(batch, T, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, T, dtype=torch.long),
        "visual_feats": torch.rand(batch, R, config.v_feature_size, generator=g),
        "visual_pos": torch.rand(batch, R, 5, generator=g).sort(-1).values,
        "cls_prob": torch.rand(batch, R, config.v_target_size, generator=g).softmax(-1),
        "visual_attention_mask": torch.ones(batch, R, dtype=torch.long), "image_index": torch.arange(batch),
    }  # fmt: skip
    b = {k: t.to(device) for k, t in make_pretraining_batch(raw, g, vocab_size=config.vocab_size).items()}
    use_amp = device.type == "cuda"
    times = []
    for i in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, _ = pretraining_loss(model, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    sec = sum(times) / len(times)
    return {"samples_per_s": round(batch / sec, 2), "seconds_per_step": round(sec, 4), "batch": batch,
            "tokens": T, "regions": R, "steps": steps, "parameters": model.num_parameters()}  # fmt: skip


def bench(argv: list[str]) -> int:
    """`vilbert-lite bench pretrain`: training samples/s (forward, backward, AdamW step) of the cpu profile's
    model and of the base preset, B=8, 36 tokens, 37 regions -> reports/bench/pretrain.json."""
    ap = argparse.ArgumentParser(prog="vilbert-lite bench pretrain", description=bench.__doc__)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="cpu,base", help="comma list of profile names or presets")
    ap.add_argument("--out", default="reports/bench/pretrain.json")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    result: dict[str, Any] = {}
    for name in a.models.split(","):
        preset = get_profile(name).model_preset if name in ("smoke", "cpu", "gpu") else name
        cfg = ViLBertConfig.preset(preset)
        if name in ("smoke", "cpu"):  # CPU profiles read the region extractor's features
            cfg = cfg.replace(v_feature_size=1280, v_target_size=1000)
        key = f"{name} ({preset} preset)" if preset != name else name
        result[key] = _bench_model(cfg, a.batch, a.steps, device)
        print(f"{key}: {result[key]['samples_per_s']} samples/s", flush=True)
    result["machine"] = {"device": str(device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "torch": torch.__version__, "platform": platform.platform()}  # fmt: skip
    if device.type == "cuda":
        result["machine"]["gpu"] = torch.cuda.get_device_name(device)
    out = Path(a.out)
    runs.write_json(out, result)
    print(f"wrote {out}")
    return 0
