"""A synthetic visual world: seeded scenes of coloured shapes, with boxes, a scene graph and every task's text.

ViLBERT's real data (Conceptual Captions, VQA, VCR, RefCOCO+, Flickr30k, NLVR2) cannot be downloaded here, so
this module builds a laptop-scale world where every task exists and can be checked against ground truth.

    world = make_world(profile="cpu", seed=0)      # or make_world(sizes=WorldSize(...), seed=0)
    scene = world.scenes["train"][0]               # Scene: scene_id "train-000000", objects, relations
    img = world.image(scene.scene_id)              # (H, W, 3) uint8, rendered on demand (never stored)
    boxes = world.gt_boxes(scene.scene_id)         # (N, 4) float32, x1 y1 x2 y2 in pixels
    world.captions("pretrain"), world.vqa("train"), world.refexps("val"), world.vcr("test"), ...

Scenes and their rendering are scene.py, the texts of every task texts.py. Conventions:
- Everything is deterministic: scene i of a split comes from numpy Generator seeded with (seed, split, i);
  texts from (seed, split, i, task). Splits never share a scene (ids "pretrain-000042", "train-000123", ...).
- The pretrain split only has captions (the pretraining corpus); VQA, referring expressions, VCR,
  retrieval and NLVR exist for "train", "val" and "test".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np

from vilbert_lite.data import texts
from vilbert_lite.data.items import Caption, NLVRItem, RefExp, RetrievalItem, VCRItem, VQAItem
from vilbert_lite.data.scene import Scene, generate_scene, render
from vilbert_lite.profiles import WorldSize, get_profile

WORLD_VERSION = 3  # bump whenever generation or rendering changes, so caches keyed on it are rebuilt
SPLITS = ("pretrain", "train", "val", "test")
DOWNSTREAM_SPLITS = ("train", "val", "test")


class _Splits(Mapping):
    """split -> list[Scene], each split generated on first access (the gpu pretrain split is large)."""

    def __init__(self, world: World, counts: dict[str, int]):
        self._world, self._counts, self._lists = world, counts, {}

    def __getitem__(self, split: str) -> list[Scene]:
        if split not in self._counts:
            raise KeyError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._lists:
            w = self._world
            side = w.sizes.image_size
            self._lists[split] = [
                generate_scene(w.rng(split, i), f"{split}-{i:06d}", split, side, w.sizes.object_counts)
                for i in range(self._counts[split])
            ]
        return self._lists[split]

    def __iter__(self):
        return iter(SPLITS)

    def __len__(self) -> int:
        return len(SPLITS)


class World:
    """All scenes of the four splits, and the text of every task (generated lazily, cached)."""

    def __init__(self, sizes: WorldSize, seed: int = 0):
        self.sizes, self.seed = sizes, int(seed)
        counts = [sizes.pretrain_scenes, sizes.train_scenes, sizes.val_scenes, sizes.test_scenes]
        self.scenes: Mapping[str, list[Scene]] = _Splits(self, dict(zip(SPLITS, counts)))
        self._cache: dict[tuple[str, str], list] = {}

    @property
    def key(self) -> str:
        """A short hash of everything that defines this world's images and texts: caches are keyed on it."""
        spec = {"sizes": asdict(self.sizes), "seed": self.seed, "version": WORLD_VERSION}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def rng(self, split: str, index: int, task: int = 0) -> np.random.Generator:
        """The Generator for item `index` of `split` (task 0 = the scene itself, >0 = a text task)."""
        return np.random.default_rng([self.seed, SPLITS.index(split), index, task])

    def scene(self, image_id: str) -> Scene:
        """The scene with id "<split>-<index>" (e.g. "train-000123")."""
        split, _, index = image_id.rpartition("-")
        if split in SPLITS and index.isdigit() and int(index) < len(self.scenes[split]):
            scene = self.scenes[split][int(index)]
            if scene.scene_id == image_id:
                return scene
        raise KeyError(f"no scene with image_id {image_id!r} in this world")

    def image(self, image_id: str) -> np.ndarray:
        """(H, W, 3) uint8, rendered on demand."""
        return render(self.scene(image_id))

    def gt_boxes(self, image_id: str) -> np.ndarray:
        """(N, 4) float32 ground-truth boxes x1 y1 x2 y2 in pixels, in obj_id order."""
        return np.array([o.box for o in self.scene(image_id).objects], np.float32).reshape(-1, 4)

    def _texts(self, task: str, split: str, downstream: bool = True, **options) -> list:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if downstream and split not in DOWNSTREAM_SPLITS:
            raise ValueError(f"{task} exists for the downstream splits {DOWNSTREAM_SPLITS}, not {split!r}")
        key = (task, split, *sorted(options.items()))
        if key not in self._cache:
            self._cache[key] = texts.GENERATORS[task](self, split, **options)
        return self._cache[key]

    def captions(self, split: str) -> list[Caption]:
        """Web alt-text style captions, `captions_per_scene` per scene (the pretraining corpus on "pretrain")."""
        return self._texts("captions", split, downstream=False)

    def vqa(self, split: str) -> list[VQAItem]:
        """`questions_per_scene` questions per scene, 10 noisy answers each; qtypes texts.QTYPES."""
        return self._texts("vqa", split)

    @property
    def answer_vocab(self) -> list[str]:
        """Every answer given in the train split, sorted."""
        return sorted({a for q in self.vqa("train") for a in q.answers})

    def refexps(self, split: str) -> list[RefExp]:
        """Referring expressions, each matching exactly one object (up to 2 per scene)."""
        return self._texts("refexps", split)

    def vcr(self, split: str, per_scene: int = 1, style: str = "relation") -> list[VCRItem]:
        """Up to `per_scene` questions per scene (where possible, each about another object or kind) with 4
        answers and 4 rationales, one right each; `style` texts.VCR_STYLES. per_scene=1 with style "relation"
        is the world's original set."""
        if style == "relation":  # the cache key of the original set stays what it was
            return self._texts("vcr", split, per_scene=per_scene)
        return self._texts("vcr", split, per_scene=per_scene, style=style)

    def retrieval(self, split: str) -> list[RetrievalItem]:
        """One caption per scene with a hard negative that changes one attribute word and is false."""
        return self._texts("retrieval", split)

    def nlvr(self, split: str, per_scene: int = 1) -> list[NLVRItem]:
        """`per_scene` statements per scene about (this scene, another scene of the split); labels exactly 50/50.
        Statements are text (cheap); the images are the scenes'. per_scene=1 is the world's original set."""
        return self._texts("nlvr", split, per_scene=per_scene)


def make_world(profile="cpu", seed: int = 0, sizes: WorldSize | None = None) -> World:
    """Build the world for a profile ("smoke", "cpu", "gpu", or a resolved `Profile`), or for explicit `sizes`."""
    return World(sizes if sizes is not None else get_profile(profile).world, seed=seed)
