"""The pretraining data: (caption, image) items with their region features, from the synthetic world or a
COCO-format captions file and image folder."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vilbert_lite import runs
from vilbert_lite.data.formats import read_coco_captions
from vilbert_lite.data.regions import RegionExtractor, visual_inputs
from vilbert_lite.data.scene import COLORS, SHAPES
from vilbert_lite.data.store import FeatureStore, cache_dir, extract_features
from vilbert_lite.data.texts import PLURAL, SYNONYMS
from vilbert_lite.data.world import make_world
from vilbert_lite.errors import UserError

MAX_SEQ_LENGTH = 36  # ViLBERT (arXiv 1908.02265) §3.2 and the official code
MAX_REGIONS = 36
HELD_OUT_FRACTION = 0.05  # real data: share of images held out for evaluation


def _word_sets() -> dict[str, set[str]]:
    shapes = set(SHAPES) | set(PLURAL.values()) | {w for v in SYNONYMS.values() for w in v if " " not in w}
    return {"color": set(COLORS), "shape": shapes}


# ------------------------------------------------------------------------------------------------- dataset
class CaptionImageDataset(Dataset):
    """(caption, image) items: token ids ([CLS] ... [SEP], at most max_seq_length) + the image's region inputs.

    `visual` maps image_id -> `regions.visual_inputs(...)`. With `blank_images` every image is replaced by a
    single all-zero global region (the text-only baseline). Items also carry `image_index` (for swapping
    captions between different images) and `text_index`. `kinds[i]` marks each token of caption i as
    0 (other), 1 (colour word) or 2 (shape word), for the held-out evaluation."""

    KINDS = ("other", "color", "shape")

    def __init__(self, captions: list, visual: dict[str, dict], tokenizer, max_seq_length: int = MAX_SEQ_LENGTH,
                 blank_images: bool = False):  # fmt: skip
        missing = sorted({c.image_id for c in captions} - set(visual))
        if missing:
            raise ValueError(f"{len(missing)} captioned images have no region features, e.g. {missing[:3]}")
        self.captions = list(captions)
        self.image_ids = list(dict.fromkeys(c.image_id for c in self.captions))
        index = {k: i for i, k in enumerate(self.image_ids)}
        self.image_index = [index[c.image_id] for c in self.captions]
        if blank_images:
            some = next(iter(visual.values()))
            blank = {
                "visual_feats": torch.zeros(1, some["visual_feats"].shape[1]),
                "visual_pos": torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]]),
                "cls_prob": torch.zeros(1, some["cls_prob"].shape[1]),
                "boxes": torch.zeros(1, 4),
                "num_regions": torch.tensor(1),
            }
            self.visual = [blank] * len(self.image_ids)
        else:
            self.visual = [visual[k] for k in self.image_ids]
        enc = tokenizer([c.text for c in self.captions], truncation=True, max_length=max_seq_length)
        self.ids = [torch.tensor(x, dtype=torch.long) for x in enc["input_ids"]]
        self.lengths = [
            len(x) for x in self.ids
        ]  # tokens per caption, for length bucketing (TrainConfig.bucket)
        sets = _word_sets()
        self.kinds = []  # per token: 0 other, 1 colour word, 2 shape word
        for i, c in enumerate(self.captions):
            kinds = []
            for wid in enc.word_ids(i):
                span = enc.word_to_chars(i, wid) if wid is not None else None
                word = c.text[span.start : span.end].lower() if span is not None else ""
                kinds.append(1 if word in sets["color"] else 2 if word in sets["shape"] else 0)
            self.kinds.append(torch.tensor(kinds, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict:
        return {
            "input_ids": self.ids[i],
            "image_index": self.image_index[i],
            "text_index": i,
            **self.visual[self.image_index[i]],
        }


def _visual_map(store, image_ids, max_regions: int = MAX_REGIONS) -> dict[str, dict]:
    return {i: visual_inputs(store.get(i), max_regions) for i in image_ids}


def _wait_for(flag: Path, timeout: float = 3600) -> None:
    t0 = time.time()
    while not flag.exists():
        if time.time() - t0 > timeout:
            raise TimeoutError(f"waited {timeout:.0f}s for rank 0 to write {flag}")
        time.sleep(1.0)


def _extract(items: list[tuple[str, Any]] | dict[str, Path], root: Path, progress: bool) -> tuple[Any, dict]:
    """Region features of (image_id, loader() -> (image, boxes or None)) items into the store under `root`;
    only missing images are loaded, except image files, which are all checked against what is stored (a changed
    file is extracted again, see `store.refresh`). Under torchrun rank 0 extracts and the other ranks wait."""
    rank = int(os.environ.get("RANK", 0))
    t0 = time.perf_counter()
    ext = RegionExtractor(max_regions=MAX_REGIONS)
    store = FeatureStore(root, ext.settings) if rank else None
    if rank == 0:
        if isinstance(items, dict):  # image files: a list, so that the store checks each against its file
            store = extract_features([(i, p, None) for i, p in items.items()], root, ext, progress=progress,
                                     on_error="skip")  # fmt: skip
        else:
            probe = FeatureStore(root, ext.settings)
            todo = [(i, f) for i, f in items if i not in probe]

            def load():
                for image_id, loader in todo:
                    image, boxes = loader()
                    yield image_id, image, boxes

            store = extract_features(load(), root, ext, total=len(todo), progress=progress, on_error="skip")
        (store.path / f".ready-{len(items)}").touch()
    else:
        _wait_for(store.path / f".ready-{len(items)}")
        store = FeatureStore(root, ext.settings)
    info = {"store": str(store.path), "images": len(items), "extracted": store.extracted if rank == 0 else 0,
            "seconds": round(time.perf_counter() - t0, 2), "settings_key": store.key,
            "settings": store.settings}  # fmt: skip
    return store, info


@functools.cache
def extractor_settings() -> dict:
    """The settings of the region extractor every synthetic-world store is made with (they key the store)."""
    return RegionExtractor(max_regions=MAX_REGIONS, device="cpu").settings


def synthetic_data(profile, world_seed: int = 0, progress: bool = True, corpus_fraction: float = 1.0,
                   sizes=None):  # fmt: skip
    """The synthetic world's pretrain captions (the first `corpus_fraction` of its images) and val captions with
    region features (only those images are extracted) -> (train captions, val captions, visual map, store,
    extraction info). `sizes` (a WorldSize) replaces the profile's world."""
    world = make_world(profile, seed=world_seed, sizes=sizes)
    root = cache_dir() / "features" / f"world-{world.key}"
    train, val = take_fraction(world.captions("pretrain"), corpus_fraction), world.captions("val")
    ids = list(dict.fromkeys(c.image_id for c in train + val))
    items = [(i, lambda i=i: (world.image(i), world.gt_boxes(i))) for i in ids]
    store, info = _extract(items, root, progress)
    return train, val, _visual_map(store, ids), store, info


