"""`vilbert-lite bench extract`: images/s of region extraction."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vilbert_lite.data.regions import RegionExtractor, propose_boxes


def bench(argv: list[str]) -> int:
    """`vilbert-lite bench extract`: images/s of region extraction on this machine -> reports/bench/extract.json."""
    ap = argparse.ArgumentParser(prog="vilbert-lite bench extract", description=bench.__doc__)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="reports/bench/extract.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    imgs, gts = [], []
    # simple synthetic scenes: a few flat-coloured rectangles on a noisy background
    for _ in range(args.images):
        img = (rng.integers(80, 140, (3,)) + rng.normal(0, 8, (160, 160, 3))).clip(0, 255).astype(np.uint8)
        bx = []
        for _ in range(int(rng.integers(2, 7))):
            x1, y1 = rng.integers(0, 120, 2)
            w, h = rng.integers(16, 48, 2)
            img[y1 : y1 + h, x1 : x1 + w] = rng.integers(0, 256, 3)
            bx.append([x1, y1, min(160, x1 + w), min(160, y1 + h)])
        imgs.append(img)
        gts.append(np.array(bx, np.float32))
    ext = RegionExtractor(device=args.device)
    ext(imgs[0], gts[0])  # warm up
    result: dict[str, Any] = {
        "images": args.images,
        "image_size": ext.image_size,
        "max_regions": ext.max_regions,
    }
    for name, boxes in (("gt_boxes", gts), ("proposals", [None] * len(imgs))):
        t0 = time.perf_counter()
        n_regions = sum(
            len(r.boxes) for r in ext.extract_many(list(zip(range(len(imgs)), imgs, boxes)), progress=False)
        )
        dt = time.perf_counter() - t0
        result[name] = {
            "images_per_s": round(len(imgs) / dt, 2),
            "seconds": round(dt, 3),
            "regions_per_image": round(n_regions / len(imgs), 1),
        }
    t0 = time.perf_counter()
    for img in imgs:
        propose_boxes(img)
    result["proposals_only"] = {"images_per_s": round(len(imgs) / (time.perf_counter() - t0), 2)}
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(ext.device),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0
