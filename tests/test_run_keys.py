"""Run keys stay what they were: a run folder trained before a change of code layout is found and reused after it.

Every key below was computed without training (the `plan_*` functions build the run config the way the
training call does, from the world's captions and the region extractor's settings) and checked against run
folders that exist: the committed Tables 1-3 and ViLT columns (reports/tables/*_long.csv name their runs) and
the project's runs/. Fine-tuning and multi-task keys hold the init run's resolved path, so those are computed
under ROOT, the runs folder the committed tables were trained in.
"""

from __future__ import annotations

import pytest

from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.multitask.train import plan_multitask
from vilbert_lite.pretrain.run import plan_pretrain
from vilbert_lite.tasks import plan_finetune
from vilbert_lite.vilt.inputs import grid_width
from vilbert_lite.vilt.model import ViLTConfig
from vilbert_lite.vilt.pretrain import plan_pretrain_vilt

ROOT = "/work/main/runs"

PRETRAIN = [  # (plan_pretrain keyword arguments, run folder)
    (dict(profile="cpu", seed=0), "pretrain-94bcdcebe309"),  # Tables 1-3 and ViLT's region row, seed 0
    (dict(profile="cpu", seed=0, corpus_fraction=0.25), "pretrain-b9ced028e2e0"),  # Table 3, 25 %
    (
        dict(profile="cpu", seed=0, model_kind="single_stream"),
        "pretrain_single_stream-c1d6dad1e04e",
    ),  # Table 1
    (dict(profile="smoke", seed=0), "pretrain-f52f7a141089"),
]
DAGGER = [  # fine-tuning with no pretraining: (task, profile, seed, keyword arguments, run folder)
    ("vqa", "cpu", 0, {}, "vqa-547b88651fea"),  # Table 1 ViLBERT†
    ("vqa", "cpu", 0, dict(blank_images=True), "vqa-0d09c64fb6be"),  # Table 1 question-only
    ("nlvr", "cpu", 0, dict(backbone="single_stream"), "nlvr-52782064d3ce"),  # Table 1 single-stream†
    ("zeroshot", "cpu", 0, {}, "zeroshot-a04a3c3b17a2"),
    ("vqa", "smoke", 0, {}, "vqa-c4795c34beb3"),
]


@pytest.mark.parametrize(("kw", "folder"), PRETRAIN)
def test_pretraining_keys(kw, folder):
    run, cfg = plan_pretrain(**kw, out=ROOT)
    assert run.name == folder and run.parent.as_posix() == ROOT and cfg["profile"] == kw["profile"]


@pytest.mark.parametrize(("task", "profile", "seed", "kw", "folder"), DAGGER)
def test_dagger_fine_tuning_keys(task, profile, seed, kw, folder):
    run, cfg = plan_finetune(task, None, profile, seed, root=ROOT, **kw)
    assert run.name == folder and run.parent.as_posix() == f"{ROOT}/finetune" and cfg["init"] == "none"


def test_fine_tuning_a_pretrained_run_keys_its_path():
    """Table 1's ViLBERT VQA cell (seed 0): the pretraining run's config is the fine-tuning's model."""
    init, pre = plan_pretrain("cpu", 0, out=ROOT)
    run, cfg = plan_finetune("vqa", init, "cpu", 0, config=ViLBertConfig.from_dict(pre["model"]), root=ROOT)
    assert run.name == "vqa-426815f60b13" and cfg["init"] == f"{ROOT}/pretrain-94bcdcebe309"
    init, pre = plan_pretrain("cpu", 0, out=ROOT, model_kind="single_stream")  # Table 1's single stream
    config = ViLBertConfig.from_dict(pre["model"])
    run, _ = plan_finetune("vqa", init, "cpu", 0, backbone="single_stream", config=config, root=ROOT)
    assert run.name == "vqa-fd7280dd20d4"
    smoke, pre = plan_pretrain("smoke", 0, out=ROOT)
    run, _ = plan_finetune("vqa", smoke, "smoke", 0, config=ViLBertConfig.from_dict(pre["model"]), root=ROOT)
    assert run.name == "vqa-d7f2aeeddbfa"