def coco_data(captions_json: str | Path, image_dir: str | Path, progress: bool = True):
    """COCO-format captions + image folder (proposal boxes) -> the same tuple as `synthetic_data`; the last 5%
    of the images (sorted ids) are held out. Images that cannot be read are left out with their captions,
    named in a warning (and in the feature store's skipped.jsonl)."""
    caps, paths = read_coco_captions(captions_json, image_dir)
    if len(paths) < 2:
        raise UserError(f"{captions_json}: pretraining needs at least 2 images, found {len(paths)}")
    key = runs.config_hash({"images": str(Path(image_dir).resolve())})
    root = cache_dir() / "features" / f"images-{key}"
    store, info = _extract({i: paths[i] for i in sorted(paths)}, root, progress)
    unread = {r["image_id"]: r for r in store.report() if r["image_id"] in paths}
    if unread:
        listed = "; ".join(f"{r['path']}: {r['reason']}" for r in list(unread.values())[:5])
        more = f" and {len(unread) - 5} more" if len(unread) > 5 else ""
        warnings.warn(f"{len(unread)} image(s) cannot be read and are left out with their captions: {listed}"
                      f"{more} (all in {store.path / 'skipped.jsonl'})", stacklevel=3)  # fmt: skip
    ids = [i for i in sorted(paths) if i in store]
    if len(ids) < 2:
        raise UserError(f"{captions_json}: pretraining needs at least 2 readable images, found {len(ids)}")
    caps = [c for c in caps if c.image_id in store]
    n_val = max(1, round(HELD_OUT_FRACTION * len(ids)))
    val_ids = set(ids[-n_val:])
    train = [c for c in caps if c.image_id not in val_ids]
    val = [c for c in caps if c.image_id in val_ids]
    info["images_digest"] = hashlib.sha256(
        json.dumps([(i, store.sources.get(i, {}).get("sha256", "")) for i in ids]).encode()
    ).hexdigest()  # what the run read: the pretraining run's key holds it
    return train, val, _visual_map(store, ids), store, info


def _store_widths(visual: dict[str, dict]) -> tuple[int, int]:
    v = next(iter(visual.values()))
    return int(v["visual_feats"].shape[1]), int(v["cls_prob"].shape[1])


def take_fraction(captions: list, fraction: float) -> list:
    ids = list(dict.fromkeys(c.image_id for c in captions))
    keep = set(ids[: round(fraction * len(ids))])
    return [c for c in captions if c.image_id in keep]


@functools.lru_cache(maxsize=4)
def _pretrain_caption_images(sizes, world_seed: int) -> tuple[str, ...]:
    return tuple(c.image_id for c in make_world(sizes=sizes, seed=world_seed).captions("pretrain"))


def caption_count(sizes, world_seed: int = 0, fraction: float = 1.0) -> int:
    """How many pretraining captions the synthetic world of `sizes` (a WorldSize) gives with the first `fraction`
    of its images (`take_fraction`); the captions are generated once per process."""
    images = _pretrain_caption_images(sizes, world_seed)
    ids = list(dict.fromkeys(images))
    keep = set(ids[: round(fraction * len(ids))])
    return sum(i in keep for i in images)
