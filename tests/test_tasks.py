"""Downstream tasks at smoke scale (tiny model, smoke world, CPU, seconds).

Region features come from `FakeExtractor` (colour statistics of each box, projected to 1280-d), so the tests
do not spend minutes in the CNN; one test runs the real extractor on the three data_samples photos.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vilbert_lite import tasks as tasks_pkg
from vilbert_lite.cli import main
from vilbert_lite.data.items import RegionFeatures
from vilbert_lite.data.regions import load_image, propose_boxes
from vilbert_lite.data.world import make_world
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.heads import ViLBertForPreTraining
from vilbert_lite.profiles import get_profile
from vilbert_lite.tasks import TASKS, cli, finetune, get_task
from vilbert_lite.tasks.common import (
    ImageBank,
    Source,
    TaskModel,
    load_backbone,
    probe_loss,
    world_features,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"
TRAINED = ("vqa", "vcr", "refer", "retrieval", "nlvr")


class FakeExtractor:
    """A fast stand-in for RegionExtractor: per box the mean/std/min/max colour, projected to `dim`."""

    def __init__(self, dim: int = 1280, classes: int = 1000):
        self.settings = {"fake_extractor": 1, "dim": dim, "classes": classes}
        self.proj = np.random.default_rng(0).normal(0, 1, (12, dim)).astype(np.float32)
        self.classes = classes

    def extract_many(self, items, batch_size=16, progress=False, total=None):
        for image_id, image, boxes in items:
            img = load_image(image).astype(np.float32) / 255
            H, W = img.shape[:2]
            b = propose_boxes(img, 36) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
            stats = []
            for x1, y1, x2, y2 in b.astype(int):
                crop = img[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)].reshape(-1, 3)
                stats.append(np.concatenate([crop.mean(0), crop.std(0), crop.min(0), crop.max(0)]))
            feats = np.tanh(np.array(stats, np.float32) @ self.proj)
            probs = np.full((len(b), self.classes), 1 / self.classes, np.float32)
            yield RegionFeatures(str(image_id), H, W, b, feats, probs)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two, and much faster on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private feature cache for this module (VILBERT_LITE_CACHE)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VILBERT_LITE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def smoke(task, out, init=None, **kw):
    return finetune(task, init, "smoke", 0, out=out, extractor=FakeExtractor(), progress=False, **kw)


# ------------------------------------------------------------------------------------------ registry / CLI
def test_unknown_task_lists_the_valid_ones(capsys):
    with pytest.raises(ValueError, match="valid tasks: vqa, vcr, refer, retrieval, zeroshot, nlvr"):
        get_task("vqa2")
    assert main(["finetune", "captioning", "--init", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vilbert-lite finetune: error: unknown task 'captioning'")
    assert all(t in err for t in TASKS) and err.count("\n") == 1


def test_cli_task_data_replaces_the_profiles_options_for_that_task(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(
        tasks_pkg, "finetune", lambda task, init, prof, *a, **kw: seen.update(prof=prof) or {}
    )
    argv = ["finetune", "vcr", "--init", "none", "--profile", "cpu"]
    assert main([*argv, "--task-data", '{"per_scene": 4, "style": "attribute"}']) == 0
    prof = seen["prof"]
    assert prof.name == "cpu" and prof.task_data["vcr"] == {"per_scene": 4, "style": "attribute"}
    assert prof.task_data["nlvr"] == get_profile("cpu").task_data["nlvr"]  # the other tasks' options stay
    assert main(argv) == 0 and seen["prof"].task_data == get_profile("cpu").task_data
    capsys.readouterr()
    assert main([*argv, "--task-data", '["style"]']) == 2
    assert "--task-data must be a JSON object" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- every task, smoke
@pytest.mark.parametrize("task", ["vqa", "vcr", "refer", "retrieval", "zeroshot", "nlvr"])
def test_every_task_runs_writes_metrics_and_is_reused(task, cache, tmp_path):
    out = tmp_path / task
    m = smoke(task, out)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    for key in ("task", "split", "seed", "init", "config_hash", "wall_time_s", "history", "chance"):
        assert key in m, key
    assert (m["task"], m["split"], m["seed"], m["init"]) == (task, "test", 0, "none")
    for name in get_task(task).metrics:
        assert 0.0 <= m[name] <= 1.0, name
    if task == "zeroshot":
        assert m["history"] == [] and not (out / "DONE").exists()  # no fine-tuning
    else:
        assert len(m["history"]) >= 1 and "loss" in m["history"][0]
        assert any(k.startswith("eval_") for k in m["history"][-1])  # validation scores every epoch
    if task in ("vqa", "refer"):  # the smoke profile as is: the loss on fixed training items falls
        assert m["train_loss_end"] < 0.9 * m["train_loss_start"], m
    if task in ("retrieval", "zeroshot"):
        assert m["pool"] == 16 and m["chance_r@1"] == pytest.approx(1 / 16)
    # a finished folder with the same config is reused, not retrained
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert smoke(task, out) == m and (out / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="different run config"):
        smoke(task, out, train_overrides={"lr": 5e-4})


@pytest.mark.parametrize("task", ["vcr", "retrieval", "nlvr"])
def test_training_loss_falls_on_fixed_items(task, cache):
    """VCR, retrieval and NLVR can only lower their loss below the label prior by grounding text in regions,
    which a random tiny model does not learn in a smoke run's dozen steps (their loss stays at ln 4 / ln 2);
    here the task's loss_fn trains on 8 fixed training items."""
    spec = get_task(task)
    world = make_world("smoke", 0)
    store, _ = world_features(world, "gt", extractor=FakeExtractor(), progress=False)
    data = spec.load(Source("synthetic", ImageBank(store), world=world))
    torch.manual_seed(0)
    items = [data.train[i] for i in range(8)]  # negatives drawn once: fixed items
    config = ViLBertConfig.preset("tiny")
    model = TaskModel(load_backbone(None, config), spec.forward, **spec.heads(config, data))
    start = probe_loss(model, spec.loss_fn, items, data.collate, 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # 2e-3 diverged on NLVR's items of world version 3
    batch = data.collate(items)
    model.train()
    for _ in range(100):
        loss, _ = spec.loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = probe_loss(model, spec.loss_fn, items, data.collate, 8)
    assert end < 0.8 * start, (start, end)


# ---------------------------------------------------------------------------------------------- --init
def _save_pretraining(path: Path, config: ViLBertConfig) -> ViLBertForPreTraining:
    torch.manual_seed(1)
    model = ViLBertForPreTraining(config)
    model.save_pretrained(path / "model")
    return model


def test_init_loads_the_backbone_and_the_alignment_head(tmp_path):
    from vilbert_lite.pretrain.objectives import ALIGNED_INDEX
    from vilbert_lite.tasks import retrieval

    config = ViLBertConfig.preset("tiny")
    pre = _save_pretraining(tmp_path, config)
    bert = load_backbone(tmp_path, config)
    for k, v in pre.bert.state_dict().items():
        assert torch.equal(bert.state_dict()[k], v), k
    head = retrieval.zero_shot_heads(config, None, tmp_path)["bi_seq_relationship"]
    assert torch.equal(head.weight, pre.cls.bi_seq_relationship.weight)
    # fine-tuned retrieval starts from the same alignment score (its log-odds)
    vil = retrieval.heads(config, None, tmp_path)["vil_logit"]
    x = torch.randn(5, config.bi_hidden_size)
    logits = pre.cls.bi_seq_relationship(x)
    torch.testing.assert_close(vil(x)[:, 0], logits[:, ALIGNED_INDEX] - logits[:, 1 - ALIGNED_INDEX])


def test_init_of_another_shape_names_the_differing_sizes(tmp_path):
    _save_pretraining(tmp_path, ViLBertConfig.preset("tiny", hidden_size=32, intermediate_size=64))
    with pytest.raises(
        ValueError, match=r"hidden_size: run 32 vs requested 64.*intermediate_size: run 64 vs"
    ):
        load_backbone(tmp_path, ViLBertConfig.preset("tiny"))
    with pytest.raises(ValueError, match="hidden_size: run 32 vs requested 64"):  # before any data work
        finetune("vqa", tmp_path, "smoke", 0, out=tmp_path / "out", extractor=object())
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="not a pretraining run folder"):
        load_backbone(tmp_path / "nowhere", ViLBertConfig.preset("tiny"))


