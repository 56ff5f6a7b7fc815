"""`vilbert-lite bench model`: the model's training step and forward pass, ours beside the official code.

It times a full pretraining train step (forward, the three losses, backward, AdamW) and a
forward pass at a preset (default `base`, B=8, 36 tokens, 37 regions), in fp32 and under bf16 autocast.
With `--official PATH/vilbert.py` (a checkout of facebookresearch/vilbert-multi-task, not shipped here)
the official BertForMultiModalPreTraining is timed side by side on the same weights, batch and machine;
`--official-adamw PATH/optimization.py` (from pytorch-transformers 1.2.0, which the official
train_concap.py imports) gives it its own optimizer, otherwise both sides use torch.optim.AdamW.
Each measurement runs in a fresh process so that its peak memory (max RSS, or CUDA max allocated) is its own.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import multiprocessing as mp
import resource
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from vilbert_lite.bench import machine_info, write_json
from vilbert_lite.device import resolve_device
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.model.official import to_official_state_dict


def make_batch(c: ViLBertConfig, B: int, T: int, R: int, device, seed: int = 0) -> dict:
    """A random pretraining batch with official-style labels (-1 = no target)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, c.vocab_size, (B, T), generator=g)
    lm_labels = torch.full((B, T), -1)
    lm_mask = torch.rand(B, T, generator=g) < 0.15
    lm_mask[:, 1] = True
    lm_labels[lm_mask] = ids[lm_mask]
    region_mask = torch.rand(B, R, generator=g) < 0.15
    region_mask[:, 0], region_mask[:, 1] = False, True
    xy = torch.rand(B, R, 2, generator=g) * 0.5
    wh = torch.rand(B, R, 2, generator=g) * 0.5
    batch = dict(
        input_ids=ids,
        visual_feats=torch.rand(B, R, c.v_feature_size, generator=g),
        visual_pos=torch.cat([xy, xy + wh, wh[..., :1] * wh[..., 1:]], -1),
        attention_mask=torch.ones(B, T, dtype=torch.long),
        visual_attention_mask=torch.ones(B, R, dtype=torch.long),
        token_type_ids=torch.zeros(B, T, dtype=torch.long),
        lm_labels=lm_labels,
        region_mask=region_mask,
        region_target=torch.softmax(torch.randn(B, R, c.v_target_size, generator=g), -1),
        is_match=torch.randint(0, 2, (B,), generator=g),
    )
    return {k: v.to(device) for k, v in batch.items()}


def ours_step(model, b):
    out = model(b["input_ids"], b["visual_feats"], b["visual_pos"], b["attention_mask"],
                b["visual_attention_mask"], b["token_type_ids"],
                lm_positions=b["lm_labels"] >= 0, region_positions=b["region_mask"])  # fmt: skip
    mlm = F.cross_entropy(out.prediction_logits_t.float(), b["lm_labels"][b["lm_labels"] >= 0])
    logp = F.log_softmax(out.prediction_logits_v.float(), -1)
    region = F.kl_div(logp, b["region_target"][b["region_mask"]], reduction="batchmean")
    align = F.cross_entropy(out.seq_relationship_logits.float(), b["is_match"])
    return mlm + region + align


def official_step(model, b):
    image_label = b["region_mask"][:, 1:].long()
    mlm, region, align = model(b["input_ids"], b["visual_feats"], b["visual_pos"], b["token_type_ids"],
                               b["attention_mask"], b["visual_attention_mask"], masked_lm_labels=b["lm_labels"],
                               image_label=image_label, image_target=b["region_target"][:, 1:],
                               next_sentence_label=b["is_match"])  # fmt: skip
    return (mlm + region + align).sum()


