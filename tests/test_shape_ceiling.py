"""studies/shape_ceiling.py: its masks are the yardstick's, and its ideal reader guesses the most frequent filler."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from vilbert_lite.data.tokenize import get_tokenizer
from vilbert_lite.data.world import make_world
from vilbert_lite.profiles import WorldSize

_spec = importlib.util.spec_from_file_location(
    "shape_ceiling", Path(__file__).parents[1] / "studies" / "shape_ceiling.py"
)
shape_ceiling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shape_ceiling)


def test_masks_hide_every_shape_word_and_nothing_else():
    tok = get_tokenizer()
    texts = ["a red ball near two squares", "a red disc near two squares", "a blue ball near two squares"]
    (t0, f0), (t1, f1), (t2, f2) = shape_ceiling.masked(tok, texts, ["val-000000"] * 3)
    assert t0 == t1 != t2  # synonyms share a masked text; another colour does not
    assert tok.convert_ids_to_tokens(f0) == ["ball", "squares"]
    assert tok.convert_ids_to_tokens(f1) == ["disc", "squares"]
    assert t0.count(-1) == 2 and tok.convert_ids_to_tokens([i for i in t0 if i >= 0])[1:3] == ["a", "red"]


def test_best_guess_counts_fillers_per_position():
    counts = shape_ceiling.best_guess([[1, 7], [2, 7], [1, 8]])
    assert counts == [Counter({1: 2, 2: 1}), Counter({7: 2, 8: 1})]


def test_draws_are_deterministic_captions_of_the_scene():
    w = make_world(sizes=WorldSize(pretrain_scenes=4, train_scenes=2, val_scenes=2, test_scenes=2), seed=0)
    a, b = shape_ceiling.draw(w, "val", 1, 5, seed=1), shape_ceiling.draw(w, "val", 1, 5, seed=1)
    assert a == b and len(a) == 5 * 7
    assert shape_ceiling.draw(w, "val", 1, 5, seed=2) != a
