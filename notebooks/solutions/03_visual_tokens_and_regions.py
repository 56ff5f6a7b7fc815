"""Solutions to the exercises of notebook 03 · Visual tokens and regions (seconds to a minute; reuses the feature cache).

python solutions/03_visual_tokens_and_regions.py [--profile cpu]
"""

from __future__ import annotations

import argparse

import numpy as np
import skimage.data
import torch

from vilbert_lite.data.regions import RegionExtractor, visual_inputs
from vilbert_lite.data.world import make_world
from vilbert_lite.viz import visual_tokens as vt


def exercise_1(extractor) -> None:
    for photo in ("astronaut", "chelsea"):
        vis = visual_inputs(extractor(getattr(skimage.data, photo)(), image_id=photo))
        top = vis["cls_prob"].argmax(-1)
        same = int((top[1:] == top[0]).sum())
        print(
            f"exercise 1: {photo}: {same} of {len(top) - 1} proposals share the IMG region's top class; "
            f"{len(set(top.tolist()))} distinct top classes"
        )
    print(
        "exercise 1: the classes come from the CNN's last stage, whose cells see most of the image: context wins"
    )


def exercise_2(x_train, attrs_train, x_val, attrs_val, profile: str) -> None:
    ks = (16, 64, 256) if profile == "smoke" else (16, 64, 256, 1024)
    for k in (k for k in ks if k <= len(x_train)):
        km = vt.kmeans(x_train, k, seed=0)
        ids = vt.assign(x_val, km.centroids)
        acc = vt.cluster_lookup_accuracy(km.labels, attrs_train["color+shape"], ids, attrs_val["color+shape"])
        per = torch.bincount(km.labels, minlength=k).float()
        print(
            f"exercise 2: K={k:5d}: colour+shape from the id {100 * acc:5.1f} %, train regions per token "
            f"mean {per.mean():.1f}, tokens with <= 1 region {100 * float((per <= 1).float().mean()):.0f} %"
        )
    print("exercise 2: at large K most tokens hold a region or two: nothing to learn a token's meaning from")


def gather_probs(store, scenes) -> torch.Tensor:
    return torch.as_tensor(np.concatenate([store.get(s.scene_id).cls_prob[: len(s.objects)] for s in scenes]))


def exercise_3(store, world, attrs_train, attrs_val) -> None:
    p_train, p_val = gather_probs(store, world.scenes["train"]), gather_probs(store, world.scenes["val"])
    k = min(32, len(p_train) // 2)
    km = vt.kmeans(p_train, k, seed=0)
    ids = vt.assign(p_val, km.centroids)
    for a in ("color", "shape"):
        acc = vt.cluster_lookup_accuracy(km.labels, attrs_train[a], ids, attrs_val[a])
        print(
            f"exercise 3: {a} from a K={k} token of the class distribution: {100 * acc:.1f} % "
            f"(chance {100 * vt.majority_accuracy(attrs_train[a], attrs_val[a]):.1f} %)"
        )
    print(
        "exercise 3: the ImageNet label is about object categories, not colours: a label-as-word keeps less"
    )


def exercise_4(x_train, attrs_train, x_val, attrs_val) -> None:
    half = x_train.shape[1] // 2
    k = min(32, len(x_train) // 2)
    codes = []
    for part in (slice(0, half), slice(half, None)):
        km = vt.kmeans(x_train[:, part], k, seed=0)
        codes.append((km.labels, vt.assign(x_val[:, part], km.centroids)))
    train_ids, val_ids = codes[0][0] * k + codes[1][0], codes[0][1] * k + codes[1][1]
    pq = vt.cluster_lookup_accuracy(train_ids, attrs_train["color+shape"], val_ids, attrs_val["color+shape"])
    km = vt.kmeans(x_train, k, seed=0)
    flat = vt.cluster_lookup_accuracy(km.labels, attrs_train["color+shape"], vt.assign(x_val, km.centroids),
                                      attrs_val["color+shape"])  # fmt: skip
    print(
        f"exercise 4: colour+shape: one K={k} token {100 * flat:.1f} %, a pair of K={k} tokens ({k * k} ids) "
        f"{100 * pq:.1f} %"
    )


def exercise_5(world, x_train, attrs_train, x_val, attrs_val) -> None:
    side = world.sizes.image_size
    loc_tr, loc_va = (
        vt.location_features(attrs_train, side, side),
        vt.location_features(attrs_val, side, side),
    )
    for name, tr, va in (("feature", x_train, x_val), ("5-d location", loc_tr, loc_va)):
        print(
            f"exercise 5: size from the {name} alone: {100 * vt.linear_probe(tr, attrs_train['size'], va, attrs_val['size']):.1f} %"
        )
    print("exercise 5: the location (area) carries size; referring expressions with 'small'/'large' need it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    args = ap.parse_args()
    world = make_world(args.profile, seed=0)
    extractor = RegionExtractor(max_regions=36, device="cpu")
    store = vt.world_region_features(world, ("train", "val"), None, extractor, progress=False)
    x_train, attrs_train = vt.gather(store, world.scenes["train"])
    x_val, attrs_val = vt.gather(store, world.scenes["val"])
    exercise_1(extractor)
    exercise_2(x_train, attrs_train, x_val, attrs_val, args.profile)
    exercise_3(store, world, attrs_train, attrs_val)
    exercise_4(x_train, attrs_train, x_val, attrs_val)
    exercise_5(world, x_train, attrs_train, x_val, attrs_val)


if __name__ == "__main__":
    main()