def test_single_stream_backbone_fine_tunes_with_the_same_heads(cache, tmp_path):
    m = smoke("nlvr", tmp_path / "ss", backbone="single_stream")
    assert m["backbone"] == "single_stream" and 0 <= m["nlvr_accuracy"] <= 1
    m2 = smoke("nlvr", tmp_path / "vil")
    assert m2["config_hash"] != m["config_hash"]


# -------------------------------------------------------------------------------------------- VQA details
def test_vqa_soft_scores_and_answer_normalisation():
    from vilbert_lite.tasks.vqa import normalize_answer, soft_scores

    assert normalize_answer("  Helmet. ") == "helmet"
    t = soft_scores(["a"] * 4 + ["b"] * 2 + ["zebra"] * 4, {"a": 0, "b": 1, "c": 2})
    torch.testing.assert_close(t, torch.tensor([1.0, 2 / 3, 0.0]))  # "zebra" is out of vocabulary


def test_refer_candidates_are_proposals_with_iou_targets(cache):
    from vilbert_lite.tasks import refer

    world = make_world("smoke", 0)
    store, _ = world_features(world, "proposals", extractor=FakeExtractor(), progress=False)
    data = refer.load(Source("synthetic", ImageBank(store), world=world))
    n_objects = np.mean([len(s.objects) for s in world.scenes["test"]])
    assert data.info["proposals_per_image"] > n_objects  # proposals, not the ground-truth boxes
    assert 0 < data.info["chance"] < data.info["refer_upper_bound"] <= 1
    batch = data.collate(data.test[:4])
    logits = torch.zeros_like(batch["iou"])
    logits[:, 0] = 10.0  # the global region is never picked
    assert (refer._pick(logits, batch) > 0).all()


