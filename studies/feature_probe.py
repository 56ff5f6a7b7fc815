"""Which backbone stage should region features pool? Linear probes of colour, shape and size per stage.

    .venv/bin/python studies/feature_probe.py [--scenes 400] [--stages head block7 block10 block14 block7+block10]
    -> reports/feature_probe.json

For each stage, `RegionExtractor(stage=...)` (the extractor `vilbert-lite extract` and the world use) pools
every object's ground-truth box of the first SCENES `cpu`-world pretraining scenes; notebook 03's
`visual_tokens.linear_probe` is fitted on 80% of the objects and scored on the other 20%. Also the extraction
speed of each stage (images/s, this machine, not a quiet-machine benchmark).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vilbert_lite.data.regions import DEFAULT_STAGE, RegionExtractor
from vilbert_lite.data.world import make_world
from vilbert_lite.viz.visual_tokens import linear_probe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=400)
    ap.add_argument("--stages", nargs="*", default=["head", "block4", "block7", "block10", "block14",
                                                    "block7+block10", "block10+head"])  # fmt: skip
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    world = make_world("cpu", seed=0)
    ids = [s.scene_id for s in world.scenes["pretrain"][: a.scenes]]
    objs = [o for i in ids for o in world.scene(i).objects]
    labels = {k: [getattr(o, k) for o in objs] for k in ("color", "shape", "size")}
    cut = int(0.8 * len(objs))
    out = {"scenes": len(ids), "objects": len(objs), "held_out": len(objs) - cut, "default": DEFAULT_STAGE,
           "stages": {}}  # fmt: skip
    for stage in a.stages:
        ext = RegionExtractor(device="cpu", stage=stage)
        t0 = time.perf_counter()
        feats = torch.cat([torch.as_tensor(r.features) for r in ext.extract_many(
            [(i, world.image(i), world.gt_boxes(i)) for i in ids], progress=False)])  # fmt: skip
        sec = time.perf_counter() - t0
        probe = {
            k: round(linear_probe(feats[:cut], v[:cut], feats[cut:], v[cut:]), 3) for k, v in labels.items()
        }
        out["stages"][stage] = {"dim": int(feats.shape[1]), **probe, "images_per_s": round(len(ids) / sec, 1)}
        print(stage, out["stages"][stage], flush=True)
    (ROOT / "reports" / "feature_probe.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
