"""How many masked shape words can the `cpu` world's captions give away at all: the best held-out shape-word
accuracy of an ideal reader, with the scene in view and without it.

    .venv/bin/python studies/shape_ceiling.py [--samples 300] [--out reports/grounding/shape_ceiling.json]

The held-out yardstick (`pretrain.evaluate_pretraining`) masks every shape word of a val caption at once and
scores the exact token. Some of those words no image can tell: which synonym a caption used ("ball" or "disc"),
and in which order a caption lists kinds it names ("two circles and a star" or "a star and two circles": the order
follows the scene's object list, which no picture shows). This tool measures that ceiling by Monte Carlo, with
the world's own caption generator (`texts.caption_text`):

- **with the scene**: for each val caption, draw `--samples` captions of its scene per style (style prior
  `caption_styles`), mask their shape words the same way, keep those whose masked text equals the val caption's,
  and guess at each masked token the filler most frequent among them. The share of right guesses estimates the
  Bayes-optimal accuracy of a reader who knows the scene graph exactly (features at probe accuracy 1, binding
  solved). A masked caption that none of the draws reproduces (long listings in crowded scenes, mostly) is left
  out: `n` counts the shape tokens scored, out of `shape_tokens`.
- **without it**: the same over captions drawn from the pretraining scenes, pooled across scenes: the best a
  text-only reader can do. `both_matched` scores the two readers on the tokens both of them scored, so the
  difference is what seeing the scene can add.

Tokens and masks are `pretrain.CaptionImageDataset`'s, so the counts are the yardstick's. Pure Python, no model.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from vilbert_lite.data.items import Caption
from vilbert_lite.data.texts import CAPTION_STYLES, caption_text
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.data import CaptionImageDataset

ROOT = Path(__file__).resolve().parents[1]


def masked(tok, texts: list[str], image_ids: list[str]) -> list[tuple[tuple, list[int]]]:
    """(masked token ids as a tuple, the shape-word token ids in order) per text, with the yardstick's masks."""
    caps = [Caption(i, t) for i, t in zip(image_ids, texts)]
    dummy = {"visual_feats": torch.zeros(1, 1), "cls_prob": torch.zeros(1, 1)}
    ds = CaptionImageDataset(caps, dict.fromkeys(set(image_ids), dummy), tok, blank_images=True)
    out = []
    for ids, kinds in zip(ds.ids, ds.kinds):
        shape = kinds == 2
        out.append((tuple(torch.where(shape, -1, ids).tolist()), ids[shape].tolist()))
    return out


def draw(world, split: str, k: int, n: int, seed: int) -> list[str]:
    """`n` captions of scene k of `split` per caption style, styles drawn with the world's weights."""
    w = np.asarray(world.sizes.caption_styles, float)
    rng = np.random.default_rng([seed, k])
    scene = world.scenes[split][k]
    styles = rng.choice(len(CAPTION_STYLES), n * len(CAPTION_STYLES), p=w / w.sum())
    return [caption_text(scene, rng, CAPTION_STYLES[int(j)]) for j in styles]


def best_guess(fills: list[list[int]]) -> list[Counter]:
    """Per masked position, the Counter of fillers over matching draws."""
    return [Counter(f[p] for f in fills) for p in range(len(fills[0]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=300, help="draws per caption style per val scene")
    ap.add_argument(
        "--text-scenes", type=int, default=2000, help="pretraining scenes for the text-only reader"
    )
    ap.add_argument("--text-samples", type=int, default=20, help="draws per style per pretraining scene")
    ap.add_argument("--out", default=str(ROOT / "reports/grounding/shape_ceiling.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    tok = get_tokenizer()
    world = make_world("cpu", seed=0)
    val = world.captions("val")
    val_m = masked(tok, [c.text for c in val], [c.image_id for c in val])

    # with the scene: draws of each val scene, grouped by masked text
    by_scene = defaultdict(list)
    for i, (c, m) in enumerate(zip(val, val_m)):
        by_scene[c.image_id].append((i, *m))
    scene_hits: dict[tuple[int, int], int] = {}  # (val caption, masked position) -> right guess
    n_objects = {}
    for image_id, items in by_scene.items():
        k = int(image_id.rpartition("-")[2])
        texts = draw(world, "val", k, a.samples, seed=1)
        groups = defaultdict(list)
        for tmpl, fill in masked(tok, texts, [image_id] * len(texts)):
            groups[tmpl].append(fill)
        for i, tmpl, fill in items:
            n_objects[i] = len(world.scenes["val"][k].objects)
            if fill and tmpl in groups:
                for p, cnt in enumerate(best_guess(groups[tmpl])):
                    scene_hits[i, p] = int(cnt.most_common(1)[0][0] == fill[p])

    # without it: draws over the pretraining scenes, pooled
    pooled = defaultdict(list)
    for k in range(min(a.text_scenes, len(world.scenes["pretrain"]))):
        texts = draw(world, "pretrain", k, a.text_samples, seed=2)
        for tmpl, fill in masked(tok, texts, [f"pretrain-{k:06d}"] * len(texts)):
            if fill:
                pooled[tmpl].append(fill)
    text_hits = {}
    for i, (tmpl, fill) in enumerate(val_m):
        if fill and tmpl in pooled:
            for p, cnt in enumerate(best_guess(pooled[tmpl])):
                text_hits[i, p] = int(cnt.most_common(1)[0][0] == fill[p])

    def acc(hits: dict, keys) -> dict:
        keys = list(keys)
        return {"acc": round(sum(hits[k] for k in keys) / max(len(keys), 1), 4), "n": len(keys)}

    bucket = {1: "1", 2: "2", 3: "3"}
    common = scene_hits.keys() & text_hits.keys()
    res = {
        "with_scene": acc(scene_hits, scene_hits),
        "with_scene_by_objects": {
            b: acc(scene_hits, [k for k in scene_hits if bucket.get(n_objects[k[0]], "4+") == b])
            for b in ("1", "2", "3", "4+")
        },
        "text_only": acc(text_hits, text_hits),
        "both_matched": {"with_scene": acc(scene_hits, common), "text_only": acc(text_hits, common)},
        "shape_tokens": sum(len(f) for _, f in val_m),
        "args": vars(a)
        | {"out": str(Path(a.out).relative_to(ROOT)) if Path(a.out).is_relative_to(ROOT) else a.out},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(res, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
