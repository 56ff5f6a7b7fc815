"""studies/learnability.py: the presence rule it uses as a yardstick is right about genuine and swapped captions."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from vilbert_lite.data.world import make_world
from vilbert_lite.profiles import WorldSize

_spec = importlib.util.spec_from_file_location(
    "learnability", Path(__file__).parents[1] / "studies" / "learnability.py"
)
learnability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learnability)


def test_presence_rule_accepts_every_true_caption_and_rejects_most_swaps():
    w = make_world(sizes=WorldSize(pretrain_scenes=80, train_scenes=4, val_scenes=4, test_scenes=4), seed=0)
    caps = w.captions("pretrain")
    texts, scenes = [c.text for c in caps], [w.scene(c.image_id) for c in caps]
    n = len(caps)
    # genuine pairs: every caption names only colours, shapes and a background that are in its image
    assert learnability.rule_accuracy(texts, scenes, torch.arange(n), torch.ones(n, dtype=torch.long)) == 1.0
    # every caption swapped for one of another image: most are caught, not all (vague captions fit many images)
    partner = (torch.arange(n) + 3 * w.sizes.captions_per_scene) % n
    caught = learnability.rule_accuracy(texts, scenes, partner, torch.zeros(n, dtype=torch.long))
    assert 0.7 < caught < 1.0
