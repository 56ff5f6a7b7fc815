"""Solutions to the exercises of notebook 06 · Zero-shot retrieval (seconds once notebook 04b's run exists;
exercise 3 pretrains a shorter run, about half of the 11-17 minutes at `cpu`).

    python solutions/06_zero_shot_retrieval.py [--profile cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vilbert_lite.data.collate import pad_text
from vilbert_lite.data.regions import collate_visual
from vilbert_lite.data.world import make_world
from vilbert_lite.pretrain.run import pretrain
from vilbert_lite.tasks import finetune
from vilbert_lite.tasks.common import tokenize
from vilbert_lite.tasks.retrieval import MAX_LENGTH, recall_at, score_matrix
from vilbert_lite.viz import tasks as tv


def text_batch(texts):
    toks = tokenize(list(texts), max_length=MAX_LENGTH)
    return pad_text([t[0] for t in toks], [t[1] for t in toks])


def setup(profile: str):
    run = pretrain(profile, 0, progress=False)
    m = finetune("zeroshot", run, profile, 0, progress=False)
    model, data = tv.load_task_model(tv.run_folder(m), make_world(profile, seed=0), "cpu")
    pool, queries, images = data.extra["pool"], data.extra["queries"], data.extra["images"]
    image_batch = collate_visual([images[k] for k in pool])
    truth = torch.tensor([pool.index(q.image_id) for q in queries])
    scores = score_matrix(model, text_batch(q.caption for q in queries), image_batch).cpu()
    return run, m, model, pool, queries, image_batch, truth, scores


def rank_of_truth(scores, truth):
    return (scores >= scores.gather(1, truth[:, None])).sum(1)


def exercise_1(model, queries, image_batch, truth, scores) -> None:
    hard = score_matrix(model, text_batch(q.hard_negative for q in queries), image_batch).cpu()
    own, neg = rank_of_truth(scores, truth).float(), rank_of_truth(hard, truth).float()
    print(
        f"exercise 1: mean rank of the own image: {own.mean():.1f} under the true caption, {neg.mean():.1f} under "
        f"its hard negative; pushed down for {100 * float((neg > own).float().mean()):.1f} % of the captions"
    )


def exercise_2(pool, queries, scores, truth) -> None:
    first = {}
    for i, q in enumerate(queries):
        first.setdefault(pool.index(q.image_id), i)
    imgs = sorted(first)
    by_image = scores.T[imgs]  # (images with a caption, captions)
    r = recall_at(by_image, torch.tensor([first[j] for j in imgs]))
    print(
        f"exercise 2: image -> caption R@1 {100 * r['r@1']:.1f} % over {len(imgs)} images "
        f"(caption -> image R@1 {100 * recall_at(scores, truth)['r@1']:.1f} %)"
    )


def exercise_3(profile: str, run, m) -> None:
    short = pretrain(profile, 0, train_overrides={"epochs": 1 if profile == "smoke" else 6}, progress=False)
    ms = finetune("zeroshot", short, profile, 0, progress=False)
    for label, r, mm in (("full", run, m), ("shorter", short, ms)):
        align = json.loads((r / "eval.json").read_text())["alignment_acc"]
        print(
            f"exercise 3: {label:8s} pretraining: zero-shot R@1 {100 * mm['r@1']:.1f} %, held-out alignment {100 * align:.1f} %"
        )


def exercise_4(model, queries, image_batch, profile: str) -> None:
    nc, ni = min(50, len(queries)), image_batch["visual_feats"].shape[0]
    texts = {k: v[:nc] for k, v in text_batch(q.caption for q in queries).items()}
    images = {k: v[:ni] for k, v in image_batch.items()}
    for cache in (True, False):
        t0 = time.perf_counter()
        score_matrix(model, texts, images, cache=cache)
        print(f"exercise 4: {nc} x {ni} pairs, cache={cache}: {time.perf_counter() - t0:.2f} s")
    cfg = model.bert.config
    print(
        f"exercise 4: only the {cfg.t_biattention_id[0]} text layer(s) before the first co-attention are cached; "
        "the co-attention layers and what follows still run per pair: that bounds the speed-up"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    run, m, model, pool, queries, image_batch, truth, scores = setup(args.profile)
    exercise_1(model, queries, image_batch, truth, scores)
    exercise_2(pool, queries, scores, truth)
    exercise_3(args.profile, run, m)
    exercise_4(model, queries, image_batch, args.profile)


if __name__ == "__main__":
    main()
