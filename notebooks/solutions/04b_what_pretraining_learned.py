"""Solutions to the exercises of notebook 04b · What pretraining learned.

At `cpu`, exercises 1 and 2 each pretrain a new model (~15 minutes each on 2 cores), exercise 4 a quarter-corpus one;
3 and 5 take seconds once notebook 04b's run exists (they train it first if it does not).

    python solutions/04b_what_pretraining_learned.py [--profile cpu]
"""

from __future__ import annotations

import argparse
import json

import torch

from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.captions import alignment_score, sample_caption
from vilbert_lite.pretrain.data import synthetic_data
from vilbert_lite.pretrain.run import load_pretrained, pretrain


def held_out(run) -> dict:
    ev = json.loads((run / "eval.json").read_text())
    return {k: ev.get(k) for k in ("alignment_acc", "color_acc", "shape_acc")}


def fmt(ev: dict) -> str:
    return ", ".join(f"{k} {100 * v:.1f} %" for k, v in ev.items() if v is not None)


def exercise_1(profile: str, base: dict) -> None:
    run = pretrain(profile, 0, config_overrides={"objective": 1}, progress=False)
    print(f"exercise 1: default      {fmt(base)}")
    print(f"exercise 1: objective 1  {fmt(held_out(run))}")


def exercise_2(profile: str, base: dict) -> None:
    run = pretrain(profile, 0, weights={"region": 0}, progress=False)
    print(
        f"exercise 2: no region loss {fmt(held_out(run))} (default: colour words {100 * base['color_acc']:.1f} %)"
    )


def exercise_3(model, tok, world, visual) -> None:
    image_id = world.retrieval("val")[0].image_id
    objects = ", ".join(f"{o.color} {o.shape}" for o in world.scene(image_id).objects)
    for label, kw in (("re-masking, T=1.0", {"temperature": 1.0}), ("one shot (steps=1)", {"steps": 1})):
        g = torch.Generator().manual_seed(0)
        text = sample_caption(model, tok, visual[image_id], length=8, generator=g, **kw)[0]
        print(f"exercise 3: {label:20s} “{text}” (image: {objects})")
    print(
        "exercise 3: one shot predicts every position independently, so neighbours can pick the same likely word"
    )


def exercise_4(profile: str, base: dict) -> None:
    run = pretrain(profile, 0, corpus_fraction=0.25, progress=False)
    print(f"exercise 4: 25 % of the corpus {fmt(held_out(run))}; 100 %: {fmt(base)}")


def swap_relation(text: str) -> str | None:
    pairs = [("left of", "right of"), ("above", "below")]
    for a, b in pairs:
        if a in text:
            return text.replace(a, b)
        if b in text:
            return text.replace(b, a)
    return None


def exercise_5(model, tok, world, visual) -> None:
    items, higher, n = world.retrieval("val"), 0, 0
    for it in items:
        neg = swap_relation(it.caption)
        if neg is None:
            continue
        p = alignment_score(model, tok, visual[it.image_id], [it.caption, neg])
        higher += int(p[0] > p[1])
        n += 1
    if n:
        print(
            f"exercise 5: {n} val captions with a relation: the true caption scores higher than the swapped "
            f"relation for {100 * higher / n:.1f} % (50 % = chance)"
        )
    else:
        print("exercise 5: no val caption names a relation at this profile")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = pretrain(args.profile, 0, progress=False)  # notebook 04b's run (reused when it exists)
    base = held_out(run)
    tok, world = get_tokenizer(), make_world(args.profile, seed=0)
    _, _, visual, _, _ = synthetic_data(args.profile, world_seed=0, progress=False)
    model = load_pretrained(run).eval()
    exercise_1(args.profile, base)
    exercise_2(args.profile, base)
    exercise_3(model, tok, world, visual)
    exercise_4(args.profile, base)
    exercise_5(model, tok, world, visual)


if __name__ == "__main__":
    main()