@pytest.mark.skipif(not (SAMPLES / "vqa").is_dir(), reason="data_samples/ not present")
def test_vqa_on_real_vqa_v2_files_extracts_regions_and_counts_unknown_answers(tmp_path, monkeypatch, capsys):
    """data_samples/: the VQA v2 pair over three photos. Train = val, except that one validation answer is
    changed to a word never seen in training: it is counted (not a crash) and can never be right."""
    monkeypatch.setenv("VILBERT_LITE_CACHE", str(tmp_path / "cache"))
    q = SAMPLES / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
    a = SAMPLES / "vqa" / "v2_mscoco_val2014_annotations.json"
    ann = json.loads(a.read_text())
    ann["annotations"][0]["answers"] = [{"answer": "zebra"}] * 10
    val_a = tmp_path / "val_annotations.json"
    val_a.write_text(json.dumps(ann))
    images = tmp_path / "images"
    shutil.copytree(SAMPLES / "images", images)
    argv = ["vqa", "--init", "none", "--profile", "smoke", "--out", str(tmp_path / "run"), "--no-progress",
            "--train-questions", str(q), "--train-annotations", str(a), "--train-images", str(images),
            "--val-questions", str(q), "--val-annotations", str(val_a), "--val-images", str(images)]  # fmt: skip
    assert cli(argv) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["data"] == "vqa_v2" and m["split"] == "val" and m["n_eval"] == 6
    assert m["oov_answers"] == 1 and m["oov_questions"] == 1 and 0 <= m["vqa_accuracy"] <= 5 / 6
    stores = list((tmp_path / "cache" / "features").glob("images-*/*/index.json"))
    assert len(stores) == 1  # regions extracted once and cached (train and val share the folder)
    # precomputed features instead of images
    m2 = finetune("vqa", None, "smoke", 0, out=tmp_path / "run2", data="vqa_v2", progress=False,
                  train_questions=q, train_annotations=a, train_features=SAMPLES / "features" / "store",
                  val_questions=q, val_annotations=a, val_features=SAMPLES / "features" / "store")  # fmt: skip
    assert m2["oov_answers"] == 0 and m2["n_train"] == 6
    with pytest.raises(ValueError, match="missing"):
        finetune("vqa", None, "smoke", 0, out=tmp_path / "run3", data="vqa_v2", train_questions=q)