@pytest.mark.parametrize(
    ("embed", "kind", "folder", "vqa"),
    [("patch", "vilt", "pretrain_vilt-e2d1e18169ab", "vqa-5f38c9275d6d"),
     ("grid", "vilt_grid", "pretrain_vilt_grid-59439e7183e0", "vqa-27b8b3d4d2fd")],
)  # fmt: skip
def test_vilt_keys(embed, kind, folder, vqa):
    """ViLT's patch and grid rows of the committed ViLT columns (seed 0): pretraining and VQA."""
    init, pre = plan_pretrain_vilt("cpu", 0, out=ROOT, visual_embed=embed)
    assert init.name == folder
    run, _ = plan_finetune(
        "vqa", init, "cpu", 0, backbone=kind, config=ViLTConfig.from_dict(pre["model"]), root=ROOT
    )
    assert run.name == vqa


def test_grid_width_is_the_width_of_the_stored_grid():
    """plan_pretrain_vilt reads a grid cell's width off the backbone; world_visual stores maps of that width."""
    import torch

    from vilbert_lite.data.regions import load_backbone
    from vilbert_lite.vilt.inputs import backbone_grid

    for stage in ("head", "block10"):
        config = ViLTConfig.preset("tiny", visual_embed="grid", grid_stage=stage, image_size=64)
        fmap = backbone_grid(load_backbone(64), torch.zeros(1, 3, 64, 64), stage)
        assert fmap.shape[1] == grid_width(config)


def test_multitask_keys():
    """smoke 12-in-1 runs: from scratch, token + DSG, and from the smoke pretraining run."""
    assert plan_multitask("smoke", 0, root=ROOT)[0].name == "mt-d577c84d147e"
    assert plan_multitask("smoke", 0, tokens="dataset", dsg=True, root=ROOT)[0].name == "mt-098ea1704584"
    assert plan_multitask("smoke", 0, tasks=("vqa",), root=ROOT)[0].name == "vqa-2478690a2966"
    init, pre = plan_pretrain("smoke", 0, out=ROOT)
    run, cfg = plan_multitask("smoke", 0, init=init, init_model=pre["model"], root=ROOT)
    assert run.name == "mt-c8a4f54d07d5" and cfg["init"] == f"{ROOT}/pretrain-f52f7a141089"


def test_a_profile_is_resolved_once_and_handed_down(monkeypatch):
    """A run looks its profile up by name once, where it starts; below that the `Profile` object travels, and
    a caller passing the object gets the same run folder as one passing the name."""
    import vilbert_lite.multitask.train as mt_train
    import vilbert_lite.tasks as tasks
    from vilbert_lite import profiles

    lookups = []
    original = profiles.get_profile

    def counting(name, **overrides):
        if isinstance(name, str):
            lookups.append(name)
        return original(name, **overrides)

    for module in (profiles, tasks, mt_train, *_modules_using_get_profile()):
        monkeypatch.setattr(module, "get_profile", counting)
    for backbone in ("vilbert", "vilt"):
        lookups.clear()
        by_name = plan_finetune("vqa", None, "smoke", 0, backbone=backbone)
        assert lookups == ["smoke"], f"{backbone}: profile looked up {len(lookups)} times by name"
        assert plan_finetune("vqa", None, original("smoke"), 0, backbone=backbone) == by_name
    lookups.clear()
    assert plan_multitask("smoke", 0, init=None) == plan_multitask(original("smoke"), 0, init=None)
    assert lookups == ["smoke"]


def _modules_using_get_profile():
    import sys

    return [
        m for name, m in sys.modules.items() if name.startswith("vilbert_lite") and hasattr(m, "get_profile")
    ]
