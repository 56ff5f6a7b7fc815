"""Do captions sampled from a pretrained model name what is in the image? Precision of their colour and shape
words, per decoding setting, against the same captions read against another image (chance).

    .venv/bin/python studies/caption_samples.py RUN [--images 100] [--samples 4] [--out FILE.jsonl]

For each of the first `--images` val images of the `cpu` world, `--samples` captions are drawn with
`pretrain.sample_caption` (iterative masked-token sampling, the paper's Figure 5) under each decoding setting
(temperature, top-k), and also the one of them the model's own alignment head scores highest ("best of N", a
decoding choice: no training, no labels). A colour word counts as right when an object of the image has that
colour or the background is that tint; a shape word (any synonym or plural) when an object has that shape.
`chance` reads the same captions against the next image of the list. One JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from vilbert_lite.data.scene import COLORS, SHAPES
from vilbert_lite.data.texts import PLURAL, SYNONYMS
from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.captions import sample_best_caption
from vilbert_lite.pretrain.data import synthetic_data
from vilbert_lite.pretrain.run import load_pretrained

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = ({"temperature": 1.0, "top_k": 0}, {"temperature": 0.7, "top_k": 0}, {"temperature": 0.5, "top_k": 0},
            {"temperature": 1.0, "top_k": 5})  # fmt: skip


def word_maps() -> tuple[set[str], dict[str, str]]:
    """(colour words, shape word -> shape): every single-word name of a shape, singular and plural."""
    shape_of = {}
    for shape in SHAPES:
        for name in (shape, PLURAL[shape], *SYNONYMS.get(shape, ())):
            if " " not in name:
                shape_of[name] = shape_of[name + "s"] = shape
        shape_of[PLURAL[shape]] = shape
    return set(COLORS), shape_of


def precision(texts: list[str], scenes: list) -> dict:
    """Share of colour / shape words that are in their scene, and how many such words a caption has."""
    colours, shape_of = word_maps()
    right = {"color": 0, "shape": 0}
    total = {"color": 0, "shape": 0}
    for text, scene in zip(texts, scenes):
        here_c = {o.color for o in scene.objects} | {scene.background}
        here_s = {o.shape for o in scene.objects}
        for w in re.findall(r"[a-z]+", text.lower()):
            if w in colours:
                total["color"] += 1
                right["color"] += w in here_c
            elif w in shape_of:
                total["shape"] += 1
                right["shape"] += shape_of[w] in here_s
    n = max(len(texts), 1)
    return {f"{k}_precision": round(right[k] / total[k], 4) if total[k] else None for k in right} | {
        f"{k}_words_per_caption": round(total[k] / n, 3) for k in total
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--length", type=int, default=8, help="caption length in WordPieces (notebook 04's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON lines (default: print only)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = get_tokenizer()
    world = make_world("cpu", seed=0)
    _, _, visual, _, _ = synthetic_data("cpu", progress=False)
    model = load_pretrained(a.run).eval()
    ids = [s.scene_id for s in world.scenes["val"][: a.images]]
    scenes = [world.scene(i) for i in ids]
    others = scenes[1:] + scenes[:1]  # chance: each caption against the next image
    real = [next(c.text for c in world.captions("val") if c.image_id == i) for i in ids]
    rows = [{"setting": "real captions", **precision(real, scenes),
             "chance": precision(real, others)}]  # fmt: skip
    for s in SETTINGS:
        gen = torch.Generator().manual_seed(a.seed)
        out = [sample_best_caption(model, tok, visual[i], a.samples, length=a.length, generator=gen, **s)
               for i in ids]  # fmt: skip
        best, flat = [b for b, _ in out], [t for _, d in out for t in d]
        rep = [sc for sc in scenes for _ in range(a.samples)]
        rep_other = [sc for sc in others for _ in range(a.samples)]
        name = f"T={s['temperature']}" + (f", top-{s['top_k']}" if s["top_k"] else "")
        rows.append({"setting": name, **precision(flat, rep), "chance": precision(flat, rep_other),
                     "example": flat[0]})  # fmt: skip
        rows.append({"setting": f"{name}, best of {a.samples}", **precision(best, scenes),
                     "chance": precision(best, others), "example": best[0]})  # fmt: skip
    meta = {"run": Path(a.run).name, "images": len(ids), "samples": a.samples, "length": a.length, "seed": a.seed,
            "command": "studies/caption_samples.py " + " ".join(sys.argv[1:])}  # fmt: skip
    lines = [json.dumps({**meta, **r}) for r in rows]
    print("\n".join(lines))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
