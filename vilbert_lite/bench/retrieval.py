"""`vilbert-lite bench retrieval`: cached vs. uncached retrieval scoring."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from vilbert_lite.device import resolve_device
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks.common import TaskModel, load_backbone
from vilbert_lite.tasks.retrieval import forward, heads, random_inputs, score_matrix


# ------------------------------------------------------------------------------------------------ bench
def bench(argv: list[str]) -> int:
    """`vilbert-lite bench retrieval`: pairs/s of ranking captions x images with and without caching the
    pair-independent prefixes, and the largest score difference between the two -> reports/bench/retrieval.json."""
    ap = argparse.ArgumentParser(prog="vilbert-lite bench retrieval", description=bench.__doc__)
    ap.add_argument("--profile", default="cpu", help="model of this profile (random weights unless --init)")
    ap.add_argument("--init", default="none", help="a pretraining run folder, or none")
    ap.add_argument("--captions", type=int, default=32)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--regions", type=int, default=10, help="regions per image, + the global one")
    ap.add_argument("--batch", type=int, default=256, help="pairs per forward")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="reports/bench/retrieval.json")
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    prof = get_profile(a.profile)
    config = ViLBertConfig.preset(prof.model_preset, v_feature_size=1280, v_target_size=1000)
    torch.manual_seed(0)
    model = TaskModel(load_backbone(a.init, config), forward, **heads(config, None)).to(device).eval()
    texts, images = random_inputs(config, a.captions, a.images, a.tokens, a.regions)
    result = {"profile": a.profile, "init": a.init, "captions": a.captions, "images": a.images,
              "pairs": a.captions * a.images, "tokens": a.tokens, "regions": a.regions + 1, "batch": a.batch}  # fmt: skip
    scores = {}
    for cache in (False, True, False, True):  # twice each, the first round warms up; the second is timed
        t0 = time.perf_counter()
        scores[cache] = score_matrix(model, texts, images, cache, a.batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result["cached" if cache else "uncached"] = {"seconds": round(time.perf_counter() - t0, 3),
                                                     "pairs_per_s": round(a.captions * a.images / (time.perf_counter() - t0), 1)}  # fmt: skip
    result["speedup"] = round(result["cached"]["pairs_per_s"] / result["uncached"]["pairs_per_s"], 2)
    result["max_abs_diff"] = float((scores[True] - scores[False]).abs().max())
    result["identical_allclose_1e-5"] = bool(
        torch.allclose(scores[True], scores[False], atol=1e-5, rtol=1e-5)
    )
    result["machine"] = {"device": str(device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "torch": torch.__version__, "platform": platform.platform()}  # fmt: skip
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0
