"""studies/vilt_recipe.py: recipes parse to pretrain_vilt's arguments, and the choice rule picks the cheapest step
among the recipes that reach the alignment bar."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "vilt_recipe", Path(__file__).parents[1] / "studies" / "vilt_recipe.py"
)
vr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vr)


def test_recipes_parse_name_and_become_pretrain_arguments():
    r = vr.parse("views=1,patch=32")
    assert r == {"views": 1, "patch": 32, "wpa": 0.1, "embed": "patch"} and vr.name(r) == "views=1,patch=32"
    assert vr.name(vr.parse("default")) == "default" == vr.name(vr.parse(""))
    kw = vr.pretrain_kwargs(r)
    assert kw["views"] == 1 and kw["config_overrides"] == {"patch_size": 32} and kw["weights"] == {"wpa": 0.1}
    # the default patch size is passed too, so a recipe never silently takes the profile's
    assert vr.pretrain_kwargs(vr.parse("default"))["config_overrides"] == {"patch_size": 16}
    grid = vr.pretrain_kwargs(vr.parse("embed=grid,wpa=0"))
    assert (
        grid["visual_embed"] == "grid"
        and grid["config_overrides"] is None
        and grid["weights"] == {"wpa": 0.0}
    )
    with pytest.raises(SystemExit, match="bad recipe"):
        vr.parse("patches=32")


def test_the_cheapest_recipe_that_reaches_the_bar_is_chosen(tmp_path):
    step = tmp_path / "step.json"
    step.write_text(json.dumps({"rows": [{"recipe": "default", "ms_per_step": 3000},
                                         {"recipe": "views=1", "ms_per_step": 1500},
                                         {"recipe": "views=1,patch=32", "ms_per_step": 700}]}))  # fmt: skip
    rows = {"default": {"alignment_acc": 0.88}, "views=1": {"alignment_acc": 0.86},
            "views=1,patch=32": {"alignment_acc": 0.84}}  # fmt: skip
    assert vr.choose(rows, step) == "views=1"  # the cheapest one misses the bar
    rows["views=1,patch=32"]["alignment_acc"] = 0.85
    assert vr.choose(rows, step) == "views=1,patch=32"
    assert vr.choose({"default": {"alignment_acc": 0.5}}, step) is None
    assert vr.choose(rows, tmp_path / "missing.json") is None