def load_official(path: str):
    """Import the official vilbert.py from a local checkout (its `.utils` import is satisfied by a stub)."""
    pkg = types.ModuleType("_official_vilbert")
    pkg.__path__ = []
    utils = types.ModuleType("_official_vilbert.utils")

    class PreTrainedModel(torch.nn.Module):
        def __init__(self, config, *args, **kwargs):
            super().__init__()
            self.config = config

        def _tie_or_clone_weights(self, first, second):
            first.weight = second.weight

    utils.PreTrainedModel = PreTrainedModel
    sys.modules.update({"_official_vilbert": pkg, "_official_vilbert.utils": utils})
    spec = importlib.util.spec_from_file_location("_official_vilbert.vilbert", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _measure(impl: str, preset: str, precision: str, B: int, T: int, R: int, steps: int, official: str | None,
             official_adamw: str | None, device: str, queue) -> None:  # fmt: skip
    """Run in a child process: time `steps` train steps and forward passes; put a result dict in `queue`."""
    torch.manual_seed(0)
    dev = resolve_device(device)
    c = ViLBertConfig.preset(preset)
    ours = ViLBertForPreTraining(c)
    if impl == "official":
        mod = load_official(official)
        oc = mod.BertConfig(c.vocab_size)
        for k, v in c.to_dict().items():
            setattr(oc, k, v)
        model = mod.BertForMultiModalPreTraining(oc)
        model.load_state_dict(to_official_state_dict(ours), strict=True)
        step = official_step
    else:
        model, step = ours, ours_step
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=impl == "ours")  # ours: as in the engine
    if impl == "official" and official_adamw:  # the optimizer the official fp32 training actually uses
        spec = importlib.util.spec_from_file_location("_official_optimization", official_adamw)
        optim_mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(optim_mod)
        opt = optim_mod.AdamW(model.parameters(), lr=1e-5)
    b = make_batch(c, B, T, R, dev)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def train_step():
        with amp:
            loss = step(model, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    train_step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train_s = (time.perf_counter() - t0) / steps
    model.eval()
    with torch.no_grad(), amp:
        step(model, b)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(model, b)
        sync()
    fwd_s = (time.perf_counter() - t0) / steps
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    queue.put(dict(impl=impl, preset=preset, precision=precision, batch=B, tokens=T, regions=R, steps=steps,
                   train_samples_per_s=B / train_s, forward_pairs_per_s=B / fwd_s, peak_memory_mib=round(peak, 1),
                   parameters=sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())))  # fmt: skip


def bench_model(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vilbert-lite bench model")
    ap.add_argument("--preset", default="base")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=36)
    ap.add_argument("--regions", type=int, default=37)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--official", help="path to the official vilbert/vilbert.py, to time it side by side")
    ap.add_argument(
        "--official-adamw", help="path to pytorch_transformers/optimization.py (the official AdamW)"
    )
    ap.add_argument("--out", default="reports/bench/model.json")
    a = ap.parse_args(argv)
    ViLBertConfig.preset(a.preset)  # the arguments are checked here, not in the measuring processes
    resolve_device(a.device)
    for flag, path in (("--official", a.official), ("--official-adamw", a.official_adamw)):
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: file not found")
    sizes = {"--batch": a.batch, "--tokens": a.tokens, "--regions": a.regions, "--steps": a.steps}
    for flag, n in sizes.items():
        if n < 1:
            raise UserError(f"{flag} must be >= 1, got {n}")
    runs = [("ours", "fp32"), ("ours", "bf16")]
    if a.official:
        runs.insert(0, ("official", "fp32"))
    ctx = mp.get_context("spawn")
    results = []
    for impl, precision in runs:
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(impl, a.preset, precision, a.batch, a.tokens, a.regions, a.steps,
                                               a.official, a.official_adamw, a.device, q))  # fmt: skip
        p.start()
        p.join()  # the result is a small dict: it fits the queue's pipe before anyone reads it
        if p.exitcode:
            raise RuntimeError(
                f"bench model: the {impl} {precision} measurement failed (exit code {p.exitcode})"
            )
        r = q.get()
        print(json.dumps(r))
        results.append(r)
    report = {"machine": machine_info(resolve_device(a.device)), "results": results,
              "how": "each row: a fresh process; mean over --steps steps after one warm-up step; train step = "
                     "forward + MLM/region-KL/alignment losses + backward + AdamW; same weights and batch"}  # fmt: skip
    official = [r for r in results if r["impl"] == "official"]
    if official:
        ours_fp32 = next(r for r in results if r["impl"] == "ours" and r["precision"] == "fp32")
        report["speedup_vs_official_fp32_train"] = (
            ours_fp32["train_samples_per_s"] / official[0]["train_samples_per_s"]
        )
        print(
            f"speed-up over the official implementation (fp32 train step): {report['speedup_vs_official_fp32_train']:.2f}x"
        )
    write_json(a.out, report)
    return 0