def test_blank_images_is_the_question_only_baseline(cache, tmp_path):
    """blank_images: every image is one zero region, so the model's answer cannot depend on the image."""
    from vilbert_lite.tasks.common import BlankImageBank

    world = make_world("smoke", seed=0)
    store, _ = world_features(world, "gt", extractor=FakeExtractor(), progress=False)
    bank = BlankImageBank(ImageBank(store))
    ids = list(store.ids())[:2]
    a, b = bank[ids[0]], bank[ids[1]]
    assert (
        a["num_regions"] == 1 and a["visual_feats"].abs().sum() == 0 and a["visual_feats"].shape == (1, 1280)
    )
    assert bank.widths() == ImageBank(store).widths() and all(torch.equal(a[k], b[k]) for k in a)
    m = smoke("vqa", tmp_path / "qonly", blank_images=True)
    assert m["config_hash"] != smoke("vqa", tmp_path / "full")["config_hash"]
    assert 0.0 <= m["vqa_accuracy"] <= 1.0 and m["train_loss_end"] < m["train_loss_start"]


def test_profile_finetune_budgets_set_a_task_s_epochs(cache, tmp_path, monkeypatch):
    from dataclasses import replace

    from vilbert_lite import profiles

    smoke_prof = profiles.get_profile("smoke")
    budgets = {"vqa": {"epochs": 3, "max_steps": None}}
    monkeypatch.setitem(profiles._PROFILES, "smoke", replace(smoke_prof, finetune_budgets=budgets))
    m = smoke("vqa", tmp_path / "vqa")
    assert len(m["history"]) == 3  # three epochs, no step cap (the smoke profile caps at 12 steps otherwise)
    assert json.loads((tmp_path / "vqa" / "train_config.json").read_text())["max_steps"] is None
    assert len(smoke("nlvr", tmp_path / "nlvr")["history"]) <= smoke_prof.finetune.epochs  # others unchanged


def test_profile_task_data_sets_nlvr_statements_per_scene(cache, tmp_path, monkeypatch):
    """Profile.task_data {"nlvr": {"per_scene": k}}: k statements per scene (round 0 is the world's own set, each
    round 50/50), recorded in the NLVR run's key only; a bad value names the option."""
    from dataclasses import replace

    from vilbert_lite import profiles
    from vilbert_lite.errors import UserError

    world = make_world("smoke", seed=0)
    one, three = world.nlvr("train"), world.nlvr("train", per_scene=3)
    n = len(world.scenes["train"])
    assert len(one) == n and len(three) == 3 * n and three[:n] == one
    for j in range(3):
        labels = [it.label for it in three[j * n : (j + 1) * n]]
        assert abs(2 * sum(labels) - n) <= 1
    assert len({it.statement for it in three}) > len({it.statement for it in one})
    vcr_one, vcr_three = world.vcr("train"), world.vcr("train", per_scene=3)  # VCR-style: up to 3 per scene
    assert vcr_three[: len(vcr_one)] == vcr_one and len(vcr_one) < len(vcr_three) <= 3 * len(vcr_one)
    assert len({(v.image_id, v.question) for v in vcr_three}) == len(vcr_three)  # another question each

    base = {t: smoke(t, tmp_path / f"{t}-base") for t in ("nlvr", "vqa")}
    smoke_prof = profiles.get_profile("smoke")
    monkeypatch.setitem(
        profiles._PROFILES, "smoke", replace(smoke_prof, task_data={"nlvr": {"per_scene": 3}})
    )
    m = smoke("nlvr", tmp_path / "nlvr-3")
    assert m["n_train"] == 3 * base["nlvr"]["n_train"] and m["config_hash"] != base["nlvr"]["config_hash"]
    assert json.loads((tmp_path / "nlvr-3" / "run_config.json").read_text())["data"]["options"] == {
        "per_scene": 3
    }
    assert (
        smoke("vqa", tmp_path / "vqa-again")["config_hash"] == base["vqa"]["config_hash"]
    )  # other tasks: as before
    monkeypatch.setitem(
        profiles._PROFILES, "smoke", replace(smoke_prof, task_data={"nlvr": {"per_scene": 0}})
    )
    with pytest.raises(UserError, match="per_scene must be an integer >= 1, got 0"):
        smoke("nlvr", tmp_path / "nlvr-0")
