"""Using trained runs on new images (`predict.load_run`, `vilbert-lite ask`): smoke runs with the real region
extractor, each trained once per module (seconds), in private run and cache folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from vilbert_lite import load_run, runs
from vilbert_lite.cli import main
from vilbert_lite.data.store import FeatureStore
from vilbert_lite.data.world import make_world
from vilbert_lite.errors import UserError
from vilbert_lite.model.config import ViLBertConfig
from vilbert_lite.model.vilbert import ViLBertModel
from vilbert_lite.tasks import finetune, vqa
from vilbert_lite.tasks.common import ImageBank, TaskData, TaskModel, collate_pairs, pair, tokenize

QUESTION = "what colour is the shape?"


@pytest.fixture(scope="module", autouse=True)
def private_folders(tmp_path_factory):
    """Runs and feature stores in temporary folders; one torch thread (tiny models, a shared machine)."""
    mp, n = pytest.MonkeyPatch(), torch.get_num_threads()
    mp.setenv("VILBERT_LITE_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("VILBERT_LITE_RUNS", str(tmp_path_factory.mktemp("runs")))
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    mp.undo()


@pytest.fixture(scope="module")
def world():
    return make_world("smoke")


@pytest.fixture(scope="module")
def png(world, tmp_path_factory) -> Path:
    """A test scene of the smoke world as a PNG file."""
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray(world.image(world.scenes["test"][0].scene_id)).save(path)
    return path


@pytest.fixture(scope="module")
def vqa_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vqa") / "run"
    finetune("vqa", init=None, profile="smoke", seed=0, out=out, progress=False)
    return out


@pytest.fixture(scope="module")
def refer_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("refer") / "run"
    finetune("refer", init=None, profile="smoke", seed=0, out=out, progress=False)
    return out


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory) -> Path:
    from vilbert_lite.pretrain.run import pretrain

    return pretrain("smoke", 0, out=tmp_path_factory.mktemp("pretrain"), progress=False)


# ------------------------------------------------------------------------------------------------ task.json
def test_task_json_records_what_inference_needs_and_a_reused_run_gets_it(vqa_run):
    info = json.loads((vqa_run / "task.json").read_text())
    metrics = json.loads((vqa_run / "metrics.json").read_text())
    assert (info["task"], info["backbone"], info["init"]) == ("vqa", "vilbert", "none")
    assert len(info["answers"]) == metrics["n_answers"] and info["answers"] == sorted(info["answers"])
    feats = info["features"]
    assert feats["boxes"] == "gt" and feats["max_regions"] == 36 and not feats["blank_images"]
    assert feats["settings"] == json.loads((Path(feats["store"]) / "settings.json").read_text())
    # the hashed run config is what it was: task.json is not part of it
    assert metrics["config_hash"] == runs.config_hash(json.loads((vqa_run / "run_config.json").read_text()))
    (vqa_run / "task.json").unlink()
    with pytest.raises(UserError, match="no task.json"):
        load_run(vqa_run)
    assert finetune("vqa", None, "smoke", 0, out=vqa_run, progress=False) == metrics  # reused, not retrained
    assert json.loads((vqa_run / "task.json").read_text()) == info


def test_pretraining_run_keeps_its_extractor_settings(pretrain_run):
    feats = json.loads((pretrain_run / "features.json").read_text())
    assert feats["settings"] == json.loads((Path(feats["store"]) / "settings.json").read_text())


# ------------------------------------------------------------------------------------------------------ vqa
def finetuned_model(run: Path) -> TaskModel:
    """The fine-tuned TaskModel built from the hashed run config and model.pt, without `predict`."""
    cfg = json.loads((run / "run_config.json").read_text())
    config = ViLBertConfig.from_dict(cfg["model"])
    n = json.loads((run / "metrics.json").read_text())["n_answers"]
    model = TaskModel(
        ViLBertModel(config), vqa.forward, **vqa.heads(config, TaskData([], [], [], info={"n_answers": n}))
    )
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def test_answer_is_the_fine_tuned_models_own(vqa_run, png, world):
    p = load_run(vqa_run, device="cpu")
    v = p.visual(png)  # proposals: a new image has no ground-truth boxes
    assert v["visual_feats"].shape[1] == p.v_feature_size and len(v["boxes"]) > 1
    answers = p.answer(v, QUESTION, top_k=5)
    vocab = json.loads((vqa_run / "task.json").read_text())["answers"]
    assert len(answers) == 5 and all(a in vocab for a, _ in answers)
    scores = [s for _, s in answers]
    assert all(0 < s < 1 for s in scores) and scores == sorted(scores, reverse=True)
    # the same numbers as the fine-tuned model's forward on the same features
    batch = collate_pairs([{"pairs": [pair(tokenize([QUESTION], max_length=vqa.MAX_LENGTH)[0], v)]}])
    with torch.no_grad():
        own = finetuned_model(vqa_run)(batch)[0]
    torch.testing.assert_close(p.logits(v, QUESTION), own)
    top = own.sigmoid().topk(5)
    assert [a for a, _ in answers] == [vocab[i] for i in top.indices.tolist()]
    assert scores == pytest.approx(top.values.tolist())
    assert dict(p.answer(png, QUESTION, top_k=5)) == pytest.approx(dict(answers))  # from the file: the same
    # the rebuilt extractor gives the training features: ground-truth boxes reproduce the feature store
    sid = world.scenes["test"][0].scene_id
    store = FeatureStore.open(json.loads((vqa_run / "task.json").read_text())["features"]["store"])
    stored = ImageBank(store)[sid]["visual_feats"]
    torch.testing.assert_close(p.visual(world.image(sid), boxes=world.gt_boxes(sid))["visual_feats"], stored,
                               atol=1e-4, rtol=1e-4)  # fmt: skip


def test_cli_ask_prints_the_top_answers(vqa_run, png, capsys):
    assert main(["ask", str(vqa_run), "--image", str(png), "--question", QUESTION, "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    vocab = json.loads((vqa_run / "task.json").read_text())["answers"]
    assert len(lines) == 3
    assert all(line.split()[0] in vocab and 0 < float(line.split()[-1]) < 1 for line in lines)
    assert len({line.rindex(" ") for line in lines}) == 1  # the scores line up


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vilbert-lite ask: error: "), err
    return err


def test_wrong_task_and_width_mismatch_are_one_line_errors(vqa_run, png, tmp_path, capsys):
    p = load_run(vqa_run, device="cpu")
    with pytest.raises(
        UserError, match=r"is a vqa run; rank\(\) needs a retrieval, zeroshot or pretraining run"
    ):
        p.rank(png, ["a red circle"])
    with pytest.raises(UserError, match=r"point\(\) needs a refer run"):
        p.point(png, "the red circle")
    err = one_error_line(capsys, ["ask", str(vqa_run), "--image", str(png), "--captions", "a red circle"])
    assert "is a vqa run: ask it with --question" in err
    # a run whose recorded extractor gives 1280-d features for a model reading 112-d ones
    bad = tmp_path / "bad"
    shutil.copytree(vqa_run, bad)
    info = json.loads((bad / "task.json").read_text())
    info["features"]["settings"].update(stage="head", feature_dim=1280)
    (bad / "task.json").write_text(json.dumps(info))
    err = one_error_line(capsys, ["ask", str(bad), "--image", str(png), "--question", QUESTION])
    assert "gives 1280-d features but the model reads 112-d ones" in err
    # folders that are not finished runs
    (tmp_path / "empty").mkdir()
    assert "not a run folder" in one_error_line(capsys, ["ask", str(tmp_path / "empty"), "--image", str(png),
                                                         "--question", QUESTION])  # fmt: skip
    (bad / "metrics.json").unlink()
    assert "not a finished run" in one_error_line(capsys, ["ask", str(bad), "--image", str(png), "--question",
                                                           QUESTION])  # fmt: skip


# ------------------------------------------------------------------------------------ pretraining, refer
def test_pretraining_run_ranks_captions_and_images(pretrain_run, world, capsys):
    from vilbert_lite.data.tokenize import get_tokenizer
    from vilbert_lite.pretrain.captions import alignment_score
    from vilbert_lite.pretrain.run import load_pretrained

    p = load_run(pretrain_run, device="cpu")
    captions = ["a red circle", "two blue squares", "a small green star"]
    img = world.image(world.scenes["test"][0].scene_id)
    ranked = p.rank(img, captions)
    assert sorted(c for c, _ in ranked) == sorted(captions)
    scores = [s for _, s in ranked]
    assert all(0 < s < 1 for s in scores) and scores == sorted(scores, reverse=True)
    own = alignment_score(load_pretrained(pretrain_run), get_tokenizer(), p.visual(img), captions)
    assert dict(ranked) == pytest.approx(dict(zip(captions, own.tolist())))
    images = [world.image(s.scene_id) for s in world.scenes["test"][:3]]
    assert sorted(i for i, _ in p.rank(images, "a red circle")) == [0, 1, 2]
    with pytest.raises(UserError, match="answer\\(\\) needs a vqa run"):
        p.answer(img, QUESTION)


def test_refer_run_points_at_a_box_inside_the_image(refer_run, tmp_path, capsys):
    from skimage.data import astronaut

    photo = astronaut()  # (512, 512, 3): a real photo, regions from proposals
    p = load_run(refer_run, device="cpu")
    (x1, y1, x2, y2), score = p.point(photo, "the woman on the left")
    H, W = photo.shape[:2]
    assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H and 0 < score < 1
    boxes = p.visual(photo)["boxes"][1:].tolist()  # a proposal, never the global region 0
    assert [x1, y1, x2, y2] in boxes
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert (
        main(["ask", str(refer_run), "--image", str(tmp_path / "photo.png"), "--expression", "the woman"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("box ") and "score" in out
    err = one_error_line(
        capsys, ["ask", str(refer_run), "--image", str(tmp_path / "photo.png"), "--question", "what?"]
    )
    assert "is a refer run: ask it with --expression" in err


def test_retrieval_run_ranks_with_a_softmax_over_the_candidates(tmp_path, world):
    out = tmp_path / "retrieval"
    finetune("retrieval", init=None, profile="smoke", seed=0, out=out, progress=False)
    p = load_run(out, device="cpu")
    images = [world.image(s.scene_id) for s in world.scenes["test"][:3]]
    ranked = p.rank(images[0], ["a red circle", "two blue squares"])
    assert sum(s for _, s in ranked) == pytest.approx(1.0) and ranked[0][1] >= ranked[1][1]
    by_image = p.rank(images, "a red circle")
    assert sorted(i for i, _ in by_image) == [0, 1, 2] and sum(s for _, s in by_image) == pytest.approx(1.0)
    with pytest.raises(UserError, match="ranks several images for one caption"):
        p.rank(images, ["a", "b"])
